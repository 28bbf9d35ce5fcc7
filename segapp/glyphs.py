"""Letters and signs that are not digits, for the net to learn to leave as background.

People write numbers among words and signs ("Room 42", "x = 86", "No. 7"); a net that only ever saw digits colours
every stroke it finds as the likeliest digit ("ABC" was read "4 8 0" at 0.90). The training generator
(:mod:`segapp.synth`) puts some of these glyphs between its digits, labelled background, and transforms them as it
transforms digits (re-penned, slanted, wobbled), so a letter is told from a digit by its shape, not its pen.

Only glyphs that no digit is written as are used: no O / o / D / Q (0), I / l / i / j / L / J / T / ! / ( / )
(1 or 7), Z / z / ? (2), S / s / $ (5), b / G / e / c / C (6 or an open 0), B / & (8), g / q / a / P / p / y (9 or 4),
A / t / + / Y / u / U / v / V (4, 7 or an open 4). Those are left to context the net cannot see, and a user's "Room"
still reads "0 0" (README: "Words beside a number are read as digits"). The shapes come from OpenCV's Hershey
stroke fonts, drawn in memory: no font file, nothing downloaded, the same on every machine.
"""

from __future__ import annotations

import cv2
import numpy as np

UPPER = "EFHKMNRWX"
LOWER = "hkmnrwx"
SIGNS = "#%*"  # a dash or an equals sign is a short rule: the generator draws those already
GLYPHS = UPPER + LOWER + SIGNS
# the letters reader (segapp train-reader --letters: weights/letters) also learns P d e f p, whose likeness to a
# digit is a writer's habit rather than the letter's shape: segapp.words drops a word only where that reader is sure
# (or fairly sure, beside a lowercase letter's height), and digits are read by weights/reader, which never saw a
# letter. H and h are left out: a 4 with a closed top and a short stem is an h to it (session 35's first letters
# reader dropped M2NIST 4s as letters)
READER_GLYPHS = GLYPHS.replace("H", "").replace("h", "") + "Pdefp"
HERSHEY = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX,
           cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_SCRIPT_COMPLEX)


def draw_glyph(ch: str, rng: np.random.Generator) -> np.ndarray:
    """``ch`` in a random Hershey face (upright or italic) and stroke, cropped to its ink: uint8 white on black,
    about 40 px tall for a capital (lowercase and signs are smaller, as written)."""
    face = HERSHEY[int(rng.integers(0, len(HERSHEY)))] | (cv2.FONT_ITALIC if rng.random() < 0.3 else 0)
    canvas = np.zeros((96, 96), np.uint8)
    cv2.putText(canvas, ch, (16, 70), face, 1.6, 255, int(rng.integers(2, 5)), cv2.LINE_AA)
    ys, xs = np.nonzero(canvas)
    return canvas[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def pick_glyph(rng: np.random.Generator, chars: str = GLYPHS) -> tuple[np.ndarray, float, float]:
    """A random glyph of ``chars``: (its ink, uint8; its height as a share of a digit's; its drop below a digit's
    top, as a share of a digit's height), so a lowercase letter sits on the digits' baseline and a sign at their
    middle."""
    ch = chars[int(rng.integers(0, len(chars)))]
    if ch.isupper():
        return draw_glyph(ch, rng), rng.uniform(0.85, 1.05), 0.0
    if ch.islower():
        share = rng.uniform(0.5, 0.7)
        return draw_glyph(ch, rng), share, 1.0 - share
    share = rng.uniform(0.4, 0.75)
    return draw_glyph(ch, rng), share, rng.uniform(0.0, 1.0 - share)

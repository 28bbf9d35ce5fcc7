"""Letters and signs that are not digits, for the net to learn to leave as background.

People write numbers among words and signs ("Room 42", "x = 86", "No. 7"); a net that only ever saw digits colours
every stroke it finds as the likeliest digit ("ABC" was read "4 8 0" at 0.90). The training generator
(:mod:`segapp.synth`) puts some of these glyphs between its digits, labelled background, and transforms them as it
transforms digits (re-penned, slanted, wobbled), so a letter is told from a digit by its shape, not its pen.

Only glyphs that no digit is written as are used: no O / o / D / Q (0), I / l / i / j / L / J / T / ! / ( / )
(1 or 7), Z / z / ? (2), S / s / $ (5), b / G / e / c / C (6 or an open 0), B / & (8), g / q / a / P / p / y (9 or 4),
A / t / + / Y / u / U / v / V (4, 7 or an open 4). Those are left to context the net cannot see, and a user's "Room"
still reads "0 0" (README: "Words beside a number are read as digits"). The shapes come from OpenCV's built-in
faces, drawn in memory: no font file, nothing downloaded, the same on every machine. OpenCV 5 draws every
``FONT_HERSHEY_*`` face with one sans-serif outline (the "script" faces included: only weight and slant vary), so a
letters reader trained on them alone has seen one typeface; ``fonts`` (``segapp train-reader --letter-fonts``) adds
typefaces from font files, half the letters then drawn from them.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

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
# the signs people write among a number's digits (a date's slashes, a phone number's brackets, a price's dollar): the
# signs reader (segapp train-reader --signs: weights/signs) learns them apart from letters, so segapp.signs drops a
# sign alone where a letter drops its word ("12/05/2026" is one word)
SIGN_GLYPHS = "/()+#$%"
TALL_SIGNS = "/()$"  # written as tall as a digit or taller, reaching below the line (a slash, a bracket, a dollar)
HERSHEY = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX,
           cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_SCRIPT_COMPLEX)


FONT_SUFFIXES = (".ttf", ".otf")


def font_files(paths: tuple[str, ...]) -> tuple[str, ...]:
    """Font files and folders -> the sorted font files (.ttf, .otf) they hold; a path that holds none is an error
    worth a clear message (a font package not installed)."""
    out = []
    for p in map(Path, paths):
        found = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.suffix.lower() in FONT_SUFFIXES)
        if not found or not all(q.suffix.lower() in FONT_SUFFIXES for q in found):
            raise ValueError(f"{p}: no .ttf or .otf font there; give font files or folders that hold them "
                             "(e.g. /usr/share/fonts/truetype/dejavu from Debian's fonts-dejavu-core)")
        out += [str(q) for q in found]
    return tuple(sorted(set(out)))


@functools.lru_cache(maxsize=64)
def _font(path: str) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, 64)


def _font_glyph(ch: str, path: str, rng: np.random.Generator) -> np.ndarray | None:
    """``ch`` (a letter, or a run of letters) drawn with the font file ``path`` at 64 px, its stroke thickened by
    0-2 px (None: no ink, a font without that glyph)."""
    canvas = Image.new("L", (80 * len(ch) + 80, 160), 0)
    bold = int(rng.integers(0, 3))
    ImageDraw.Draw(canvas).text((40, 20), ch, fill=255, font=_font(path), stroke_width=bold, stroke_fill=255)
    a = np.asarray(canvas)
    ys, xs = np.nonzero(a)
    return a[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] if len(ys) else None


def draw_glyph(ch: str, rng: np.random.Generator, fonts: tuple[str, ...] = ()) -> np.ndarray:
    """``ch`` (a letter, or a run of letters) in a random OpenCV face (upright or italic) and stroke, or with
    ``fonts`` given half the time in one of those font files, cropped to its ink: uint8 white on black, about 40-50
    px tall for a capital (lowercase and signs are smaller, as written)."""
    if fonts and rng.random() < 0.5:
        glyph = _font_glyph(ch, fonts[int(rng.integers(0, len(fonts)))], rng)
        if glyph is not None:
            return glyph
    face = HERSHEY[int(rng.integers(0, len(HERSHEY)))] | (cv2.FONT_ITALIC if rng.random() < 0.3 else 0)
    canvas = np.zeros((96, 48 * len(ch) + 48), np.uint8)
    cv2.putText(canvas, ch, (16, 70), face, 1.6, 255, int(rng.integers(2, 5)), cv2.LINE_AA)
    ys, xs = np.nonzero(canvas)
    return canvas[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def pick_glyph(rng: np.random.Generator, chars: str = GLYPHS, fonts: tuple[str, ...] = (),
               runs: float = 0.0) -> tuple[np.ndarray, float, float]:
    """A random glyph of ``chars``: (its ink, uint8; its height as a share of a digit's; its drop below a digit's
    top, as a share of a digit's height), so a lowercase letter sits on the digits' baseline and a sign at their
    middle. With ``runs`` > 0 that share of the glyphs is a run of two or three letters of one case ("eat", "UR"):
    a font sets a word's letters close, and the net colours such a run as one digit (the "eat" of "Seat" as a 6)."""
    ch = chars[int(rng.integers(0, len(chars)))]
    if runs and rng.random() < runs:
        same = [c for c in chars if c.isalpha() and c.isupper() == ch.isupper()] or [ch]
        ch = "".join(same[int(k)] for k in rng.integers(0, len(same), int(rng.integers(2, 4))))
    if ch.isupper():
        return draw_glyph(ch, rng, fonts), rng.uniform(0.85, 1.05), 0.0
    if ch.islower():
        share = rng.uniform(0.5, 0.7)
        return draw_glyph(ch, rng, fonts), share, 1.0 - share
    if ch in TALL_SIGNS:  # (above the digits' top by up to a tenth, below their baseline by up to a fifth)
        share = rng.uniform(0.95, 1.25)
        return draw_glyph(ch, rng, fonts), share, rng.uniform(-0.1, min(0.05, 1.2 - share))
    share = rng.uniform(0.4, 0.75)
    return draw_glyph(ch, rng, fonts), share, rng.uniform(0.0, 1.0 - share)

"""Numbers among words or signs, for the robustness benchmark's ``words``, ``words_natural`` and ``signs`` sets.

``words`` (session 34) places each glyph of a line apart, a gap of 0.05-0.35 of a digit's height between glyphs and a
space of half a digit's height more between words: a word and its number stand well apart. Lines set by a font
itself (``words_natural``, session 36) are harder: the font's own spacing puts a word a quarter to a whole digit's
height from its number (most fonts a third to a half: typed text, and a hand that writes evenly), its letters
close, and some units written tight against the number ("12kg"), as people write them. Both use the handwriting
fonts of :mod:`benchmarks.handwriting` (``dev``, ``held`` or ``fresh``); the words' strokes are background in the
truth. ``signs`` (session 44) sets numbers written with signs among their digits the same way: dates, times, phone
numbers, prices ("12/05/2026", "(555) 123-4567", "$25.50"), the signs background.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from segapp.classes import BACKGROUND

from .handwriting import EDGE, _glyph, _number_text, fonts

# words and units people write beside numbers (any letter, not only those segapp/glyphs.py trains on)
PREFIXES = ("No", "Nr", "Tel", "Room", "Page", "Box", "Ref", "Apt", "Flat", "Fig", "Vol", "Max", "Fax", "Lot", "Row",
            "Seat", "Gate", "Bus", "Kw", "x =", "#", "Rev", "ch")
SUFFIXES = ("km", "kg", "cm", "mm", "min", "pcs", "kWh", "ml", "EUR", "USD", "pts", "am", "pm", "hrs", "Mb")
TIGHT = 0.15  # words_natural: share of units written against the number, no space ("12kg")


def _words(rng: np.random.Generator, which: str) -> tuple[Path, str, str, str]:
    """One line's makings, drawn in this order for both sets: (a font of ``which``, the word before the number with
    its space or "", the number's digits, the unit after it without a space or "")."""
    paths = fonts(which)
    font = paths[int(rng.integers(0, len(paths)))]
    digits = _number_text(rng, (1, 4))
    r = rng.random()
    before = PREFIXES[int(rng.integers(0, len(PREFIXES)))] + " " if r < 0.7 else ""
    unit = SUFFIXES[int(rng.integers(0, len(SUFFIXES)))] if r > 0.45 else ""
    return font, before, digits, unit


def words_number(rng: np.random.Generator, height: float,
                 which: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """A number of 1-4 digits with a word before it, a unit after it, or both, in one writer's hand (one font),
    white on black: (the digits' ink, their label map, the words' ink, the digits' text). The words' strokes are
    background in the label map (no faint band: a letter's pixel read as a digit is wrong however faint);
    lowercase letters sit on the digits' baseline at 0.6 of their height."""
    font, before, digits, unit = _words(rng, which)
    line = before + digits + (" " + unit if unit else "")
    gap = height * rng.uniform(0.05, 0.35)
    glyphs = [None if c == " " else _glyph(font, c, height * (0.6 if c.islower() else 0.4 if c in "=#" else 1.0)
                                            * rng.uniform(0.9, 1.1), rng) for c in line]
    H = int(max(g.shape[0] for g in glyphs if g is not None) + height * 0.8)
    W = int(sum(height * 0.5 if g is None else g.shape[1] for g in glyphs) + gap * (len(line) + 1) + height * 0.4)
    ink, words = np.zeros((H, W), np.uint8), np.zeros((H, W), np.uint8)
    lab = np.full((H, W), BACKGROUND, np.uint8)
    base = (H + height) / 2  # the digits' baseline
    x = int(height * 0.2 + gap)
    for c, g in zip(line, glyphs):
        if g is None:
            x += int(height * 0.5)
            continue
        gh, gw = g.shape
        mid = c in "=#" or c.isdigit() or c.isupper()
        y = (H - gh) / 2 if mid else base - gh + 3  # _pose pads 3 px
        y = int(np.clip(y + rng.uniform(-0.05, 0.05) * height, 0, H - gh))
        if c.isdigit():
            win, wl = ink[y : y + gh, x : x + gw], lab[y : y + gh, x : x + gw]
            wl[(g >= EDGE) & (g > win)] = int(c)
            np.maximum(win, g, out=win)
        else:
            np.maximum(words[y : y + gh, x : x + gw], g, out=words[y : y + gh, x : x + gw])
        x += gw + int(gap)
    return ink, lab, words, " ".join(digits)


def words_natural(rng: np.random.Generator, height: float,
                  which: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """A number of 1-4 digits with a word before it, a unit after it (a few written tight against it) or both, set
    by one handwriting font at its own spacing, its digits ``height`` px tall, the whole line slanted and turned a
    little: (the digits' ink, their label map, the words' ink, the digits' text), white on black, as
    :func:`words_number` gives."""
    font_path, before, digits, unit = _words(rng, which)
    line = before + digits + (unit if not unit or rng.random() < TIGHT else " " + unit)
    return (*set_line(rng, str(font_path), line, height), " ".join(digits))


# how people write numbers with signs among their digits: a date, a time, a phone number, a price, a share, a
# fraction, a reference; "d" is a digit drawn at random
SIGNED = ("dd/dd/dddd", "d/dd/dd", "dd.dd.dddd", "dd:dd", "(ddd) ddd-dddd", "ddd-dddd", "$dd.dd", "dd,dd", "dd%",
          "+dd", "-d", "d/d", "#ddd", "dd-dd", "d.ddd", "(dd)")


def signs_line(rng: np.random.Generator, height: float,
               which: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """A number written with signs among its digits (:data:`SIGNED`: "12/05/2026", "(555) 123-4567", "$25.50"), set
    by one handwriting font of ``which`` at its own spacing as :func:`words_natural` sets a line: (the digits' ink,
    their label map, the signs' ink, the digits' text). The signs are background: a slash or a bracket read as a 1
    is a misread, as a letter is."""
    paths = fonts(which)
    font = paths[int(rng.integers(0, len(paths)))]
    pattern = SIGNED[int(rng.integers(0, len(SIGNED)))]
    line = "".join(str(int(rng.integers(0, 10))) if c == "d" else c for c in pattern)
    return (*set_line(rng, str(font), line, height), " ".join(c for c in line if c.isdigit()))


def set_line(rng: np.random.Generator, path: str, line: str,
             height: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``line`` set by the font at ``path`` at its own spacing and kerning, its digits ``height`` px tall, a third of
    lines in bold, the whole slanted and turned a little: (the digits' ink, their label map, the other glyphs' ink),
    white on black, cut to the ink with half a digit's margin. Each digit is labelled where its ink is the
    strongest; another glyph's stroke over a digit's is that glyph's."""
    probe = ImageFont.truetype(path, 100)
    box = probe.getbbox("0123456789", anchor="ls")
    font = ImageFont.truetype(path, max(8, round(100 * height / (box[3] - box[1]))))
    bold = int(rng.random() < 0.3) * max(1, round(height / 30))
    pad = int(height)
    W, H = int(font.getlength(line)) + 2 * pad, int(3 * height)
    words = Image.new("L", (W, H), 0)
    layers = []  # (digit, its own ink): each digit labelled where its ink is the strongest
    for i, c in enumerate(line):
        if c == " ":
            continue
        at = (pad + font.getlength(line[:i]), int(2 * height))  # the font's own advance: its spacing, its kerning
        if c.isdigit():
            layer = Image.new("L", (W, H), 0)
            ImageDraw.Draw(layer).text(at, c, fill=255, font=font, anchor="ls", stroke_width=bold, stroke_fill=255)
            layers.append((int(c), layer))
        else:
            ImageDraw.Draw(words).text(at, c, fill=255, font=font, anchor="ls", stroke_width=bold, stroke_fill=255)
    shear, ang = rng.uniform(-0.25, 0.25), rng.uniform(-4, 4)
    m = cv2.getRotationMatrix2D((W / 2, H / 2), ang, 1.0) @ np.array([[1, -shear, shear * H / 2], [0, 1, 0],
                                                                     [0, 0, 1]])
    warp = lambda a: cv2.warpAffine(np.asarray(a, np.float32), m, (W, H), flags=cv2.INTER_LINEAR)  # noqa: E731
    wrd = warp(words)
    ink, lab, best = np.zeros((H, W), np.float32), np.full((H, W), BACKGROUND, np.uint8), np.zeros((H, W))
    for digit, layer in layers:
        g = warp(layer)
        lab[(g >= EDGE) & (g > best)] = digit
        best = np.maximum(best, g)
        np.maximum(ink, g, out=ink)
    lab[wrd > best] = BACKGROUND  # a letter's stroke over a digit's is the letter's
    ys, xs = np.nonzero((ink + wrd) > 0)
    y0, y1 = max(ys.min() - pad // 2, 0), min(ys.max() + pad // 2 + 1, H)
    x0, x1 = max(xs.min() - pad // 2, 0), min(xs.max() + pad // 2 + 1, W)
    cut = (slice(y0, y1), slice(x0, x1))
    return np.clip(ink[cut], 0, 255).astype(np.uint8), lab[cut], np.clip(wrd[cut], 0, 255).astype(np.uint8)

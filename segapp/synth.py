"""Real-world training images made from MNIST training digits: what scale normalisation cannot remove.

The inference path (:mod:`segapp.inference`) brings every image to the digit size the net was
trained on (about 20 px tall), so what is left for the net to learn is the rest of the real
world: residual scale error, pens from pencil to marker, slant and wobble, touching digits, two
rows, and photographs (tinted, unevenly lit paper, coloured ink, blur, sensor noise, JPEG,
specks and ruled lines). Photographs go through the same :func:`segapp.normalise.normalise` that
inference uses, so the net sees exactly what a user's photo becomes.

Digit shapes come from MNIST training digits only (no fonts, no other handwriting): what the net
does on other people's handwriting is then an honest measure of generalisation. With ``letters`` above 0
(`segapp train --letters`, off by default and in every shipped stage) some glyphs are letters and signs no digit
is written as, from OpenCV's Hershey fonts (:mod:`segapp.glyphs`), labelled background: never a digit's shape.

Labels: a pixel belongs to a digit where that digit's own (transformed) intensity is at least
:data:`EDGE` of full ink; the faint band around strokes (0 < ink < EDGE) is void (:data:`segapp.classes.VOID`), as
PASCAL VOC leaves object boundaries void: nobody can say where a resampled or blurred stroke ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .classes import BACKGROUND, VOID
from .glyphs import GLYPHS, SIGN_GLYPHS, pick_glyph
from .normalise import normalise
from .scale import TARGET_HEIGHT
from .strokes import hook, open_loop, pointed, repen, restyle

EDGE = 0.25  # share of full ink from which a resampled stroke pixel is labelled as its digit


@dataclass(frozen=True)
class WildConfig:
    """Probabilities and ranges of the real-world generator (all sizes in net pixels)."""

    height: int = 64
    width: int = 84
    scale: tuple[float, float] = (0.7, 1.4)  # digit height / 20 px: residual error of scale normalisation
    two_rows: float = 0.25
    gap: tuple[float, float] = (-3.0, 9.0)  # px between neighbouring digits' boxes; < 0 overlaps
    slant: float = 0.5  # max |shear|
    rotate: float = 14.0  # max |degrees|
    aspect: tuple[float, float] = (-0.6, 0.3)  # log of the width/height change: narrow hands (0.55x) to wide (1.35x)
    elastic: float = 0.7  # probability of a smooth random wobble
    wobble: float = 2.4  # px at 20 px digit height: largest elastic amplitude
    repen: float = 0.5  # probability that a digit is re-drawn along its skeleton with another pen (segapp.strokes)
    lift: float = 0.25  # probability that a re-drawn digit has a gap where the pen left the paper
    swell: float = 0.3  # probability that a re-drawn digit's pen is a pressure pen: full nib to hairline (_swell)
    thicken: float = 0.35  # probability of a marker (dilation by 2-5 px)
    thin: float = 0.08  # probability of a fine pen (erosion)
    resample: float = 0.25  # probability of blur from a low-resolution original (small digits upscaled)
    styled: float = 0.45  # probability that a 1 gets a flag and/or foot, a 4 a closed top, a 7 a crossbar
    pointed_four: float = 0.0  # share of the styled 4s closed into a triangle instead (strokes.pointed)
    open_nine: float = 0.3  # probability that a 9's loop is left open at the lower left (strokes.open_loop)
    hook_nine: float = 0.35  # probability that a 9's stem curls back to the left at its foot instead (strokes.hook)
    photo: float = 0.55  # probability of the photograph treatment
    ruled: float = 0.3  # probability that a photographed page is ruled or squared paper, its lines under the digits
    blank: float = 0.06  # probability of an image with no digit at all (paper, lines, smudges, sensor noise)
    letters: float = 0.0  # share of the glyphs placed that are letters or signs, background (segapp.glyphs); at 0 no
    # random number is drawn for it, so the recipe stream is the one the shipped stages were trained on
    letter_label: int = BACKGROUND  # the label a letter's strokes get (the digit reader's training crops them)
    letter_chars: str = GLYPHS  # the glyphs letters are drawn from (segapp.glyphs)
    letter_fonts: tuple[str, ...] = ()  # font files half the letters are drawn with (segapp.glyphs.draw_glyph)
    letter_runs: float = 0.0  # share of the letters drawn as a run of two or three (segapp.glyphs.pick_glyph)
    signs: float = 0.0  # share of the glyphs placed that are signs (sign_chars), drawn as letters are, labelled
    # sign_label (at 0 no random number is drawn for it: the streams of every recipe before it are unchanged)
    sign_label: int = BACKGROUND
    sign_chars: str = SIGN_GLYPHS


def glyph_patch(d28: np.ndarray, height: float, rng: np.random.Generator, cfg: WildConfig,
                 label: int = -1, pen: int | None = None, pen_scale: float = 1.0) -> np.ndarray:
    """One MNIST digit -> float patch in [0, 1], ``height`` px tall, slanted, rotated, wobbled, re-stroked.

    ``pen``: where given, a seed the pen (re-drawn or not, nib, width, marker or fine liner) is drawn from instead of
    ``rng``; glyphs given one seed share one pen, as one writer's line does, and ``pen_scale`` (the line's digit
    height over ``height``) gives a smaller glyph the same width of stroke."""
    # (two generators: re-drawing takes as many draws as the skeleton asks, and the marker must not depend on it)
    pen_a, pen_b = (rng, rng) if pen is None else (np.random.default_rng([pen, 0]), np.random.default_rng([pen, 1]))
    ys, xs = np.nonzero(d28 > 0)
    d = d28[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.float32) / 255.0
    if label in (1, 4, 7) and rng.random() < cfg.styled:
        # (no draw at pointed_four 0: the net's recipe stays the stream its weights were trained on)
        d = pointed(d, rng) if label == 4 and cfg.pointed_four and rng.random() < cfg.pointed_four \
            else restyle(d, label, rng)
    if label == 9:  # an open loop or a curled foot, not both: together they draw a 3
        r = rng.random()
        d = open_loop(d, rng) if r < cfg.open_nine else hook(d, rng) if r < cfg.open_nine + cfg.hook_nine else d
    if pen_a.random() < cfg.repen:
        d = repen(d, pen_a, cfg.lift, cfg.swell, pen_scale)
    h0, w0 = d.shape
    s = height / max(h0, 1)
    sx = s * float(np.exp(rng.uniform(*cfg.aspect)))  # width/height ratio of other hands
    shear = rng.uniform(-cfg.slant, cfg.slant)
    ang = np.deg2rad(rng.uniform(-cfg.rotate, cfg.rotate))
    ca, sa = np.cos(ang), np.sin(ang)
    lin = np.array([[ca, -sa], [sa, ca]]) @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([sx, s])
    corners = np.array([[0, 0], [w0, 0], [0, h0], [w0, h0]], np.float64) @ lin.T
    pad = 6
    lo = corners.min(0)
    size = np.ceil(corners.max(0) - lo).astype(int) + 2 * pad
    m = np.hstack([lin, (pad - lo)[:, None]]).astype(np.float32)
    p = cv2.warpAffine(d, m, (int(size[0]), int(size[1])), flags=cv2.INTER_LINEAR, borderValue=0.0)
    if rng.random() < cfg.elastic:
        gh, gw = p.shape
        amp = rng.uniform(0.5, cfg.wobble) * height / TARGET_HEIGHT
        cells = int(rng.integers(3, 6))  # coarse: a whole digit leans; fine: strokes bend on their own
        field = rng.normal(0, 1, (2, cells, cells)).astype(np.float32)
        dx = cv2.resize(field[0], (gw, gh), interpolation=cv2.INTER_CUBIC) * amp
        dy = cv2.resize(field[1], (gw, gh), interpolation=cv2.INTER_CUBIC) * amp
        gx, gy = np.meshgrid(np.arange(gw, dtype=np.float32), np.arange(gh, dtype=np.float32))
        p = cv2.remap(p, gx + dx, gy + dy, cv2.INTER_LINEAR, borderValue=0.0)
    r = pen_b.random()
    if r < cfg.thicken:
        k = int(pen_b.integers(2, 6))  # px at the glyph's final size: the same for a line's small letters
        p = cv2.dilate(p, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    elif r < cfg.thicken + cfg.thin:
        thinner = cv2.erode(p, np.ones((2, 2), np.uint8))
        if (thinner > 0.5).sum() > 0.3 * (p > 0.5).sum():  # keep the digit legible
            p = thinner
    return np.clip(p, 0.0, 1.0)


def layout(rng: np.random.Generator, digits: np.ndarray, labels: np.ndarray, cfg: WildConfig):
    """Digits placed in one or two rows with random sizes and gaps -> ink (H, W) float, label (H, W)."""
    H, W = cfg.height, cfg.width
    ink = np.zeros((H, W), np.float32)
    strength = np.zeros((H, W), np.float32)  # intensity of the digit that owns each pixel
    label = np.full((H, W), BACKGROUND, np.uint8)
    faint = np.zeros((H, W), bool)
    rows = 2 if rng.random() < cfg.two_rows else 1
    base = TARGET_HEIGHT * float(np.exp(rng.uniform(*np.log(cfg.scale))))
    if rows == 2:
        base = min(base, (H - 6) / 2.3)
    row_gap = rng.uniform(2, 8)
    y_top = rng.uniform(-0.1 * base, max(H - rows * base - (rows - 1) * row_gap, 0) + 0.1 * base)
    for row in range(rows):
        x = rng.uniform(-0.3 * base, 0.5 * base)
        y_row = y_top + row * (base + row_gap)
        while x < W:
            drop = 0.0
            other = None  # a sign among the digits ("12/05", "$25") or a letter: no digit, labelled as such
            if cfg.signs and rng.random() < cfg.signs:
                other = cfg.sign_chars, 0.0, cfg.sign_label
            elif cfg.letters and rng.random() < cfg.letters:
                other = cfg.letter_chars, cfg.letter_runs, cfg.letter_label
            if other is not None:
                glyph, share, drop = pick_glyph(rng, other[0], cfg.letter_fonts, other[1])
                p, owner = glyph_patch(glyph, base * share * rng.uniform(0.9, 1.1), rng, cfg), other[2]
            else:
                j = int(rng.integers(0, len(digits)))
                p, owner = glyph_patch(digits[j], base * rng.uniform(0.9, 1.1), rng, cfg, int(labels[j])), labels[j]
            ph, pw = p.shape
            nz = np.nonzero(p.max(0) > 0.1)[0]
            left, right = (nz[0], nz[-1]) if len(nz) else (0, pw - 1)
            x0 = int(round(x - left))
            y0 = int(round(y_row + (rng.uniform(-0.08, 0.08) + drop) * base - 6))
            stamp((ink, strength, label, faint), p, owner, x0, y0)
            x = x0 + right + rng.uniform(*cfg.gap) * base / TARGET_HEIGHT
    label[faint & (label == BACKGROUND)] = VOID
    return ink, label


def stamp(canvas: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], p: np.ndarray, owner: int, x0: int,
          y0: int) -> None:
    """Draws patch ``p`` (float ink) with its top-left corner at (x0, y0) into ``canvas`` = (ink, the strength of
    each pixel's owner, label, faint band), clipped to it, in place: a pixel is labelled ``owner`` where the patch's
    ink is at least :data:`EDGE` and stronger than what is there (the stronger stroke owns a crossing)."""
    ink, strength, label, faint = canvas
    H, W = ink.shape
    ph, pw = p.shape
    cy0, cx0 = max(y0, 0), max(x0, 0)
    cy1, cx1 = min(y0 + ph, H), min(x0 + pw, W)
    if cy1 > cy0 and cx1 > cx0:
        q = p[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        win = (slice(cy0, cy1), slice(cx0, cx1))
        own = (q >= EDGE) & (q > strength[win])
        label[win][own] = owner
        strength[win][own] = q[own]
        faint[win] |= (q > 0.02) & (q < EDGE)
        np.maximum(ink[win], q, out=ink[win])


def photograph(ink: np.ndarray, rng: np.random.Generator, ruled: float = 0.0) -> np.ndarray:
    """White-on-black ink -> a photo of dark ink on paper (uint8 gray), as a phone would take it; ``ruled``: the
    probability that the paper is ruled or squared (:func:`_rules`)."""
    H, W = ink.shape
    paper = rng.uniform(140, 250) * np.exp(rng.normal(0, 0.08, 3))  # tinted paper, RGB
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(ang) * (xx / W - 0.5) + np.sin(ang) * (yy / H - 0.5)).astype(np.float32)
    light = 1.0 + rng.uniform(-0.6, 0.6) * ramp  # uneven lighting
    if rng.random() < 0.3:  # a soft shadow blob
        cy, cx, r = rng.uniform(0, H), rng.uniform(0, W), rng.uniform(0.2, 0.6) * max(H, W)
        light *= 1.0 - rng.uniform(0.1, 0.35) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    pen = rng.uniform(0, 90, 3)
    if rng.random() < 0.4:  # blue or red ballpoint
        pen[int(rng.integers(0, 3))] += rng.uniform(60, 140)
    a = ink * rng.uniform(0.6, 1.0)
    if rng.random() < 0.3:  # ruled or printed form lines: not digits
        y = int(rng.integers(0, H))
        a_line = np.zeros_like(ink)
        a_line[y : y + int(rng.integers(1, 3))] = rng.uniform(0.15, 0.4)
        a = np.maximum(a, a_line)
    if ruled and rng.random() < ruled:
        a = np.maximum(a, _rules(H, W, rng))
    if rng.random() < 0.3:  # dust and specks of ink
        for _ in range(int(rng.integers(1, 6))):
            cv2.circle(a, (int(rng.integers(0, W)), int(rng.integers(0, H))), int(rng.integers(0, 2)),
                       float(rng.uniform(0.3, 0.9)), -1)
    if rng.random() < 0.25:  # a smudge: a soft grey blob, wider than any stroke, that is not a digit
        a = np.maximum(a, _smudge(H, W, rng))
    rgb = (paper[None, None] * (1 - a[..., None]) + pen[None, None] * a[..., None]) * light[..., None]
    rgb += rng.normal(0, 1, (H, W, 1)).astype(np.float32) * rng.uniform(0, 6)  # paper texture
    sigma = rng.uniform(0, 1.3)
    if sigma > 0.3:
        rgb = cv2.GaussianBlur(rgb, (0, 0), sigma)
    rgb += rng.normal(0, rng.uniform(0, 10), rgb.shape).astype(np.float32)  # sensor noise
    img = np.clip(rgb, 0, 255).astype(np.uint8)
    if rng.random() < 0.6:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 96))])
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def _rules(H: int, W: int, rng: np.random.Generator) -> np.ndarray:
    """A notebook's lines, float (H, W) in [0, 0.6]: rules every half to one and a half digit heights, squared
    paper half the time, a little askew. Digits are written across them: a net that saw lines only beside digits
    read a square's corner through a digit as a 4 or a 7, a rule through a 5 as nothing (dev numbers photographed
    on squared paper: real people's digits 80% -> 59%, fonts 100% -> 91%)."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    step = rng.uniform(0.5, 1.5) * TARGET_HEIGHT
    half_width = rng.uniform(0.3, 1.0)  # px: hairline to 2 px rules
    level = rng.uniform(0.15, 0.6)
    tilt = rng.uniform(-0.03, 0.03)
    out = np.zeros((H, W), np.float32)
    for along, across in ((yy, xx), (xx, yy))[: 1 + int(rng.random() < 0.5)]:
        d = np.abs((along - tilt * across + rng.uniform(0, step)) % step - step / 2)  # px to the nearest rule
        out = np.maximum(out, level * np.clip(half_width + 0.5 - d, 0.0, 1.0))
    return out


def _smudge(H: int, W: int, rng: np.random.Generator) -> np.ndarray:
    """A soft blob of faint ink (a thumb, an eraser's trace, a shadow's edge), float (H, W) in [0, 0.45]."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    cy, cx = rng.uniform(0, H), rng.uniform(0, W)
    ry, rx = rng.uniform(3, 14), rng.uniform(3, 20)
    return (rng.uniform(0.1, 0.45) * np.exp(-((yy - cy) ** 2 / (2 * ry * ry) + (xx - cx) ** 2 / (2 * rx * rx))))


def _blank(rng: np.random.Generator, cfg: WildConfig) -> np.ndarray:
    """An image with no digit, as the net sees it (uint8): photographed paper with lines, specks and smudges, or a
    dark sensor's noise. Every pixel is background: what must be read as nothing."""
    H, W = cfg.height, cfg.width
    if rng.random() < 0.6:
        ink = np.zeros((H, W), np.float32)
        for _ in range(int(rng.integers(0, 3))):
            ink = np.maximum(ink, _smudge(H, W, rng))
        return photograph(ink, rng, cfg.ruled)
    level = rng.uniform(0, 40)  # a dark frame: sensor noise, hot pixels, JPEG blocks
    gray = level + rng.normal(0, rng.uniform(2, 16), (H, W))
    if rng.random() < 0.5:
        gray = cv2.GaussianBlur(gray, (0, 0), rng.uniform(0.5, 1.5))
    gray = np.clip(gray, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        ok, buf = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(20, 90))])
        gray = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return gray


def wild_sample(
    rng: np.random.Generator, digits: np.ndarray, labels: np.ndarray, cfg: WildConfig = WildConfig()
) -> tuple[np.ndarray, np.ndarray]:
    """One real-world-like training pair: image (H, W) float32 in [0, 1] as the net sees it, labels
    (H, W) uint8 with 0-9 digits, 10 background and :data:`~segapp.classes.VOID` for the faint stroke edge."""
    if rng.random() < cfg.blank:
        image, _ = normalise(_blank(rng, cfg))
        return image.astype(np.float32) / 255.0, np.full((cfg.height, cfg.width), BACKGROUND, np.uint8)
    ink, label = layout(rng, digits, labels, cfg)
    return finish(ink, rng, cfg), label


def finish(ink: np.ndarray, rng: np.random.Generator, cfg: WildConfig = WildConfig()) -> np.ndarray:
    """Clean white-on-black ink (H, W) float -> the image the net sees, float32 in [0, 1]: at ``cfg``'s rates
    upscaled from a small original, photographed (:func:`photograph`) or blurred and noisy, then normalised as
    inference normalises (:func:`segapp.normalise.normalise`)."""
    H, W = ink.shape
    if rng.random() < cfg.resample:  # a small original upscaled: soft, blocky strokes
        f = rng.uniform(0.45, 0.8)
        small = cv2.resize(ink, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        ink = cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)
    if rng.random() < cfg.photo:
        gray = photograph(ink, rng, cfg.ruled)
    else:
        gray = ink * 255.0
        if rng.random() < 0.3:
            gray = cv2.GaussianBlur(gray, (0, 0), rng.uniform(0.4, 1.0))
        if rng.random() < 0.3:
            gray = gray + rng.normal(0, rng.uniform(2, 12), gray.shape)
        gray = np.clip(gray, 0, 255).round().astype(np.uint8)
    image, _ = normalise(gray)
    return image.astype(np.float32) / 255.0

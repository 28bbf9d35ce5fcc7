"""The one inference path, used by the demo, `segapp predict` and `segapp evaluate`.

preprocess -> net -> postprocess, Ultralytics-predictor style:

1. **preprocess** (:meth:`Segmenter.preprocess` = :func:`segapp.scale.to_net_scale`): polarity and
   uneven paper normalised, the digit height measured from the ink on a reduced copy, the image
   resized so digits reach the net about 20 px tall (MNIST's digit height). A 4000x3000 photo of a
   3-digit number thus becomes a few hundred pixels: its cost follows the digits, not the megapixels.
2. **net** (:meth:`Segmenter.logits`): same-sized inputs in batches; large ones in tiles with a
   margin of the receptive field's radius, so memory is bounded and the result equals one pass.
3. **postprocess** (:meth:`Segmenter.postprocess`): digits are read at the net's scale (where
   their size is known), boxes mapped back to input pixels; the class map comes back at the
   input's exact H x W by bilinear upsampling of the logits, then argmax (clean boundaries), only
   around the digits (the rest is background), in strips of bounded memory; finally the masks are
   made to follow the ink at full resolution (:func:`ink_refine`).

The network itself stays decoder-free and never downsamples: all resizing is around it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .classes import BACKGROUND, MIN_DIGIT_AREA
from .images import Prepared, is_clean, normalise, prepare
from .model import DEFAULT_WEIGHTS, load_pretrained
from .render import Segmentation, read_digits
from .runtime import amp_enabled, pick_device
from .scale import TARGET_HEIGHT, NetInput, ink_height, to_net_scale  # noqa: F401 (re-exported)

INK_LEVEL = 48  # of 255: normalised ink at or above this is stroke wherever the image was resampled or blurred
INK_FLOOR = 16  # of 255: normalised ink below this is never a stroke (paper grain the normaliser let through)
STROKE_SHARE = 0.25  # of a stroke's local full ink: where a faint blurred stroke ends (the truth's rule: a quarter)
QUARTER = 64  # of 255: a quarter of full ink, the truth's edge of a stroke (fainter is the void band)
RING_NOISE = 0.05  # of 255: mean ink 2-4 px off the strokes above which an image is ringing (see is_quiet)
SHARP_EDGES = 0.465  # see is_sharp: between on-paper canvases (>= 0.476) and photos at the same scale (<= 0.455)
STROKE_RADIUS = 3.0  # px at net scale (digits 20 px tall): the neighbourhood a stroke's full ink is looked for in
NATIVE_HEIGHT = 17.0  # px: clean images read unscaled with digits at least this tall follow M2NIST's ink > 0 rule
LINE_LENGTH = 2.5  # digit heights: straight ink at least this long is a ruled line, not a digit's stroke
RULE_INK = 32  # of 255: normalised ink from which a pixel may belong to a ruled line (a faint notebook margin)
RULE_GAP = 4  # px at net scale: breaks along a ruled line that it still bridges (noise, JPEG blocks)
LINE_SHARE = 0.5  # a "digit" with this share of its pixels on ruled lines is the lines (where a margin crosses a rule)
BLOB_WIDTH = 0.85  # of a digit's height: ink this wide is a filled blob (a smudge), no pen stroke
PIECE_SHARE = 0.3  # of a digit's mask: its largest connected piece holds at least this much, unless it is specks
INK_SPAN = 0.6  # a digit whose ink spans this share of its height is a stroke, however thin (see _has_ink)
INK_PIXELS = 2_000_000  # largest crop whose ink is measured at full resolution (memory: ~20 bytes a pixel)
STRIP_BYTES = 64 * 2**20  # memory of one strip of upsampled logits


BACKENDS = ("auto", "torch", "onnx", "int8")  # what runs the net: see make_engine


@dataclass(frozen=True)
class InferenceConfig:
    """How images are brought to the net. Defaults suit photos, scans, drawings and M2NIST alike."""

    rescale: bool = True  # scale normalisation; off: the net sees the image at its own size
    digit_height: float | None = None  # px in the input; None: estimated from the ink
    max_net_pixels: int = 1_500_000  # the net's input is reduced to fit (bounds time: ~3 s on 2 cores)
    analysis_pixels: int = 1_000_000  # size of the copy the digit height is measured on
    tile: int = 512  # net inputs above tile x tile pixels run in overlapping tiles
    batch_size: int = 16
    device: str = "auto"
    amp: str = "auto"  # bfloat16: auto = only where native (GPU, AVX-512 BF16 / AMX)
    backend: str = "auto"  # auto | torch | onnx | int8: what runs the net (see :func:`make_engine`)

    def __post_init__(self):
        if self.digit_height is not None and not (2 <= self.digit_height <= 100_000):
            raise ValueError(f"digit height {self.digit_height} px: give a digit's height in the image, 2 px or more")
        if self.max_net_pixels < 64 * 64 or self.analysis_pixels < 64 * 64 or self.tile < 64 or self.batch_size < 1:
            raise ValueError("inference limits too small: max/analysis pixels >= 4096, tile >= 64, batch size >= 1")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend {self.backend!r}: use {', '.join(BACKENDS)}")


@dataclass(frozen=True)
class Pending:
    """A net output whose postprocessing waits (see :meth:`Segmenter.run`): the input and its net-scale maps."""

    net_input: NetInput
    small: np.ndarray  # (h, w) uint8 class map at net scale (= the input's size)
    conf: np.ndarray  # (h, w) float32 softmax confidence of that class


class Segmenter:
    """Weights + :class:`InferenceConfig` -> a callable from images to :class:`Segmentation`.

    Example::

        seg = Segmenter("weights")("photo.jpg")
        print(seg.text, seg.digit_height, seg.scale)
    """

    def __init__(self, weights: Path | str | None = None, cfg: InferenceConfig = InferenceConfig(),
                 model: torch.nn.Module | None = None):
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        self.amp = amp_enabled(cfg.amp, self.device)
        given = model is not None
        model = model if given else load_pretrained(weights)
        self.model = model.to(self.device).eval()
        self.radius = (model.receptive_field() - 1) // 2
        self.num_classes = model.config.num_classes
        folder = DEFAULT_WEIGHTS if weights is None else Path(weights)
        folder = folder if folder.is_dir() else folder.parent  # the weights folder, or the file's
        # an inference copy (BN folded), or the int8 graph the weights folder comes with (see make_engine); a net
        # passed in uses the shipped graph only if it is that net's, without a warning when it is not
        self.engine = make_engine(self.model, cfg.backend, self.device, self.amp, folder,
                                  quiet=given and weights is None)
        self.backend = self.engine.name

    def with_options(self, **changes) -> Segmenter:
        """The same weights with other options (e.g. a user's ``digit_height``); shares the model."""
        other = Segmenter.__new__(Segmenter)
        other.__dict__.update(self.__dict__)
        other.cfg = replace(self.cfg, **changes)
        return other

    def __call__(self, source, name: str | None = None) -> Segmentation:
        """One image (path, bytes, array or Pillow image) -> :class:`Segmentation`."""
        return self.segment([source if isinstance(source, Prepared) else prepare(source, name)])[0]

    # -- preprocess ------------------------------------------------------------------------------
    def preprocess(self, p: Prepared) -> NetInput:
        """Normalises polarity and background, estimates the digit height and resizes to the net's scale."""
        c = self.cfg
        return to_net_scale(p, c.rescale, c.digit_height, c.analysis_pixels, c.max_net_pixels)

    # -- net -------------------------------------------------------------------------------------
    @torch.inference_mode()
    def logits(self, images: list[np.ndarray]) -> torch.Tensor:
        """Same-sized (h, w) uint8 images -> float32 logits (N, C, h, w) on the CPU."""
        h, w = images[0].shape
        x = torch.from_numpy(np.stack(images)).float().div_(255.0)[:, None]
        if h * w <= self.cfg.tile**2:
            return self._forward(x)
        out = torch.empty((len(images), self.num_classes, h, w), dtype=torch.float32)
        t, r = self.cfg.tile, self.radius
        for y in range(0, h, t):
            for x0 in range(0, w, t):
                ya, xa, yb, xb = max(0, y - r), max(0, x0 - r), min(h, y + t + r), min(w, x0 + t + r)
                part = self._forward(x[:, :, ya:yb, xa:xb])
                out[:, :, y : y + t, x0 : x0 + t] = part[:, :, y - ya : y - ya + t, x0 - xa : x0 - xa + t]
        return out

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, h, w) float in [0, 1] -> float32 logits (N, C, h, w) on the CPU, through the chosen engine."""
        return self.engine(x)

    # -- postprocess -----------------------------------------------------------------------------
    def postprocess(self, n: NetInput, logits: torch.Tensor, small: np.ndarray | None = None,
                    conf: np.ndarray | None = None) -> Segmentation:
        """(C, h, w) logits -> class map at the input's size, digits read in lines, in input pixels.

        ``small`` / ``conf``: the net-scale class map and its softmax confidence when already computed for the
        whole batch (see :meth:`net`); taken from ``logits`` otherwise.
        """
        if small is None or conf is None:
            small, conf = _classes(logits[None])
            small, conf = small[0], conf[0]
        digits = read_digits(small, conf)
        lines = ruled_lines(n.image)
        ruled = bool(lines.any())
        if ruled:  # a ruled line, a margin or a table's border is no digit, nor is where two of them cross
            digits = [d for d in digits if _line_share(d, small, lines) < LINE_SHARE]
        H, W = n.prepared.raw.shape
        full = small.copy() if small.shape == (H, W) else upsample_classes(logits, small, H, W)
        ink_refine(full, n.prepared, n.scale, n.digit_height)
        if ruled:  # the line's stretches outside the digits it crosses leave the mask
            keep = np.zeros(small.shape, bool)
            for d in digits:
                x0, y0, x1, y1 = d["bbox"]
                keep[y0:y1, x0:x1] = True
            off = (lines & ~keep).view(np.uint8)
            off = off if off.shape == (H, W) else cv2.resize(off, (W, H), interpolation=cv2.INTER_NEAREST)
            full[off.view(bool)] = BACKGROUND
        sy, sx = small.shape[0] / H, small.shape[1] / W
        for d in digits:  # boxes to input pixels
            x0, y0, x1, y1 = d["bbox"]
            d["bbox"] = [int(x0 / sx), int(y0 / sy), min(W, math.ceil(x1 / sx)), min(H, math.ceil(y1 / sy))]
        digits = settle(full, digits, MIN_DIGIT_AREA / (sx * sy))
        return Segmentation.from_digits(full, n.prepared, digits, scale=n.scale, digit_height=n.digit_height)

    def net(self, inputs: list[NetInput]) -> list[tuple[torch.Tensor, np.ndarray, np.ndarray]]:
        """The net on preprocessed inputs of one size: per input, its (C, h, w) logits, (h, w) uint8 class map
        and float32 confidence at net scale, i.e. what :meth:`postprocess` takes. Softmax and argmax run once for
        the batch: per image they were two small multithreaded torch calls each, costing more than the rest of
        the postprocessing on a 64x84 canvas (same values: softmax over classes is per pixel)."""
        images = [n.image for n in inputs]
        h, w = images[0].shape
        if getattr(self.engine, "class_outputs", False) and h * w <= self.cfg.tile**2:
            logits, small, conf = self.engine.with_classes(np.stack(images))  # ONNX Runtime computes all three
        else:
            logits = self.logits(images)
            small, conf = _classes(logits)
        return list(zip(logits, small, conf))

    def run(self, inputs: list[NetInput]) -> list[Segmentation | Pending]:
        """The net on preprocessed inputs of one size (the caller batches; see :meth:`segment_inputs`), each
        postprocessed now or left :class:`Pending`: an input the net saw at its own size needs only its net-scale
        class map and confidence to be postprocessed, which are smaller than the segmentation it becomes, so a
        caller may :meth:`finish` it elsewhere (`segapp predict` does, in a file thread beside the encoding of its
        PNGs). A rescaled input is postprocessed here, as its logits are upsampled and are not kept waiting."""
        return [Pending(n, small, conf) if small.shape == n.prepared.raw.shape
                else self.postprocess(n, logits, small, conf)
                for n, (logits, small, conf) in zip(inputs, self.net(inputs))]

    def finish(self, result: Segmentation | Pending) -> Segmentation:
        """A :meth:`run` result as a segmentation: a pending one is postprocessed now."""
        return self.postprocess(result.net_input, None, result.small, result.conf) if isinstance(
            result, Pending) else result

    def infer(self, inputs: list[NetInput]) -> list[Segmentation]:
        """Net + postprocess for preprocessed inputs of one size: :meth:`run`, every result finished."""
        return [self.finish(r) for r in self.run(inputs)]

    def segment_mixed(self, n: NetInput) -> Segmentation:
        """Digits of clearly different sizes in one image: each size group in its own pass, at its own scale.

        Each pass sees a crop around its group with the other groups' ink painted over with paper, so
        a title's big digits never reach the net at the small print's scale, nor the reverse.
        """
        p = n.prepared
        H, W = p.raw.shape
        full = np.full((H, W), BACKGROUND, np.uint8)
        digits = []
        for g in n.groups:
            y0, y1, x0, x1 = g.box
            crop = p.raw[y0:y1, x0:x1].copy()
            hide = cv2.dilate(g.others[y0:y1, x0:x1].astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            if hide.any() and not hide.all():
                crop[hide] = np.uint8(np.median(crop[~hide]))
            sub = self.with_options(digit_height=g.height).segment([Prepared(crop)])[0]
            view = full[y0:y1, x0:x1]
            found = (sub.classes != BACKGROUND) & ~hide
            view[found] = sub.classes[found]
            for d in sub.digits:
                bx0, by0, bx1, by1 = d["bbox"]
                digits.append({**d, "bbox": [bx0 + x0, by0 + y0, bx1 + x0, by1 + y0]})
        small = min(n.groups, key=lambda g: g.height)
        return Segmentation.from_digits(full, p, digits, scale=min(1.0, TARGET_HEIGHT / small.height),
                                        digit_height=small.height)

    def batch_limit(self, shape: tuple[int, int]) -> int:
        """How many net inputs of ``shape`` go into one batch (fewer as they grow; tiles bound the rest)."""
        return max(1, min(self.cfg.batch_size, self.cfg.tile**2 // (shape[0] * shape[1])))

    def segment(self, prepared: list[Prepared]) -> list[Segmentation]:
        """Prepared images -> segmentations (in order); same-sized net inputs share batches."""
        return self.segment_inputs([self.preprocess(p) for p in prepared])

    @staticmethod
    def needs_more_than_one_pass(n: NetInput) -> bool:
        """Whether :meth:`segment_inputs` reads ``n`` in more than one pass of the net (digits of clearly different
        sizes, or a borderline size estimate read both ways): such an input cannot go through :meth:`net` and
        :meth:`postprocess` alone, which is all a batch job does for the others."""
        return bool(n.groups) or n.ambiguous

    def segment_inputs(self, inputs: list[NetInput]) -> list[Segmentation]:
        """Preprocessed inputs -> segmentations (in order): the whole reading, every job's path (the demo and
        evaluate through :meth:`segment`; predict for inputs that :meth:`needs_more_than_one_pass`)."""
        results: list[Segmentation | None] = [None] * len(inputs)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, n in enumerate(inputs):
            if n.groups:
                results[i] = self.segment_mixed(n)
            else:
                groups.setdefault(n.image.shape, []).append(i)
        for shape, idx in groups.items():
            per_batch = self.batch_limit(shape)
            for k in range(0, len(idx), per_batch):
                chunk = idx[k : k + per_batch]
                for i, seg in zip(chunk, self.infer([inputs[i] for i in chunk])):
                    results[i] = seg
        for i, n in enumerate(inputs):
            if n.ambiguous and not n.groups:  # borderline size estimate on a small image: also try it unscaled
                plain = self.infer([NetInput(n.prepared, n.prepared.gray, 1.0, n.digit_height)])[0]
                if _certainty(plain) > _certainty(results[i]):
                    results[i] = plain
        return results


def ruled_lines(image: np.ndarray) -> np.ndarray:
    """(h, w) bool: the straight horizontal and vertical lines of a net-scale image (ruled paper, a margin, a form's
    boxes), at least :data:`LINE_LENGTH` digit heights long, widened by a pixel for their soft edges.

    The net, which sees 45 px at a time, colours where such lines cross as a 7 or a 4 and a rule's stretch as a
    1: on ruled blank pages that was every page misread (dev set). No digit holds a straight stroke 2.5 digit
    heights long, so a digit mostly made of such lines is none, and a line through a digit is not part of it.
    """
    ink = (image >= RULE_INK).astype(np.uint8)
    n = int(LINE_LENGTH * TARGET_HEIGHT)
    if not ink.any() or max(image.shape) < n:
        return np.zeros(image.shape, bool)
    # A faint rule in a noisy photo or a JPEG dips below the level here and there: gaps of up to RULE_GAP px
    # along the line are closed first (a digit's own strokes are far shorter than a line, gaps or not).
    along, across = np.ones((1, RULE_GAP + 1), np.uint8), np.ones((RULE_GAP + 1, 1), np.uint8)
    found = cv2.morphologyEx(cv2.morphologyEx(ink, cv2.MORPH_CLOSE, along), cv2.MORPH_OPEN, np.ones((1, n), np.uint8))
    found |= cv2.morphologyEx(cv2.morphologyEx(ink, cv2.MORPH_CLOSE, across), cv2.MORPH_OPEN,
                              np.ones((n, 1), np.uint8))
    return cv2.dilate(found, np.ones((3, 3), np.uint8)).astype(bool)


def _line_share(d: dict, small: np.ndarray, lines: np.ndarray) -> float:
    """Share of a digit's net-scale pixels on ruled lines (a digit on a rule: a few; a rule's corner: all)."""
    x0, y0, x1, y1 = d["bbox"]
    mine = small[y0:y1, x0:x1] == d["digit"]
    return float((mine & lines[y0:y1, x0:x1]).sum()) / max(int(mine.sum()), 1)


def settle(full: np.ndarray, digits: list[dict], min_area: float) -> list[dict]:
    """Makes the mask and the reading agree (``full`` in place); returns the digits still read, with their areas.

    A digit left with under ``min_area`` input pixels of ink once the mask follows the strokes (a
    smudge, a shadow: colour without ink) is not read. A blob no digit is read from leaves the mask:
    nothing is coloured where nothing is read. Within a blob that is read, pixels of a class not read
    there (a stroke's end the net gave another class) take the class of the nearest read digit, so
    each connected stroke carries its digit's class.
    """
    digits = [d for d in digits if _has_ink(full, d, min_area)]
    fg = full != BACKGROUND
    if not fg.any():
        return digits
    rows, cols = np.flatnonzero(fg.any(1)), np.flatnonzero(fg.any(0))
    r0, c0 = rows[0], cols[0]
    view = full[r0 : rows[-1] + 1, c0 : cols[-1] + 1]
    read = np.zeros(view.shape, bool)
    for d in digits:
        x0, y0, x1, y1 = d["bbox"]
        box = (slice(max(0, y0 - r0), max(0, y1 - r0)), slice(max(0, x0 - c0), max(0, x1 - c0)))
        read[box] |= view[box] == d["digit"]
    n, blobs = cv2.connectedComponents((view != BACKGROUND).astype(np.uint8), connectivity=8)
    kept = np.zeros(n, bool)
    kept[np.unique(blobs[read])] = True
    kept[0] = False
    stray = kept[blobs] & ~read
    view[~kept[blobs]] = BACKGROUND
    if stray.any():
        src = np.where(read, view, BACKGROUND).astype(np.uint8)
        kernel = np.ones((3, 3), np.uint8)
        for _ in range(64):  # a few px in practice: strays are a digit's own stroke pixels
            near = cv2.erode(src, kernel)
            fill = stray & (near != BACKGROUND)
            src[fill] = near[fill]
            stray &= ~fill
            if not fill.any() or not stray.any():
                break
        view[kept[blobs]] = src[kept[blobs]]
        view[stray & (src == BACKGROUND)] = BACKGROUND
    for d in digits:
        x0, y0, x1, y1 = d["bbox"]
        d["area"] = int((full[y0:y1, x0:x1] == d["digit"]).sum())
    return digits


def _has_ink(full: np.ndarray, d: dict, min_area: float) -> bool:
    """Whether a digit kept enough stroke ink once the mask follows the strokes (sets ``d["area"]``).

    ``min_area`` ink pixels, or a quarter of that when the ink still spans :data:`INK_SPAN` of the digit's
    height: a fine pen's digit is a long, thin stroke of little area (hairline fonts, a fine felt-tip at 0.6x
    net scale: 55 px where 56 were asked), while a smudge or shadow the net coloured keeps only specks.
    """
    x0, y0, x1, y1 = d["bbox"]
    mine = full[y0:y1, x0:x1] == d["digit"]
    d["area"] = int(mine.sum())
    rows = np.flatnonzero(mine.any(1))
    if len(rows) == 0:
        return False
    span = int(rows[-1] - rows[0] + 1)  # px: the ink's height
    if d["area"] < min_area and not (d["area"] >= min_area / 4 and span >= INK_SPAN * (y1 - y0)):
        return False
    return _is_stroke(mine, span)


def _is_stroke(mine: np.ndarray, span: int) -> bool:
    """Whether a digit's mask (bool, its box; ``span``: its ink's height in px) is pen strokes rather than a
    smudge or sensor noise.

    A smudge, a shadow or a blot the net coloured is filled: as wide as it is tall, where even a marker's
    stroke is under half a digit's height (:data:`BLOB_WIDTH`). Noise is specks: a stroke is mostly one
    connected piece, even when a faint pencil line breaks (:data:`PIECE_SHARE`).
    """
    m = mine.astype(np.uint8)
    dist = cv2.distanceTransform(np.pad(m, 1), cv2.DIST_L2, 3)
    if 2 * float(dist.max()) >= BLOB_WIDTH * span:
        return False
    n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    return n <= 2 or int(stats[1:, cv2.CC_STAT_AREA].max()) >= PIECE_SHARE * int(m.sum())


def _classes(logits: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, h, w) logits -> (N, h, w) uint8 class indices and float32 softmax confidence of that class.

    The confidence is computed where a digit was found and is 1 on background, which nothing reads (digits are
    read from their own pixels): the softmax of the max logit is 1 / sum(exp(logits - max)), and skipping the
    ~94% of pixels that are background made this a fifth of what a full softmax cost `segapp predict`.
    """
    top, classes = logits.max(1)
    conf = torch.ones_like(top)
    n, y, x = (classes != BACKGROUND).nonzero(as_tuple=True)
    if len(n):
        conf[n, y, x] = 1.0 / torch.exp(logits[n, :, y, x] - top[n, y, x, None]).sum(1)
    return classes.to(torch.uint8).numpy(), conf.numpy()


def _certainty(seg: Segmentation) -> float:
    """Area-weighted mean confidence of the digits read (0 when none): which of two readings to believe."""
    area = sum(d["area"] for d in seg.digits)
    return sum(d["confidence"] * d["area"] for d in seg.digits) / area if area else 0.0


def upsample_classes(logits: torch.Tensor, small: np.ndarray, H: int, W: int) -> np.ndarray:
    """Class map at H x W from (C, h, w) logits: bilinear upsampling (align_corners=False), then argmax.

    Only the box around the digits found at net scale is computed (the rest is background), in
    strips of at most :data:`STRIP_BYTES`, so a 12-megapixel class map costs tens of megabytes.
    """
    out = np.full((H, W), BACKGROUND, np.uint8)
    ys, xs = np.nonzero(small != BACKGROUND)
    if len(ys) == 0:
        return out
    C, h, w = logits.shape
    sy, sx = h / H, w / W
    # input rows/cols whose source position lies within one net pixel of a digit pixel
    r0, r1 = max(0, int((ys.min() - 1) / sy)), min(H, math.ceil((ys.max() + 2) / sy))
    c0, c1 = max(0, int((xs.min() - 1) / sx)), min(W, math.ceil((xs.max() + 2) / sx))
    gx = ((torch.arange(c0, c1, dtype=torch.float32) + 0.5) * sx) * (2.0 / w) - 1.0
    rows = max(1, STRIP_BYTES // (4 * C * (c1 - c0)))
    src = logits[None]
    for y in range(r0, r1, rows):
        ye = min(r1, y + rows)
        gy = ((torch.arange(y, ye, dtype=torch.float32) + 0.5) * sy) * (2.0 / h) - 1.0
        grid = torch.stack(torch.broadcast_tensors(gx[None, :], gy[:, None]), dim=-1)[None]
        up = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
        out[y:ye, c0:c1] = up[0].argmax(0).to(torch.uint8).numpy()
    return out


def ink_map(raw: np.ndarray, inverted: bool) -> np.ndarray:
    """Normalised ink of a crop; crops over :data:`INK_PIXELS` are normalised at a reduced size and the result
    upsampled (a phone photo's strokes are tens of pixels wide, so this loses no boundary worth having)."""
    h, w = raw.shape
    f = math.sqrt(INK_PIXELS / (h * w))
    if f >= 1:
        return normalise(raw, inverted=inverted)[0]
    small = cv2.resize(raw, (max(1, int(w * f)), max(1, int(h * f))), interpolation=cv2.INTER_AREA)
    return cv2.resize(normalise(small, inverted=inverted)[0], (w, h), interpolation=cv2.INTER_LINEAR)


def is_sharp(ink: np.ndarray) -> bool:
    """Whether a normalised image's strokes have crisp edges (a scan, a drawing, a canvas on paper) rather than a
    photo's blur: the 95th percentile of the gradient over the ink, as a share of the ink's full level. Crisp
    M2NIST-like strokes reach 0.48-0.53 (canvases, on paper, JPEG), photographs 0.2-0.45 (dev set)."""
    lit = ink > 0
    if lit.sum() < 20:
        return False
    g = ink.astype(np.float32)
    mag = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)) / 8
    return float(np.percentile(mag[lit], 95)) >= SHARP_EDGES * max(float(np.percentile(g[lit], 99)), 1.0)


def is_quiet(ink: np.ndarray) -> bool:
    """Whether a normalised image is free of compression ringing: next to nothing lit 2-4 px off its strokes.

    A JPEG's ringing lights faint pixels beside every stroke, where a lossless M2NIST canvas holds exact zeros;
    under the ink > 0 rule those pixels joined the digits (JPEG paper at quality 60-75: mIoU 0.91 with the faint
    band void, against 0.99 under the quarter rule). The mean ink in a ring 2-4 px off the strokes is 0.0 at
    quality 90-100 and 0.1-1.8 from quality 75 down (dev canvases on paper).
    """
    strong = (ink >= QUARTER).astype(np.uint8)
    if not strong.any():
        return True
    d = cv2.distanceTransform(1 - strong, cv2.DIST_L2, 3)
    ring = ink[(d > 2) & (d <= 4)]
    return not len(ring) or float(ring.mean()) < RING_NOISE


def stroke_ink(ink: np.ndarray, native: bool, radius: int) -> np.ndarray:
    """(h, w) bool: where a normalised image's strokes are, as the masks should follow them.

    ``native``: a crisp image at the net's own scale (an M2NIST canvas, also on paper or as a JPEG),
    whose every lit pixel is stroke (M2NIST's own rule: ink > 0). Otherwise the image was resampled
    or blurred, and its faint band is where the stroke *spread*, not where it was drawn: a stroke
    pixel holds at least :data:`STROKE_SHARE` of its stroke's full ink (the strongest ink within
    ``radius`` px, about a stroke width), capped at :data:`INK_LEVEL` so that a bold stroke's edge is
    not cut, and never below :data:`INK_FLOOR`, so that noise next to nothing is not ink. A global
    level alone cuts thin, faint strokes (a pencil line's peak is a third of a marker's).
    """
    if native:
        return ink >= 1
    k = 2 * max(1, radius) + 1
    peak = cv2.dilate(ink, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))).astype(np.float32)
    return ink.astype(np.float32) >= np.maximum(INK_FLOOR, np.minimum(INK_LEVEL, STROKE_SHARE * peak))


def ink_refine(full: np.ndarray, prepared: Prepared, scale: float, digit_height: float | None = None) -> None:
    """Makes digit masks follow the ink at the input's own resolution (in place).

    Two rules: a pixel without stroke ink (:func:`stroke_ink`) is background, and stroke ink touching a
    digit belongs to it. The first removes the halo that upsampled logits wear (they cannot place a
    boundary more finely than one net pixel: 40 px in a phone photo) and the faint band a resampled
    or blurred stroke spreads around itself; the second gives stroke edges the net dropped back to
    their digit. Ink is measured on a crop around the digits (see :func:`ink_map`) with the polarity
    found for the whole image.
    """
    ys, xs = np.nonzero(full != BACKGROUND)
    if len(ys) == 0:
        return
    if scale == 1.0:
        y0, x0, ink = 0, 0, prepared.gray
        y1, x1 = full.shape
    else:
        m = int(TARGET_HEIGHT / scale)  # a digit height of paper around the digits, for the background estimate
        y0, y1 = max(0, ys.min() - m), min(full.shape[0], ys.max() + 1 + m)
        x0, x1 = max(0, xs.min() - m), min(full.shape[1], xs.max() + 1 + m)
        ink = ink_map(prepared.raw[y0:y1, x0:x1], prepared.inverted)
    raw = prepared.raw[y0:y1, x0:x1]
    native = scale == 1.0 and (digit_height is None or digit_height >= NATIVE_HEIGHT) and (
        is_clean(255 - raw if prepared.inverted else raw) or (is_sharp(ink) and is_quiet(ink)))
    lit = stroke_ink(ink, native, math.ceil(STROKE_RADIUS / scale))
    view = full[y0:y1, x0:x1]
    view[~lit & (view != BACKGROUND)] = BACKGROUND
    grow = max(2, math.ceil(1 / scale))  # px: one net pixel, and at least the 2 px of an anti-aliased edge
    kernel = np.ones((3, 3), np.uint8)
    for _ in range(grow):
        orphan = lit & (view == BACKGROUND)
        if not orphan.any():
            break
        near = cv2.erode(view, kernel)  # min over 3x3: any digit (0-9) beats background (10)
        view[orphan] = near[orphan]


# -- engines ---------------------------------------------------------------------------------------


def make_engine(model: torch.nn.Module, backend: str, device: torch.device, amp: bool, folder: Path | None = None,
                quiet: bool = False):
    """The callable that runs the net for a :class:`Segmenter` (see :mod:`segapp.engines`).

    * ``torch``: an inference copy of ``model`` with BatchNorm folded into the convs, channels_last, bfloat16
      autocast when ``amp`` (which :func:`segapp.runtime.amp_enabled` allows only where bf16 is native);
    * ``onnx``: the net exported to ONNX (cached per weights) and run by ONNX Runtime with torch's thread
      count; checked against torch on a small input before use;
    * ``int8``: the weights folder's own int8 graph (``folder/model.int8.onnx`` made from these very weights by
      ``segapp export --int8``), else that ONNX graph quantized by ONNX Runtime on first use (static QDQ,
      calibrated on training-like images; cached per weights): the fastest engine on every CPU measured
      (docs/speed.md), within 0.0013 mIoU of float on the test split and every robustness category for the
      shipped weights, but not pixel-identical (99.97%);
    * ``auto``: the fastest correct engine by a measured rule (docs/speed.md): on a CPU, int8 when the weights
      folder comes with its checked int8 graph (the shipped weights do: 2.2x torch bf16, 2.5x ONNX Runtime fp32
      here); otherwise torch on CUDA and wherever bf16 is native and on (``amp``: on an AVX-512 BF16 CPU, torch
      bf16 ran the net 1.3x faster than ONNX Runtime fp32, with 99.99% of class-map pixels unchanged); ONNX
      Runtime fp32 on other CPUs (on AVX2, 1.3x torch with BatchNorm folded, 11x emulated bf16); torch when ONNX
      Runtime is missing or its graph fails the check. A rule, not a start-up timing: the same engine, so the
      same outputs, on every run; weights without an int8 graph never wait for a calibration.

    ``folder``: where the weights came from (their int8 graph is looked for there); ``quiet``: a graph there made
    from other weights is passed over without a warning.
    """
    import warnings

    from .engines import EngineError, TorchEngine, onnx_engine_for
    from .int8 import int8_engine_for, shipped_int8

    def folder_graph(instead: str) -> bytes | None:
        try:
            return shipped_int8(model, folder)
        except EngineError as e:
            if not quiet:
                warnings.warn(f"segapp: {e}; {instead}", stacklevel=3)
            return None

    if backend == "auto" and device.type == "cpu":
        data = folder_graph("using a float engine")
        if data is not None:
            try:
                return int8_engine_for(model, device, data=data)
            except EngineError as e:  # its class maps fail the probe check
                warnings.warn(f"segapp: {e}; using a float engine", stacklevel=2)
    if backend == "torch" or (backend == "auto" and (device.type != "cpu" or amp)):
        return TorchEngine(model, device, amp)
    if backend == "onnx":
        return onnx_engine_for(model, device)
    if backend == "int8":
        return int8_engine_for(model, device, data=folder_graph("quantizing these weights instead"))
    try:
        return onnx_engine_for(model, device)
    except EngineError as e:
        warnings.warn(f"segapp: ONNX Runtime backend unavailable ({e}); using torch", stacklevel=2)
        return TorchEngine(model, device, amp)

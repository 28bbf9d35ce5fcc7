"""The one inference path, used by the demo, `segapp predict` and `segapp evaluate`.

preprocess -> net -> postprocess, Ultralytics-predictor style:

1. **preprocess** (:meth:`Segmenter.preprocess` = :func:`segapp.scale.to_net_scale`): polarity and
   uneven paper normalised, the digit height measured from the ink on a reduced copy, the image
   resized so digits reach the net about 20 px tall (MNIST's digit height). A 4000x3000 photo of a
   3-digit number thus becomes a few hundred pixels: its cost follows the digits, not the megapixels.
2. **net** (:meth:`Segmenter.logits`): same-sized inputs in batches; large ones in tiles with a
   margin of the receptive field's radius, so memory is bounded and the result equals one pass.
3. **postprocess** (:meth:`Segmenter.postprocess` = :func:`segapp.readout.read_out`): digits are read at
   the net's scale (where their size is known), boxes mapped back to input pixels; the class map comes
   back at the input's exact H x W by bilinear upsampling of the logits, then argmax (clean boundaries),
   only around the digits (the rest is background), in strips of bounded memory; finally the masks are
   made to follow the ink at full resolution (:func:`ink_refine`).

The network itself stays decoder-free and never downsamples: all resizing is around it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch

from .alternatives import runner_up
from .backends import BACKENDS, make_engine
from .classes import BACKGROUND
from .context import CONTEXT_DIR, load_context
from .engines import CropRunner
from .images import Prepared, prepare
from .ink import ink_refine, on_paper
from .ink_judge import INK_DIR, clean_ink, load_ink_judge
from .model import DEFAULT_WEIGHTS, load_pretrained
from .postprocess import certainty, class_maps, vote_blobs
from .reader import LETTERS_DIR, READER_DIR, SIGNS_DIR, load_letters, load_reader, load_signs
from .readout import read_out
from .render import Segmentation
from .reread import READER_WEIGHT
from .ruled import erase_rules, off_the_page_lines
from .runtime import amp_enabled, pick_device
from .scale import TARGET_HEIGHT, NetInput, to_net_scale
from .tilt import detail, must_turn, text_tilt, turned_back, upright


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
    reader: bool = True  # each digit read again by the weights' digit reader, where they have one (segapp.reread)
    reader_weight: float = READER_WEIGHT  # the reader's share in the mix with the net's reading (0 to 1)
    drop_words: bool = True  # a word with a letter in it is not read (segapp.words; a reader trained with letters)
    ink_judge: bool = True  # small digits' masks follow the weights' ink judge, where they have one (segapp.ink_judge)
    deskew: bool = True  # a number photographed at a tilt is read turned upright, its mask turned back (segapp.tilt)

    def __post_init__(self):
        if self.digit_height is not None and not (2 <= self.digit_height <= 100_000):
            raise ValueError(f"digit height {self.digit_height} px: give a digit's height in the image, 2 px or more")
        if self.max_net_pixels < 64 * 64 or self.analysis_pixels < 64 * 64 or self.tile < 64 or self.batch_size < 1:
            raise ValueError("inference limits too small: max/analysis pixels >= 4096, tile >= 64, batch size >= 1")
        if not 0.0 <= self.reader_weight <= 1.0:
            raise ValueError(f"reader weight {self.reader_weight}: give a share from 0 (the net alone) to 1")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend {self.backend!r}: use {', '.join(BACKENDS)}")


@dataclass(frozen=True)
class Pending:
    """A net output whose postprocessing waits (see :meth:`Segmenter.run`): the input and its net-scale maps."""

    net_input: NetInput
    small: np.ndarray  # (h, w) uint8 class map at net scale (= the input's size)
    conf: np.ndarray  # (h, w) float32 softmax confidence of that class
    runner: tuple[np.ndarray, np.ndarray]  # each digit pixel's runner-up class and its probability (runner_up)


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
        # the digit reader beside the weights (weights/reader); a net passed in without weights is read alone (a
        # training run scoring its epochs must not be judged with another net's reader)
        own = not (given and weights is None)
        self.reader = load_reader(folder / READER_DIR) if cfg.reader and own else None
        # the reader that tells letters from digits (weights/letters), for dropping words (segapp.words)
        letters = load_letters(folder / LETTERS_DIR) if cfg.drop_words and own else None
        self.letters = None if letters is None else CropRunner(letters)
        signs = load_signs(folder / SIGNS_DIR) if cfg.drop_words and own else None  # (weights/signs: segapp.signs)
        self.signs = None if signs is None else CropRunner(signs)
        # the reader that sees each glyph with its line around it (weights/context), for the same (segapp.context)
        self.context = load_context(folder / CONTEXT_DIR) if cfg.drop_words and own else None
        # the ink judge that tells where a blurred stroke was drawn (weights/ink), for small digits' masks (segapp.ink)
        judge = load_ink_judge(folder / INK_DIR) if cfg.ink_judge and own else None
        self.clean_ink = None if judge is None else partial(clean_ink, judge)  # normalised ink -> its clean ink

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
        """Normalises polarity and background, estimates the digit height, resizes to the net's scale and erases a
        notebook's rules where no stroke crosses them (:func:`~segapp.ruled.erase_rules`)."""
        c = self.cfg
        n = to_net_scale(p, c.rescale, c.digit_height, c.analysis_pixels, c.max_net_pixels)
        if n.image.size > 1:
            n.image, n.unerased = erase_rules(n.image), n.image
            if c.deskew and not n.groups and on_paper(n.prepared.raw, n.inverted):  # a photo or a scan, not a
                n.tilt = text_tilt(n.image)  # drawing (drawn upright on its screen; canvases' digits scatter)
        return n

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
    def postprocess(self, n: NetInput, logits: torch.Tensor | None, small: np.ndarray | None = None,
                    conf: np.ndarray | None = None, runner: tuple[np.ndarray, np.ndarray] | None = None
                    ) -> Segmentation:
        """(C, h, w) logits -> class map at the input's size, digits read in lines, in input pixels
        (:func:`segapp.readout.read_out` with this segmenter's readers and options)."""
        return read_out(n, logits, small, conf, runner, reader=self.reader, letters=self.letters,
                        signs=self.signs, context=self.context, clean_ink=self.clean_ink,
                        reader_weight=self.cfg.reader_weight, drop_words=self.cfg.drop_words)

    def net(self, inputs: list[NetInput]) -> list[tuple[torch.Tensor, np.ndarray, np.ndarray, tuple]]:
        """The net on preprocessed inputs of one size: per input, its (C, h, w) logits, (h, w) uint8 class map,
        float32 confidence and runner-up classes at net scale, i.e. what :meth:`postprocess` takes. Softmax and
        argmax run once for the batch: per image they were two small multithreaded torch calls each, costing more
        than the rest of the postprocessing on a 64x84 canvas (same values: softmax over classes is per pixel)."""
        images = [n.image for n in inputs]
        h, w = images[0].shape
        if getattr(self.engine, "class_outputs", False) and h * w <= self.cfg.tile**2:
            logits, small, conf = self.engine.with_classes(np.stack(images))  # ONNX Runtime computes all three
        else:
            logits = self.logits(images)
            small, conf = class_maps(logits)
        voted = [(x, vote_blobs(x, s), c) for x, s, c in zip(logits, small, conf)]
        return [(x, s, c, runner_up(x, s)) for x, s, c in voted]

    def run(self, inputs: list[NetInput]) -> list[Segmentation | Pending]:
        """The net on preprocessed inputs of one size (the caller batches; see :meth:`segment_inputs`), each
        postprocessed now or left :class:`Pending`: an input the net saw at its own size needs only its net-scale
        class map and confidence to be postprocessed, which are smaller than the segmentation it becomes, so a
        caller may :meth:`finish` it elsewhere (`segapp predict` does, in a file thread beside the encoding of its
        PNGs). A rescaled input is postprocessed here, as its logits are upsampled and are not kept waiting."""
        return [Pending(n, small, conf, runner) if small.shape == n.prepared.raw.shape
                else self.postprocess(n, logits, small, conf, runner)
                for n, (logits, small, conf, runner) in zip(inputs, self.net(inputs))]

    def finish(self, result: Segmentation | Pending) -> Segmentation:
        """A :meth:`run` result as a segmentation: a pending one is postprocessed now."""
        return self.postprocess(result.net_input, None, result.small, result.conf, result.runner) if isinstance(
            result, Pending) else result

    def infer(self, inputs: list[NetInput]) -> list[Segmentation]:
        """Net + postprocess for preprocessed inputs of one size: :meth:`run`, every result finished."""
        return [self.finish(r) for r in self.run(inputs)]

    def segment_tilted(self, n: NetInput) -> Segmentation:
        """A number photographed at a tilt (``n.tilt`` degrees, :func:`~segapp.tilt.text_tilt`): the image is read
        turned upright, in a pass of its own, and its mask and boxes are turned back to the input's pixels; the
        reading keeps the upright pass's lines and order."""
        p = n.prepared
        turned, inside, back = upright(p.raw, n.tilt, detail(n.scale))
        sub = self.with_options(deskew=False).segment([Prepared(turned).with_polarity(n.inverted)])[0]
        seg = turned_back(sub, p, inside, back)
        # cut again to the ink at the input's own pixels: the turns resample the image and its mask once each
        ink_refine(seg.classes, p, n.scale, n.digit_height, min((d["confidence"] for d in seg.digits), default=0.0),
                   self.clean_ink)
        return seg

    def segment_mixed(self, n: NetInput) -> Segmentation:
        """Digits of clearly different sizes in one image: each size group in its own pass, at its own scale.

        Each pass sees a crop around its group with the other groups' ink painted over with paper, so
        a title's big digits never reach the net at the small print's scale, nor the reverse.
        """
        p = n.prepared
        H, W = p.raw.shape
        full = np.full((H, W), BACKGROUND, np.uint8)
        digits, left_out = [], []
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
            left_out += [[bx0 + x0, by0 + y0, bx1 + x0, by1 + y0] for bx0, by0, bx1, by1 in sub.words_left_out]
        digits = off_the_page_lines(full, digits, p.raw, p.inverted)  # a crop cut the lines short: the whole height
        small = min(n.groups, key=lambda g: g.height)
        return Segmentation.from_digits(full, p, digits, scale=min(1.0, TARGET_HEIGHT / small.height),
                                        digit_height=small.height, words_left_out=left_out)

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
        return bool(n.groups) or n.ambiguous or bool(n.tilt)

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
            # a borderline size estimate on a small image: also try it unscaled
            if n.ambiguous and not n.groups:
                plain = self.infer([NetInput(n.prepared, n.prepared.net_gray, 1.0, n.digit_height)])[0]
                if certainty(plain) > certainty(results[i]):
                    results[i] = plain
            # a number that seems tilted is also read turned upright, and the surer reading kept: a canvas's
            # scattered digits can line up by chance (held seed 119: two canvases on paper lost to the turn)
            if n.tilt:
                turned = self.segment_tilted(n)
                if must_turn(n.image) or certainty(turned) > certainty(results[i]):
                    results[i] = turned
        return results

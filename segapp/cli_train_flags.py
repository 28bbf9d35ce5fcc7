"""`segapp train`'s flags (data, model and optimisation, run) and the ``--quick`` budget.

Every flag maps onto a :class:`segapp.train_config.TrainConfig` field of the same name, except --quick and --quiet
(see :func:`segapp.cli.train_config`). The longest command line segapp has, so it has its own module beside the
other jobs' flags (:mod:`segapp.cli_parser`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

# `segapp train --quick`: a smoke run with the default recipe and widths at a tiny budget (explicit flags win)
QUICK = {"epochs": 2, "train_size": 640, "val_size": 200}
QUICK_OUT = "runs/train-quick"


def _blend(text: str) -> str | float:
    """``--blend``: "auto" or a number (range checked with the other training arguments)."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a number from 0 to 1, got {text!r}") from None


def _widths(text: str) -> list[int]:
    from .model import MAX_WIDTH

    try:
        parts = [int(w) for w in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("give one width, or 7 comma-separated widths (whole numbers)") from None
    if len(parts) == 1:
        parts *= 7
    if len(parts) != 7 or min(parts) < 1 or max(parts) > MAX_WIDTH:
        raise argparse.ArgumentTypeError(f"give one width, or 7 comma-separated widths (one per dilation), "
                                         f"each 1..{MAX_WIDTH}")
    return parts


def add_train(sub, fmt, run) -> None:
    """`segapp train`: every flag maps onto a :class:`segapp.train_config.TrainConfig` field of the same name, except
    --quick and --quiet (see :func:`segapp.cli.train_config`); ``run``: what runs the command."""
    p = sub.add_parser("train", help="train a model", formatter_class=fmt,
                       description="Train the decoder-free net. With no flags this is the first of the four "
                                   "runs that made the shipped weights (weights/MODEL_CARD.md): fresh M2NIST-recipe "
                                   "compositions and real-world-like images every epoch, CE + Dice, AdamW, "
                                   "one-cycle schedule, best epoch by val mean IoU over digits.")
    _add_train_data(p)
    _add_train_model(p)
    _add_train_run(p)
    p.set_defaults(run=run)


def _add_train_data(p: argparse.ArgumentParser) -> None:
    """`segapp train`'s "data" group: what the net is trained and validated on."""
    g = p.add_argument_group("data")
    g.add_argument("--kaggle", type=Path, default=None, metavar="DIR",
                   help="train on a Kaggle-layout pair (combined.npy + segmented.npy) instead; 10%% held out for val")
    g.add_argument("--train-size", type=int, default=10000, help="training images per epoch")
    g.add_argument("--val-size", type=int, default=1000, help="validation images (M2NIST recipe, val digit pool)")
    g.add_argument("--fixed-train", action="store_true",
                   help="train on one fixed set of --train-size images instead of fresh compositions each epoch")
    g.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                   help="albumentations photometric + mild geometric jitter")
    g.add_argument("--data", type=Path, default=None, metavar="DIR",
                   help="train on a folder dataset: DIR/images/* + DIR/masks/*.png (class-index PNGs, 255 void; "
                        "exactly what `segapp predict` writes), split by DIR/train + DIR/val or a fixed 10%% as val")
    g.add_argument("--mix-recipe", type=float, default=0.0, metavar="SHARE",
                   help="with --data: this share of each epoch comes from the M2NIST recipe (+ --wild images), "
                        "so the net keeps what it knew")
    g.add_argument("--wild", type=float, default=0.65, metavar="SHARE",
                   help="share of real-world-like images per epoch (any size, pens, slant, two rows, photographs; "
                        "see segapp/synth.py); 0 trains on the M2NIST recipe alone")
    g.add_argument("--ruled", type=float, default=0.3, metavar="SHARE",
                   help="share of the real-world-like photographs taken of ruled or squared notebook paper, its "
                        "lines under and through the digits (segapp/synth.py: _rules)")
    g.add_argument("--letters", type=float, default=0.0, metavar="SHARE",
                   help="share of the glyphs in the real-world-like images that are letters or signs no digit is "
                        "written as, labelled background, so words beside a number are not read as digits "
                        "(segapp/glyphs.py)")


def _add_train_model(p: argparse.ArgumentParser) -> None:
    """`segapp train`'s "model and optimisation" group: the net, its start (init, teacher) and the loss."""
    g = p.add_argument_group("model and optimisation")
    g.add_argument("--widths", type=_widths, default=[48] * 7, metavar="W[,W,...]",
                   help="channels per layer (dilations 1-2-4-8-4-2-1): one number for all, or 7 comma-separated "
                        "(default: 48 (x7))%(default).0s")
    g.add_argument("--epochs", type=int, default=None,
                   help="passes over --train-size images (default: 16; 4 with --init)%(default).0s")
    g.add_argument("--batch-size", type=int, default=32, help="images per optimiser step")
    g.add_argument("--lr", type=float, default=None,
                   help="peak learning rate of the one-cycle schedule (default: 3e-3; 1e-3 with --init)%(default).0s")
    g.add_argument("--init", type=Path, default=None, metavar="WEIGHTS",
                   help="fine-tune: start from these trained weights (a run folder or weights/) instead of random "
                        "initialisation; their widths are used unless --widths is given (narrower, layer by layer: "
                        "their strongest channels are kept, a start for --teacher; wider: new channels start silent, "
                        "segapp/distill.py grow); fingerprint in the model card")
    g.add_argument("--blend", type=_blend, default="auto", metavar="auto|B",
                   help="fine-tuning: the final weights are (1-B) x the --init weights + B x the fine-tuned ones, "
                        "so the net keeps what it knew (WiSE-FT; segapp/blend.py); auto (with --data): the largest B "
                        "in 0.1 steps within --forget-tolerance of the parent on the M2NIST val split; 1: no blend")
    g.add_argument("--blend-with", default=None, metavar="WEIGHTS",
                   help="--blend: average with these weights instead of --init's (same widths; e.g. weights/ when "
                        "--init is a run fine-tuned from it, WiSE-FT's original net); fingerprint in the model card")
    g.add_argument("--forget-tolerance", type=float, default=0.002, metavar="DROP",
                   help="--blend auto: the most the M2NIST val mIoU over digits may drop below the parent's")
    g.add_argument("--teacher", type=Path, default=None, metavar="WEIGHTS",
                   help="distil: the net also learns these trained weights' per-pixel class distribution (any "
                        "width; e.g. a leaner --widths from weights/; segapp/distill.py); fingerprint in the card")
    g.add_argument("--distill-weight", type=float, default=1.0, metavar="W",
                   help="with --teacher: loss = CE + Dice + W x T^2 x KL(teacher || net)")
    g.add_argument("--distill-temperature", type=float, default=2.0, metavar="T",
                   help="with --teacher: softens both distributions (T > 1 shows the teacher's second choices)")
    g.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay")
    g.add_argument("--dice-weight", type=float, default=1.0, help="loss = CE + this x Dice")
    g.add_argument("--amp", choices=["auto", "on", "off"], default="auto",
                   help="bfloat16 autocast; auto: on for CUDA and CPUs with native BF16 (AVX-512 BF16/AMX), "
                        "off where it would be emulated (about 5x slower than float32)")
    g.add_argument("--seed", type=int, default=0, help="seeds init, data compositions, augmentation, order")


def _add_train_run(p: argparse.ArgumentParser) -> None:
    """`segapp train`'s "run" group: where and how the run executes, not what it computes."""
    g = p.add_argument_group("run")
    g.add_argument("--out", type=Path, default=Path("runs/train"),
                   help="output folder; refused if it already holds a run (or any file a run writes), unless --resume")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last.pt, with the arguments it was started with (other "
                        "values are refused); a complete run is left as it is")
    g.add_argument("--quick", action="store_true",
                   help=f"smoke run, a couple of minutes on 2 CPU cores: {QUICK['epochs']} epochs x "
                        f"{QUICK['train_size']} images, {QUICK['val_size']} val images, --out {QUICK_OUT} unless "
                        "given; still a real run writing every file (flags given explicitly win)")
    g.add_argument("--quiet", action="store_true", help="no progress bars (also off when stderr is not a terminal)")
    g.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    g.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, ...")


def add_train_context(sub, fmt, run) -> None:
    """`segapp train-context`: the reader that tells a word's letters from a number's digits by their neighbours."""
    p = sub.add_parser("train-context", help="train the context reader that tells a word's letters from a "
                       "number's digits", formatter_class=fmt,
                       description="Train the small classifier that sees each glyph the net found with its line "
                                   "around it (segapp/context.py) on generated lines of words and numbers (MNIST "
                                   "training digits; words in OpenCV's faces and --fonts). Copy --out to "
                                   "WEIGHTS/context to use it.")
    g = p.add_argument_group("data")
    g.add_argument("--lines", type=int, default=40_000, help="generated images (about 8 glyphs in a text line)")
    g.add_argument("--canvases", type=float, default=0.0, metavar="SHARE",
                   help="share of those images that are the net's training canvases (digits in rows, touching, up "
                        "and down; letters among them) rather than text lines")
    g.add_argument("--line-style", type=float, default=0.0, metavar="SHARE",
                   help="share of text lines written by one pen with one spacing for letters and digits alike, so a "
                        "glyph's pen matching its neighbour word's says nothing")
    g.add_argument("--fonts", nargs="+", default=argparse.SUPPRESS, metavar="PATH",
                   help="font files or folders half the words are set in, beside OpenCV's faces (default: OpenCV's "
                        "faces only)")
    g.add_argument("--seed", type=int, default=0, help="seeds the lines, the init and the order")
    add_small_model_flags(p, 16, "channels of the first stage (then 2x, 4x, 4x)", 6, 256, "windows")
    add_small_run_flags(p, Path("runs/context"), "processes generating the lines")
    p.set_defaults(run=run)


def add_train_ink(sub, fmt, run) -> None:
    """`segapp train-ink`: the ink judge that tells where a blurred stroke was drawn."""
    p = sub.add_parser("train-ink", help="train the ink judge that tells where a blurred stroke was drawn (the "
                       "masks' edge)", formatter_class=fmt,
                       description="Train the small net that estimates a photo's clean ink at the input's own "
                                   "resolution (segapp/ink_judge.py) on photographed and resampled MNIST training "
                                   "digits whose clean ink is known. Digit masks under 18 px in photos follow it "
                                   "(segapp/ink.py). Copy --out to WEIGHTS/ink to use it.")
    g = p.add_argument_group("data")
    g.add_argument("--pictures", type=int, default=8_000, help="generated pictures (48 x 128 px, a row or two of "
                   "digits 11-36 px tall)")
    g.add_argument("--photo", type=float, default=0.6, metavar="SHARE",
                   help="share of the pictures photographed (the rest resampled, blurred, noisy or compressed)")
    g.add_argument("--sharp", type=float, default=0.33, metavar="SHARE",
                   help="share of the pictures whose clean ink is sharpened first (a crisp pen's or a font's edge)")
    g.add_argument("--light", type=float, default=0.5, metavar="SHARE",
                   help="share of the pictures with the digits on one side written light-handed (their clean ink "
                        "full: a faint stroke is still a stroke)")
    g.add_argument("--seed", type=int, default=0, help="seeds the pictures, the init and the order")
    add_small_model_flags(p, 16, "channels of each 3x3 convolution", 8, 32, "pictures")
    add_small_run_flags(p, Path("runs/ink"), "processes generating the pictures")
    p.set_defaults(run=run)


def add_small_model_flags(p: argparse.ArgumentParser, width: int, width_help: str, epochs: int, batch: int,
                          unit: str) -> argparse._ArgumentGroup:
    """The "model and optimisation" group the small models' training commands share (width, epochs, batch, one-cycle
    lr, AdamW weight decay); ``unit``: what a batch holds. Returns the group, for a command's own flags."""
    g = p.add_argument_group("model and optimisation")
    g.add_argument("--width", type=int, default=width, help=width_help)
    g.add_argument("--epochs", type=int, default=epochs, help=f"passes over the {unit}")
    g.add_argument("--batch-size", type=int, default=batch, help=f"{unit} per step")
    g.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (one-cycle)")
    g.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay")
    return g


def add_small_run_flags(p: argparse.ArgumentParser, out: Path, workers: str) -> None:
    """The "run" group of the small models' training commands (`segapp train-reader`, `segapp train-context`)."""
    g = p.add_argument_group("run")
    g.add_argument("--out", type=Path, default=out, help="output folder")
    g.add_argument("--workers", type=int, default=2, help=workers)
    g.add_argument("--device", default="auto", help="auto, cpu or cuda")
    g.add_argument("--amp", choices=["auto", "on", "off"], default="auto",
                   help="bfloat16 autocast (auto: only where native)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")

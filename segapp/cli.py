"""`segapp` command line: one subcommand per user job.

  segapp data       build the M2NIST-recipe splits from the bundled MNIST files
  segapp train      train the decoder-free net (defaults: the first of the shipped weights' four stages)
  segapp evaluate   score weights on the test split or a Kaggle M2NIST pair
  segapp predict    turn folders or files of images into masks, overlays and a summary
  segapp export     export the model to ONNX (or write a labelled image folder)
  segapp score      mean IoU of a folder of predicted masks against true masks
  segapp demo       start the web demo (same as `python app.py`)

This is the only module that knows argparse: every subcommand's flags are declared here, and each
job module exposes a function that takes a typed config or plain arguments. Job modules are imported
when their command runs, so ``segapp --help`` stays quick and an import error surfaces as one.
Errors segapp can explain (:class:`segapp.classes.SegappError`: missing files, bad weights, bad data,
bad arguments) and OS errors (a full disk) print one line and exit 2, here and nowhere else.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from pathlib import Path

import torch

from .classes import SegappError
from .int8 import INT8_CALIBRATION
from .runtime import check_device
from .safeio import describe

DESCRIPTION = "segapp: semantic segmentation of handwritten digits with a net that never downsamples."
BACKEND_HELP = ("what runs the net: torch (BatchNorm folded, bf16 only where native), onnx (ONNX Runtime, the net "
                "exported once per weights and cached), int8 (that graph quantized: fastest, within 0.003 mIoU of "
                "float but not pixel-identical), auto (torch on CUDA and where bf16 is native and on, else "
                "ONNX Runtime fp32; see docs/speed.md)")
# `segapp train --quick`: a smoke run with the default recipe and widths at a tiny budget (explicit flags win)
QUICK = {"epochs": 2, "train_size": 640, "val_size": 200}
QUICK_OUT = "runs/train-quick"


def _add_weights(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", type=Path, default=None, metavar="PATH",
                   help="weights folder (config.json + model.safetensors), .safetensors file or training "
                        "checkpoint .pt (default: the shipped weights/)%(default).0s")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")


def _add_backend(p, help: str = BACKEND_HELP) -> None:
    p.add_argument("--backend", choices=["auto", "torch", "onnx", "int8"], default="auto", help=help)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except an absent one: "(default: None)" tells a user nothing (the help says what
    leaving the flag out does), and off switches ("(default: False)") likewise."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


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


def build_parser() -> argparse.ArgumentParser:
    """The `segapp` parser: global flags, then one subparser per job, each declared by its own ``_add_*``
    function so that a job's flags can be read in one place."""
    parser = argparse.ArgumentParser(prog="segapp", description=DESCRIPTION,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: all cores)%(default).0s")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = HelpFormatter
    _add_data(sub, fmt)
    _add_train(sub, fmt)
    _add_evaluate(sub, fmt)
    _add_predict(sub, fmt)
    _add_export(sub, fmt)
    _add_score(sub, fmt)
    _add_demo(sub, fmt)
    return parser


def _add_data(sub, fmt) -> None:
    """`segapp data`: build the M2NIST-recipe splits."""
    p = sub.add_parser("data", help="build M2NIST-recipe splits into a folder", formatter_class=fmt,
                       description="Build the M2NIST-recipe splits deterministically from data/mnist/. "
                                   "Each split is saved as <split>.npz (images, masks) and, with --kaggle-layout, "
                                   "as <split>/combined.npy + segmented.npy like the Kaggle files.")
    p.add_argument("--out", type=Path, default=Path("data/m2nist"), help="output folder")
    p.add_argument("--train-size", type=int, default=5000,
                   help="images in train.npz (digits from MNIST-train, a pool disjoint from val's)")
    p.add_argument("--val-size", type=int, default=1000, help="images in val.npz (digits from MNIST-train)")
    p.add_argument("--test-size", type=int, default=1000, help="images in test.npz (digits from MNIST-test)")
    p.add_argument("--width", type=int, default=84, help="canvas width; wider canvases hold more digits")
    p.add_argument("--kaggle-layout", action="store_true", help="also write combined.npy + segmented.npy")
    p.set_defaults(run=run_data)


def _add_train(sub, fmt) -> None:
    """`segapp train`: every flag maps onto a :class:`segapp.train_config.TrainConfig` field of the same name, except
    --quick and --quiet (see :func:`train_config`)."""
    p = sub.add_parser("train", help="train a model", formatter_class=fmt,
                       description="Train the decoder-free net. With no flags this is the first of the four "
                                   "runs that made the shipped weights (weights/MODEL_CARD.md): fresh M2NIST-recipe "
                                   "compositions and real-world-like images every epoch, CE + Dice, AdamW, "
                                   "one-cycle schedule, best epoch by val mean IoU over digits.")
    _add_train_data(p)
    _add_train_model(p)
    _add_train_run(p)
    p.set_defaults(run=run_train)


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
                        "their strongest channels are kept, a start for --teacher); fingerprint in the model card")
    g.add_argument("--blend", type=_blend, default="auto", metavar="auto|B",
                   help="fine-tuning: the final weights are (1-B) x the --init weights + B x the fine-tuned ones, "
                        "so the net keeps what it knew (WiSE-FT; segapp/blend.py); auto (with --data): the largest B "
                        "in 0.1 steps within --forget-tolerance of the parent on the M2NIST val split; 1: no blend")
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


def _add_evaluate(sub, fmt) -> None:
    """`segapp evaluate`: score weights on a labelled split, Kaggle pair or folder dataset."""
    p = sub.add_parser("evaluate", help="score weights on labelled images", formatter_class=fmt,
                       description="Score a model: mean IoU (11 classes and digits only), per-class IoU and Dice, "
                                   "pixel accuracy and a confusion matrix.")
    _add_weights(p)
    g = p.add_argument_group("data")
    g.add_argument("--split", choices=["train", "val", "test"], default="test", help="M2NIST-recipe split")
    g.add_argument("--kaggle", type=Path, default=None, metavar="DIR",
                   help="evaluate on a Kaggle-layout pair (combined.npy + segmented.npy) instead")
    g.add_argument("--data", type=Path, default=None, metavar="DIR",
                   help="evaluate on a folder dataset instead: DIR/images/* + DIR/masks/*.png (class-index PNGs as "
                        "`segapp predict` writes them; 255 = void, not scored)")
    g.add_argument("--limit", type=int, default=None, help="use only the first N images")
    g = p.add_argument_group("inference (as `segapp predict`)")
    g.add_argument("--rescale", action=argparse.BooleanOptionalAction, default=True,
                   help="scale normalisation: resize so digits reach the net about 20 px tall")
    g.add_argument("--digit-height", type=float, default=None, metavar="PX",
                   help="digit height in the images (px) instead of estimating it from the ink")
    g.add_argument("--quiet", action="store_true", help="no progress bar (also off when stderr is not a terminal)")
    _add_backend(g)
    g.add_argument("--width", type=int, default=84, help="canvas width of the recipe split (e.g. 224 for long numbers)")
    g = p.add_argument_group("output")
    g.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of a table")
    g.add_argument("--out", type=Path, default=None, help="also write metrics.json and confusion.png here")
    p.set_defaults(run=run_evaluate)


def _add_demo(sub, fmt) -> None:
    """`segapp demo`: the Gradio app."""
    p = sub.add_parser("demo", help="start the web demo", formatter_class=fmt,
                       description="Start the Gradio demo (host/port from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT).")
    _add_weights(p)
    _add_backend(p)
    p.add_argument("--host", default=None, help="address to listen on (default: $GRADIO_SERVER_NAME, else 127.0.0.1)"
                                                "%(default).0s")
    p.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT, else 7860)%(default).0s")
    p.add_argument("--share", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(run=run_demo)


PREDICT_EPILOG = """exit status: 0 every file ok; 1 at least one file failed (see the summary's status column);
2 usage error (bad arguments, missing weights, OUT inside INPUT or not writable, results already
in OUT without --overwrite/--resume, no images found); 130 interrupted (outputs written so far are complete and
summarised; finish with --resume)."""


def _add_predict(sub, fmt) -> None:
    p = sub.add_parser(
        "predict", help="turn folders or files of images into masks, overlays and a summary", formatter_class=fmt,
        epilog=PREDICT_EPILOG,
        description="Segment every image under each INPUT (a folder, searched recursively, a file, or a quoted "
                    "pattern such as 'scans/*.png') at its native size with the demo's preprocessing, and write "
                    "OUT/masks/<rel>/<name>.png (class-index PNG with palette), OUT/overlays/<rel>/<name>.png and "
                    "OUT/summary.csv + summary.jsonl, and the resolved arguments in OUT/args.json; <rel> is relative "
                    "to the INPUT folder (with several INPUTs, to their common folder). "
                    "Nothing is ever written inside INPUT; each output appears atomically.")
    p.add_argument("input", type=Path, nargs="+", metavar="INPUT",
                   help="image folders, image files or quoted patterns ('scans/*.png', 'scans/**/*.jpg', expanded by "
                        "segapp); a file given twice is read once")
    p.add_argument("--out", type=Path, default=None, metavar="OUT",
                   help="output folder, not inside INPUT (default: runs/predict/<INPUT's name>, or <name>2, <name>3, "
                        "... when taken; with --resume or --overwrite the latest of those)%(default).0s")
    g = p.add_argument_group("inputs")
    g.add_argument("--recursive", action=argparse.BooleanOptionalAction, default=True, help="look in subfolders")
    g.add_argument("--hidden", action="store_true", help="also read hidden files and folders (names starting '.')")
    g = p.add_argument_group("outputs")
    g.add_argument("--overlays", action=argparse.BooleanOptionalAction, default=True, help="write overlay PNGs")
    g.add_argument("--alpha", type=float, default=0.6, help="opacity of the digit colours in overlays")
    g.add_argument("--compress-level", type=int, default=1, choices=range(10), metavar="0-9",
                   help="PNG zlib level: 1 is fast, 9 smallest (masks compress well either way)")
    m = g.add_mutually_exclusive_group()
    m.add_argument("--overwrite", action="store_true", help="redo every file, replacing existing outputs")
    m.add_argument("--resume", action="store_true",
                   help="keep files whose outputs exist from an earlier (possibly interrupted) run; do the rest")
    g = p.add_argument_group("model")
    _add_weights(g)
    g.add_argument("--rescale", action=argparse.BooleanOptionalAction, default=True,
                   help="scale normalisation: estimate the digit height from the ink and resize so digits reach the "
                        "net about 20 px tall (a huge photo is reduced first, so its cost follows the digits)")
    g.add_argument("--digit-height", type=float, default=None, metavar="PX",
                   help="digit height in the inputs (px) instead of estimating it, e.g. for a batch of forms")
    g.add_argument("--amp", choices=["auto", "on", "off"], default="auto",
                   help="bfloat16 inference; auto: on for CUDA and for CPUs with native BF16, else off")
    _add_backend(g)
    g = p.add_argument_group("speed")
    g.add_argument("--batch-size", type=int, default=64,
                   help="images of one size per model call (fewer for large images: 48 of 64x84)")
    g.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="threads decoding inputs and writing outputs while the model runs")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g = p.add_argument_group("cluster (Ray Data; needs `pip install 'segapp[ray]'`, see docs/predict.md)")
    g.add_argument("--cluster", choices=["none", "ray"], default="none",
                   help="ray: decode files in Ray tasks and run the model in a pool of Ray actors (one model each), "
                        "on a local Ray instance or on --ray-address; same outputs and summary as without")
    g.add_argument("--ray-address", default=None, metavar="ADDRESS",
                   help="join this running Ray cluster (`ray start --head` prints it, e.g. 10.0.0.5:6379; 'auto' for "
                        "the one on this machine); implies --cluster ray (default: start a local Ray instance)")
    g.add_argument("--ray-cpus", type=int, default=None, metavar="N",
                   help="CPUs of the local Ray instance (default: all cores); ignored with --ray-address")
    g.add_argument("--ray-actors", type=int, default=None, metavar="N",
                   help="segmenter actors, each loading the model once (default: one per CPU of the cluster)")
    p.set_defaults(run=run_predict)


def _add_export(sub, fmt) -> None:
    p = sub.add_parser("export", help="export the model to ONNX (or write a labelled image folder)",
                       formatter_class=fmt,
                       description="--format onnx: write the net as an ONNX model (dynamic batch, height and width; "
                                   "input 'image' float32 N,1,H,W = pixel/255, white ink on black; output 'logits' "
                                   "N,11,H,W) that runs in plain ONNX Runtime, and FILE.parity.json: torch and ONNX "
                                   "Runtime on the M2NIST-recipe test split. Exit status 1 when the file misses its "
                                   "bar (fp32: identical class maps on >= 99.99%% of pixels and mIoU equal to 4 "
                                   "decimals; int8: mIoU within 0.003 of fp32). "
                                   "--format folder: write M2NIST-recipe images as OUT/images/NNNNN.<png|jpg> and "
                                   "their true masks as OUT/truth/NNNNN.png, to try `segapp predict` and check it "
                                   "with `segapp score` (the same --split/--n/--width give the same images as "
                                   "`segapp evaluate`).")
    p.add_argument("--format", choices=["onnx", "folder"], default="onnx",
                   help="onnx: the model as an ONNX file; folder: labelled test images as files")
    p.add_argument("--out", type=Path, required=True, metavar="OUT", help="the .onnx file, or the output folder")
    g = p.add_argument_group("onnx")
    g.add_argument("--weights", type=Path, default=None, metavar="PATH",
                   help="weights folder, .safetensors file or training checkpoint (default: the shipped weights/)"
                        "%(default).0s")
    g.add_argument("--int8", action="store_true",
                   help="int8: ONNX Runtime static quantization (QDQ) calibrated on training-like images (the "
                        "M2NIST recipe + real-world-like images)")
    g.add_argument("--calib-images", type=int, default=INT8_CALIBRATION, metavar="N",
                   help="training-like images for int8 calibration (streamed 50 at a time: more images cost time, "
                        "not memory)")
    g.add_argument("--parity-images", type=int, default=1000, metavar="N", help="test images for the parity check")
    g = p.add_argument_group("folder")
    g.add_argument("--split", choices=["train", "val", "test"], default="test", help="M2NIST-recipe split")
    g.add_argument("--n", type=int, default=1000, help="number of images")
    g.add_argument("--width", type=int, default=84, help="canvas width (224 holds up to 8 digits)")
    g.add_argument("--seed", type=int, default=None, help="composition seed (default: the split's own)%(default).0s")
    g.add_argument("--style", choices=["m2nist", "paper"], default="m2nist",
                   help="m2nist: white on black, grayscale; paper: dark ink on off-white paper, RGB")
    g.add_argument("--image-format", choices=["png", "jpg"], default="png", help="image file format")
    g.add_argument("--quality", type=int, default=90, help="JPEG quality")
    g.add_argument("--overwrite", action="store_true", help="write into non-empty images/ and truth/ folders")
    p.set_defaults(run=run_export)


def _add_score(sub, fmt) -> None:
    p = sub.add_parser("score", help="mean IoU of a folder of predicted masks against true masks", formatter_class=fmt,
                       description="Match PRED/<rel>.png with TRUTH/<rel>.png (class-index PNGs such as `segapp "
                                   "predict` and `segapp export` write) and report mean IoU as `segapp evaluate` does. "
                                   "Exit status 1 when a true mask has no usable prediction.")
    p.add_argument("pred", type=Path, metavar="PRED_MASKS", help="folder of predicted masks, e.g. OUT/masks")
    p.add_argument("truth", type=Path, metavar="TRUTH_MASKS", help="folder of true masks, e.g. EXPORT/truth")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(run=run_score)


def config_from(cls, a: argparse.Namespace, **values):
    """The job config ``cls`` (a frozen dataclass that checks itself) built from the parsed flags: each field takes
    the flag of its name unless ``values`` gives it; a ``recorded`` field gets the parsed arguments (with
    ``values``), the record of how the job was asked for. The one place a Namespace becomes a config."""
    names = {f.name for f in fields(cls)}
    values = {**{n: getattr(a, n) for n in names if n != "recorded" and hasattr(a, n)}, **values}
    if "recorded" in names:
        values["recorded"] = {**vars(a), **{k: v for k, v in values.items() if k in vars(a)}}
    return cls(**values)


def run_data(a) -> None:
    """`segapp data`."""
    from .data import DataConfig, build

    build(config_from(DataConfig, a))


def given_options(argv: list[str]) -> set[str]:
    """The options typed in ``argv`` (their dests), as opposed to those left at their defaults: ``argv`` parsed again
    by a fresh parser whose every default is suppressed, so that only what was given lands in the namespace (an
    option given with its default value counts as given)."""
    parser = build_parser()

    def suppress(p: argparse.ArgumentParser) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    suppress(sub)
            else:
                action.default = argparse.SUPPRESS

    suppress(parser)
    return set(vars(parser.parse_args(argv))) - {"command", "run"}


def train_config(a, given: set[str] | None = None):
    """The `segapp train` flags as a :class:`segapp.train_config.TrainConfig` (paths as strings, widths as a tuple).
    ``--quick`` sets the :data:`QUICK` budget and --out, except where ``given`` (the options typed) says otherwise."""
    from .train_config import TrainConfig

    values = {}
    if getattr(a, "quick", False):
        given = given_options(a.argv) if given is None and getattr(a, "argv", None) is not None else given or set()
        values.update({k: v for k, v in {**QUICK, "out": QUICK_OUT}.items() if k not in given})
    for k in ("kaggle", "data", "init", "teacher", "out"):
        if values.get(k, getattr(a, k, None)) is not None:
            values[k] = str(values.get(k, getattr(a, k, None)))
    return config_from(TrainConfig, a, **values, widths=tuple(a.widths))


def run_train(a) -> None:
    """`segapp train`: on --resume, the run-defining flags typed (or set by --quick) are checked against the run's own;
    Ctrl-C ends with one line saying what was saved and the command that resumes."""
    from .train import run
    from .train_config import RUN_ARGS, flag
    from .train_resume import interrupted

    given = given_options(a.argv)
    cfg = train_config(a, given)
    flags = {k: flag(k) for k in given if k in RUN_ARGS}
    if a.quick:
        flags.update({k: "--quick" for k in QUICK if k not in given})
    try:
        run(cfg, argv=a.argv, given=flags, progress=not a.quiet and sys.stderr.isatty())
    except KeyboardInterrupt:
        raise KeyboardInterrupt(interrupted(cfg)) from None


def evaluate_config(a):
    """The `segapp evaluate` flags as a :class:`segapp.evaluate.EvaluateConfig`, matched by name (``--json`` is
    ``as_json``); the parsed arguments go along as the record --out's args.json keeps of how it was run."""
    from .evaluate import EvaluateConfig

    return config_from(EvaluateConfig, a, as_json=a.json)


def run_evaluate(a) -> None:
    """`segapp evaluate`: the flags become a checked config before anything is loaded."""
    from .evaluate import run

    run(evaluate_config(a))


def run_predict(a) -> int:
    """`segapp predict`: --ray-address implies --cluster ray (and args.json records it so)."""
    from .predict_files import PredictConfig

    cfg = config_from(PredictConfig, a, input=tuple(a.input), cluster="ray" if a.ray_address else a.cluster)
    if cfg.cluster == "ray":
        from .predict_ray import run  # imports Ray; without it, one line saying how to install it
    else:
        from .predict import run

    return run(cfg)


def run_export(a) -> int:
    from .export import ExportConfig, run_export

    return run_export(config_from(ExportConfig, a))


def run_score(a) -> int:
    from .export import ScoreConfig, run_score

    return run_score(config_from(ScoreConfig, a, as_json=a.json))


def run_demo(a) -> None:
    from .demo import main as demo_main

    os.environ["SEGAPP_BACKEND"] = a.backend  # read by segapp.demo.load_segmenter (also for app.py)
    demo_main(weights=a.weights, device=a.device, host=a.host, port=a.port, share=a.share or None)


def one_line(e: BaseException) -> str:
    return " ".join(str(e).splitlines()) or type(e).__name__


def main(argv: list[str] | None = None) -> int:
    """Runs one command. Errors segapp can explain (bad arguments, files or data; a full disk) print one line,
    ``segapp <command>: error: <what and what to do>``, and exit 2; Ctrl-C exits 130; a closed output pipe
    (``segapp evaluate --json | head -c 300``) ends the command quietly with 141, as SIGPIPE would."""
    argv = sys.argv[1:] if argv is None else argv
    a = build_parser().parse_args(argv)
    job = vars(a).pop("run")  # the subcommand's runner; the rest of ``a`` is the job's arguments (args.json)
    a.argv = argv
    try:
        if a.threads is not None and a.threads < 1:
            raise SegappError(f"--threads must be at least 1, got {a.threads}")
        if a.threads:
            torch.set_num_threads(a.threads)
        check_device(getattr(a, "device", None))
        code = job(a) or 0
        sys.stdout.flush()  # here, so a closed pipe is caught below and not at interpreter exit
        return code
    except BrokenPipeError:
        try:  # nobody reads stdout any more: point it at /dev/null so the final flush cannot fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 141
    except SegappError as e:  # DataError, ImageError, WeightsError, ... are SegappErrors
        print(f"segapp {a.command}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. a full disk: names the file, and says --resume finishes the job
        print(f"segapp {a.command}: error: {one_line(describe(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # a job may say what was saved and how to go on (segapp train does)
        print(f"segapp {a.command}: {one_line(e) if str(e) else 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

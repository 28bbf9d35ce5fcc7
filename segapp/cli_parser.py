"""The `segapp` command's parser: the global flags and every job's flags, with their help.

One ``_add_*`` function per subcommand declares that job's flags, so a job's command line can be read in one place
(`segapp train`'s, the longest, are in :mod:`segapp.cli_train_flags`). What runs a parsed command is
:mod:`segapp.cli`, which hands :func:`build_parser` its runners; kept apart so the many flag declarations and the
few lines that act on them can each be read in a sitting. Only the CLI modules know argparse.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from .cli_train_flags import add_small_model_flags, add_small_run_flags, add_train, add_train_context, add_train_ink
from .int8 import INT8_CALIBRATION

INK_JUDGE_HELP = ("masks of digits under 18 px tall in photos and scans follow the weights' ink judge (WEIGHTS/ink: "
                  "where a blurred stroke was drawn), where they have one; --no-ink-judge: the ink thresholds alone")
DESKEW_HELP = ("a photo or scan of a number tilted 8-40 degrees (three digits or more in a line) is read turned "
               "upright and its mask turned back; --no-deskew: read as it stands")
DESCRIPTION = "segapp: semantic segmentation of handwritten digits with a net that never downsamples."
BACKEND_HELP = ("what runs the net: torch (BatchNorm folded, bf16 only where native), onnx (ONNX Runtime, the net "
                "exported once per weights and cached), int8 (that graph quantized: fastest, within 0.003 mIoU of "
                "float but not pixel-identical), auto (torch on CUDA and where bf16 is native and on, else "
                "ONNX Runtime fp32; see docs/speed.md)")


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


def build_parser(runners: Mapping[str, Callable]) -> argparse.ArgumentParser:
    """The `segapp` parser: global flags, then one subparser per job, each declared by its own ``_add_*``
    function so that a job's flags can be read in one place. ``runners``: job -> the function that runs it, set as
    that subparser's ``run`` default (:func:`segapp.cli.build_parser` passes its ``run_*`` functions)."""
    parser = argparse.ArgumentParser(prog="segapp", description=DESCRIPTION,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: all cores)%(default).0s")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = HelpFormatter
    _add_data(sub, fmt, runners["data"])
    add_train(sub, fmt, runners["train"])
    _add_train_reader(sub, fmt, runners["train-reader"])
    add_train_context(sub, fmt, runners["train-context"])
    add_train_ink(sub, fmt, runners["train-ink"])
    _add_evaluate(sub, fmt, runners["evaluate"])
    _add_predict(sub, fmt, runners["predict"])
    _add_export(sub, fmt, runners["export"])
    _add_score(sub, fmt, runners["score"])
    _add_demo(sub, fmt, runners["demo"])
    return parser


def _add_data(sub, fmt, run) -> None:
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
    p.set_defaults(run=run)


def _add_train_reader(sub, fmt, run) -> None:
    """`segapp train-reader`: the digit reader beside the net (segapp/reader.py)."""
    p = sub.add_parser("train-reader", help="train the digit reader that gives each digit a second opinion",
                       formatter_class=fmt,
                       description="Train the small classifier that reads each digit the net found from its own "
                                   "strokes, MNIST-normalised (segapp/reader.py), on crops of the net's training "
                                   "generator (MNIST training digits only). Copy --out to WEIGHTS/reader to use it.")
    g = p.add_argument_group("data")
    g.add_argument("--canvases", type=int, default=100_000, help="generated training images (about 3 crops each)")
    g.add_argument("--seed", type=int, default=0, help="seeds the canvases, the init and the order")
    g = add_small_model_flags(p, 32, "channels of the first stage (then 2x, 4x)", 8, 256, "crops")
    g.add_argument("--label-smoothing", type=float, default=0.05, help="cross-entropy label smoothing")
    g.add_argument("--augment", type=float, default=1.0,
                   help="how far each crop is varied anew in each pass (turned, sheared, stretched, its ink's edge, "
                        "blur): 0 never, 1 the default ranges, 2 twice them")
    g.add_argument("--low-res", type=float, default=0.0,
                   help="share of the varied crops also averaged down to 8-14 cells a side and enlarged back (a "
                        "coarse scan's or a thumbnail's blur)")
    g.add_argument("--pointed-four", type=float, default=0.0,
                   help="share of the generator's styled 4s closed into a pointed triangle (print's 4) instead of a "
                        "square top")
    g.add_argument("--proportions", type=float, default=0.0,
                   help="how far each varied crop's parts are resized against each other along each axis: 0 never, "
                        "0.6 a part's share of the digit 1/1.6 to 1.6 times (a small top on a long stem)")
    g.add_argument("--letters", type=float, default=0.0,
                   help="share of the generator's glyphs that are letters and signs (segapp/glyphs.py): above 0 the "
                        "reader learns an eleventh class, not a digit; copy --out to WEIGHTS/letters (or several "
                        "into folders there, averaged) to leave words beside a number out (segapp/words.py)")
    g.add_argument("--letter-chars", default=argparse.SUPPRESS,
                   help="with --letters: the letters and signs drawn in OpenCV's Hershey faces (default: "
                        "segapp/glyphs.py's READER_GLYPHS)")
    g.add_argument("--letter-fonts", nargs="+", default=argparse.SUPPRESS, metavar="PATH",
                   help="with --letters: font files or folders (e.g. /usr/share/fonts/truetype/dejavu) half the "
                        "letters are drawn with, beside OpenCV's faces (default: OpenCV's faces only)")
    g.add_argument("--letter-runs", type=float, default=0.0, metavar="SHARE", help="with --letters: share of "
                   "the letters drawn as a run of two or three (\"eat\": a font's close letters, one crop to the net)")
    g.add_argument("--signs", type=float, default=0.0, metavar="SHARE", help="with --letters: share of the "
                   "glyphs that are signs (\"/\", \"(\", \"$\"), a twelfth class: copy --out to WEIGHTS/signs")
    g.add_argument("--sign-chars", default=argparse.SUPPRESS, help="with --signs: the signs drawn, none of "
                   "--letter-chars (default: segapp/glyphs.py's SIGN_GLYPHS)")
    add_small_run_flags(p, Path("runs/reader"), "processes generating the crops")
    p.set_defaults(run=run)


def _add_evaluate(sub, fmt, run) -> None:
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
    g.add_argument("--reader", action=argparse.BooleanOptionalAction, default=True,
                   help="read each digit a second time with the weights' digit reader (weights/reader) and mix the "
                        "two readings; --no-reader: the net alone")
    g.add_argument("--drop-words", action=argparse.BooleanOptionalAction, default=True,
                   help="leave out a word the letters reader (WEIGHTS/letters) is sure holds a letter (\"Room\" "
                        "in \"Room 42\"); --no-drop-words: read every stroke as a digit")
    g.add_argument("--ink-judge", action=argparse.BooleanOptionalAction, default=True, help=INK_JUDGE_HELP)
    g.add_argument("--deskew", action=argparse.BooleanOptionalAction, default=True, help=DESKEW_HELP)
    g.add_argument("--digit-height", type=float, default=None, metavar="PX",
                   help="digit height in the images (px) instead of estimating it from the ink")
    g.add_argument("--quiet", action="store_true", help="no progress bar (also off when stderr is not a terminal)")
    _add_backend(g)
    g.add_argument("--width", type=int, default=84, help="canvas width of the recipe split (e.g. 224 for long numbers)")
    g = p.add_argument_group("output")
    g.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of a table")
    g.add_argument("--out", type=Path, default=None, help="also write metrics.json and confusion.png here")
    p.set_defaults(run=run)


def _add_demo(sub, fmt, run) -> None:
    """`segapp demo`: the Gradio app."""
    p = sub.add_parser("demo", help="start the web demo", formatter_class=fmt,
                       description="Start the Gradio demo (host/port from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT).")
    _add_weights(p)
    _add_backend(p)
    p.add_argument("--host", default=None, help="address to listen on (default: $GRADIO_SERVER_NAME, else 127.0.0.1)"
                                                "%(default).0s")
    p.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT, else 7860)%(default).0s")
    p.add_argument("--share", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(run=run)


PREDICT_EPILOG = """exit status: 0 every file ok; 1 at least one file failed (see the summary's status column);
2 usage error (bad arguments, missing weights, OUT inside INPUT or not writable, results already
in OUT without --overwrite/--resume, no images found); 130 interrupted (outputs written so far are complete and
summarised; finish with --resume)."""


def _add_predict(sub, fmt, run) -> None:
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
    g.add_argument("--reader", action=argparse.BooleanOptionalAction, default=True,
                   help="read each digit a second time with the weights' digit reader (weights/reader) and mix the "
                        "two readings; --no-reader: the net alone")
    g.add_argument("--drop-words", action=argparse.BooleanOptionalAction, default=True,
                   help="leave out a word the letters reader (WEIGHTS/letters) is sure holds a letter (\"Room\" "
                        "in \"Room 42\"); --no-drop-words: read every stroke as a digit")
    g.add_argument("--ink-judge", action=argparse.BooleanOptionalAction, default=True, help=INK_JUDGE_HELP)
    g.add_argument("--deskew", action=argparse.BooleanOptionalAction, default=True, help=DESKEW_HELP)
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
    p.set_defaults(run=run)


def _add_export(sub, fmt, run) -> None:
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
    p.set_defaults(run=run)


def _add_score(sub, fmt, run) -> None:
    p = sub.add_parser("score", help="mean IoU of a folder of predicted masks against true masks", formatter_class=fmt,
                       description="Match PRED/<rel>.png with TRUTH/<rel>.png (class-index PNGs such as `segapp "
                                   "predict` and `segapp export` write) and report mean IoU as `segapp evaluate` does. "
                                   "Exit status 1 when a true mask has no usable prediction.")
    p.add_argument("pred", type=Path, metavar="PRED_MASKS", help="folder of predicted masks, e.g. OUT/masks")
    p.add_argument("truth", type=Path, metavar="TRUTH_MASKS", help="folder of true masks, e.g. EXPORT/truth")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(run=run)

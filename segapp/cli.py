"""`segapp` command line: one subcommand per user job.

  segapp data       build the M2NIST-recipe splits from the bundled MNIST files
  segapp train      train the decoder-free net (defaults: the first of the shipped weights' four stages)
  segapp train-reader  train the digit reader that gives each digit the net found a second opinion
  segapp train-context  train the reader that tells a word's letters from a number's digits by their neighbours
  segapp train-ink  train the ink judge that tells where a blurred stroke was drawn (the masks' edge)
  segapp evaluate   score weights on the test split or a Kaggle M2NIST pair
  segapp predict    turn folders or files of images into masks, overlays and a summary
  segapp export     export the model to ONNX (or write a labelled image folder)
  segapp score      mean IoU of a folder of predicted masks against true masks
  segapp demo       start the web demo (same as `python app.py`)

The CLI modules are the only ones that know argparse: every subcommand's flags are declared in
:mod:`segapp.cli_parser` (`segapp train`'s in :mod:`segapp.cli_train_flags`), and this module runs them: each
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

import torch

from . import cli_parser
from .classes import SegappError
from .cli_train_flags import QUICK, QUICK_OUT
from .runtime import check_device
from .safeio import describe


def build_parser() -> argparse.ArgumentParser:
    """The `segapp` parser (:func:`segapp.cli_parser.build_parser`), each job's subparser leading to its runner
    here."""
    return cli_parser.build_parser({"data": run_data, "train": run_train, "train-reader": run_train_reader,
                                    "train-context": run_train_context, "train-ink": run_train_ink,
                                    "evaluate": run_evaluate,
                                    "predict": run_predict, "export": run_export, "score": run_score,
                                    "demo": run_demo})


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


def run_train_reader(a) -> None:
    """`segapp train-reader`: the flags become a :class:`segapp.reader_train.ReaderTrainConfig`."""
    from .reader_train import ReaderTrainConfig, run

    run(config_from(ReaderTrainConfig, a, out=str(a.out)), argv=getattr(a, "argv", None))


def run_train_context(a) -> None:
    """`segapp train-context`: the flags become a :class:`segapp.context_train.ContextTrainConfig`."""
    from .context_train import ContextTrainConfig, run

    run(config_from(ContextTrainConfig, a, out=str(a.out)), argv=getattr(a, "argv", None))


def run_train_ink(a) -> None:
    """`segapp train-ink`: the flags become a :class:`segapp.ink_judge_train.InkTrainConfig`."""
    from .ink_judge_train import InkTrainConfig, run

    run(config_from(InkTrainConfig, a, out=str(a.out)), argv=getattr(a, "argv", None))


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

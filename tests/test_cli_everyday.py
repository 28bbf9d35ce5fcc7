"""Everyday use of the command line: progress bars on terminals only, `train --quick`, --resume
that refuses what it cannot honour, Ctrl-C that says what was saved, `predict` with several inputs and patterns and
numbered default folders, and help text for every flag."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import pty
import re
import shlex
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segapp import train, train_report
from segapp.cli import build_parser, given_options, main, train_config
from segapp.cli_train_flags import QUICK, QUICK_OUT
from segapp.evaluate import evaluate
from segapp.model import DilatedNet, NetConfig
from segapp.train_config import TrainConfig
from segapp.train_resume import BLEND_FILES, RUN_FILES

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--train-size", "32", "--val-size", "8", "--batch-size", "16", "--widths", "4", "--epochs", "2"]
BAR = re.compile(r"\d+%\|")  # tqdm's "NN%|" (an ASCII or Unicode bar follows)


def open_pty() -> tuple[int, int]:
    """A pseudo-terminal (master, slave) of 24 x 100 characters, like a terminal window (a new one is 0 x 0)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    return master, slave


def read_all(master: int) -> bytes:
    """Everything the terminal got, read from ``master`` until its slave side is closed (Linux then says EIO). One
    read alone returns what the line discipline holds at that moment, which can be a bar's first redraw only."""
    got = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal side was closed
            break
        if not chunk:
            break
        got.append(chunk)
    return b"".join(got)


def env1() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def small_test_split(monkeypatch):
    """The final test evaluation of `segapp train` on 40 images instead of 1000 (what is under test here is
    the run's bookkeeping, not its test figures)."""
    real = train_report.make_split  # the test split is drawn by train_report.finish
    monkeypatch.setattr(train_report, "make_split",
                        lambda split, n=None, **kw: real(split, n=40 if split == "test" else n, **kw))


# ---- 1. progress bars: on a terminal, never into a pipe, off with --quiet -----------------------------------------


def on_a_pty(argv: list[str]) -> tuple[int, str]:
    """Runs ``segapp argv`` here with stderr on a pseudo-terminal; returns (status, what the terminal got)."""
    master, slave = open_pty()
    term = open(slave, "w", buffering=1, encoding="utf-8", closefd=True)  # noqa: SIM115
    got, done = [], threading.Event()

    def read():
        got.append(read_all(master))
        done.set()

    threading.Thread(target=read, daemon=True).start()
    with pytest.MonkeyPatch.context() as m:
        m.setattr(sys, "stderr", term)
        try:
            code = main(argv)
        finally:
            term.close()
    done.wait(10)
    os.close(master)
    return code, b"".join(got).decode("utf-8", "replace")


def test_evaluate_shows_a_bar_on_a_terminal_and_none_into_a_pipe(tiny_weights, capsys):
    args = ["--threads", "1", "evaluate", "--weights", str(tiny_weights), "--limit", "40"]
    code, terminal = on_a_pty(args)
    assert code == 0 and BAR.search(terminal) and "evaluate" in terminal and "40/40" in terminal
    capsys.readouterr()
    assert main(args) == 0  # stderr captured by pytest: not a terminal
    assert not BAR.search(capsys.readouterr().err)
    code, terminal = on_a_pty([*args, "--quiet"])
    assert code == 0 and not BAR.search(terminal)


@pytest.mark.slow
def test_evaluate_bar_in_a_real_terminal_and_not_in_a_pipe(tiny_weights):
    """The bar test of the issue, as a user runs it: `segapp evaluate --limit 40` on a pty, then into a pipe."""
    cmd = [sys.executable, "-m", "segapp.cli", "--threads", "1", "evaluate", "--weights", str(tiny_weights),
           "--limit", "40"]
    master, slave = open_pty()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave, env=env1(), cwd=ROOT)
    os.close(slave)
    got = read_all(master)
    assert proc.wait(timeout=120) == 0
    os.close(master)
    assert BAR.search(got.decode("utf-8", "replace"))
    piped = subprocess.run(cmd, capture_output=True, text=True, env=env1(), cwd=ROOT, timeout=120)
    assert piped.returncode == 0 and not BAR.search(piped.stderr) and "mean IoU" in piped.stdout


def test_a_bar_draws_on_a_terminal_that_reports_no_size(monkeypatch):
    """`script -qc "segapp evaluate" /dev/null` run from a job: stderr is a pseudo-terminal of 0 x 0, where tqdm
    alone draws nothing (it sizes bars on stderr from the terminal); segapp's bars fall back to 80 x 24 there."""
    from segapp.runtime import progress_bar

    master, slave = pty.openpty()  # a new one reports 0 x 0
    try:
        with open(slave, "w", encoding="utf-8") as terminal:  # closing it closes the slave: read_all ends there
            assert tuple(os.get_terminal_size(slave)) == (0, 0)
            monkeypatch.setattr(sys, "stderr", terminal)
            for _ in progress_bar(range(3), desc="evaluate", mininterval=0):
                pass
            monkeypatch.undo()
        shown = read_all(master).decode("utf-8", "replace")
    finally:
        os.close(master)
    assert BAR.search(shown) and "3/3" in shown


def test_the_engine_evaluation_shows_a_bar_only_when_asked(test_split, capsys):
    torch.manual_seed(0)
    model = DilatedNet(NetConfig(widths=(4,) * 7))
    quiet = evaluate(model, *test_split, 16)
    assert capsys.readouterr().err == ""
    shown = evaluate(model, *test_split, 16, desc="val 1/2")
    err = capsys.readouterr().err
    assert "val 1/2" in err and "/40 [" in err
    assert shown[0]["miou"] == quiet[0]["miou"]


def test_train_bars_for_epochs_validation_and_test_on_a_terminal_only(tmp_path, small_test_split):
    one_epoch = ["--threads", "1", "train", *TINY, "--epochs", "1"]
    code, terminal = on_a_pty([*one_epoch, "--out", str(tmp_path / "tty")])
    assert code == 0
    for name in ("epoch 1/1", "val 1/1", "test"):
        assert re.search(re.escape(name) + r": +\d+%\|", terminal), name
    code, terminal = on_a_pty([*one_epoch, "--quiet", "--out", str(tmp_path / "q")])
    assert code == 0 and not BAR.search(terminal) and "epoch 1/1: train loss" in terminal
    # into a pipe: see complete_run below


# ---- 2. train --quick ---------------------------------------------------------------------------------------------


def quick_config(*flags: str):
    argv = ["train", "--quick", *flags]
    a = build_parser().parse_args(argv)
    return train_config(a, given_options(argv))


def test_quick_is_a_tiny_budget_with_default_widths_and_its_own_folder():
    cfg = quick_config()
    assert (cfg.epochs, cfg.train_size, cfg.val_size, cfg.out) == (QUICK["epochs"], QUICK["train_size"],
                                                                   QUICK["val_size"], QUICK_OUT)
    assert cfg.widths == TrainConfig().widths and cfg.wild == TrainConfig().wild
    explicit = quick_config("--epochs", "3", "--val-size", "1000", "--out", "runs/q")  # typed flags win
    assert (explicit.epochs, explicit.train_size, explicit.val_size, explicit.out) == (3, 640, 1000, "runs/q")


@pytest.mark.slow
def test_quick_is_a_real_run_of_a_couple_of_minutes(tmp_path):
    """The real --quick budget end to end (about 1.5 min on a loaded 2-core machine): every file a run writes."""
    t0 = time.monotonic()
    assert main(["train", "--quick", "--out", str(tmp_path)]) == 0
    assert time.monotonic() - t0 < 300
    for name in set(RUN_FILES) - set(BLEND_FILES):  # not a fine-tuning run: no blend
        assert (tmp_path / name).stat().st_size > 0, name
    assert [r["epoch"] for r in csv.DictReader((tmp_path / "log.csv").open())] == ["1", "2"]
    recorded = json.loads((tmp_path / "args.json").read_text())
    assert (recorded["train_size"], recorded["val_size"], recorded["epochs"]) == (640, 200, 2)


# ---- 3. --resume refuses what it cannot honour; a complete run is left alone --------------------------------------


def test_given_options_are_the_typed_ones_even_at_their_default_value():
    assert given_options(["train"]) == set()
    assert given_options(["--threads", "2", "train", "--epochs", "16", "--no-augment", "--resume"]) == {
        "threads", "epochs", "augment", "resume"}
    assert given_options(["predict", "x", "y", "--quiet"]) == {"input", "quiet"}


@pytest.fixture(scope="module")
def complete_run(tmp_path_factory):
    """A finished tiny run (trained with stderr not a terminal: no bars, only the per-epoch lines)."""
    out = tmp_path_factory.mktemp("complete") / "run"
    real = train_report.make_split  # the test split is drawn by train_report.finish
    with pytest.MonkeyPatch.context() as m, pytest.MonkeyPatch.context() as err_to:
        m.setattr(train_report, "make_split",
                  lambda split, n=None, **kw: real(split, n=40 if split == "test" else n, **kw))
        pipe = out.parent / "stderr.txt"
        with open(pipe, "w", encoding="utf-8") as f:
            err_to.setattr(sys, "stderr", f)
            assert main(["--threads", "1", "train", *TINY, "--out", str(out)]) == 0
    err = pipe.read_text()
    assert not BAR.search(err) and "epoch 2/2: train loss" in err
    return out


def test_resuming_a_complete_run_does_nothing_and_says_so(complete_run, capsys, monkeypatch):
    before = snapshot(complete_run)
    capsys.readouterr()
    for module in (train, train_report):  # validation after an epoch, and the final test score
        monkeypatch.setattr(module, "evaluate", lambda *a, **k: pytest.fail("a complete run was evaluated again"))
    assert main(["--threads", "1", "train", "--out", str(complete_run), "--resume"]) == 0
    line = one_line_error(capsys)
    assert line == (f"run complete (2 epochs); nothing to do; to train longer start a new run with --init "
                    f"{complete_run}")
    assert snapshot(complete_run) == before
    # the same values typed again are no change: still nothing to do
    assert main(["train", "--out", str(complete_run), "--resume", "--epochs", "2", "--widths", "4",
                 "--device", "cpu"]) == 0
    assert "run complete" in one_line_error(capsys)


@pytest.mark.parametrize(("flags", "named"), [
    (["--epochs", "5"], "--epochs 5"),
    (["--lr", "0.1"], "--lr 0.1"),
    (["--batch-size", "8"], "--batch-size 8"),
    (["--widths", "8"], "--widths 8 (x7)"),
    (["--no-augment"], "--no-augment"),
    (["--seed", "3"], "--seed 3"),
    (["--quick"], "--quick (--train-size 640)"),
])
def test_resume_refuses_a_flag_that_differs_from_the_run(complete_run, capsys, flags, named):
    before = snapshot(complete_run)
    capsys.readouterr()
    assert main(["train", "--out", str(complete_run), "--resume", *flags]) == 2
    line = one_line_error(capsys)
    assert line.startswith(f"segapp train: error: {named}") or named in line, line
    if flags[0] == "--epochs":
        assert "complete (2 epochs)" in line and f"--init {complete_run}" in line
    elif flags[0] != "--quick":
        assert f"leave out {flags[0]}" in line
    assert snapshot(complete_run) == before


def stop_in_epoch_two(monkeypatch):
    real, calls = train.evaluate, []

    def evaluate(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C in epoch 2's validation: epoch 1 is saved
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "evaluate", evaluate)


def test_resume_of_an_unfinished_run_explains_why_epochs_cannot_change(tmp_path, capsys, monkeypatch,
                                                                       small_test_split):
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        stop_in_epoch_two(m)
        assert main(["--threads", "1", "train", *TINY, "--out", str(out)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"segapp train: interrupted in epoch 2/2 (its progress is lost); saved: {out / 'last.pt'} "
                       f"(epoch 1/2, resumable) and the best weights {out / 'model.safetensors'} (epoch 1, val mIoU "
                       f"digits {json.loads((out / 'config.json').read_text())['val_miou_digits']:.4f}); resume "
                       f"with: segapp train --out {out} --resume")
    before = snapshot(out)
    assert main(["train", "--out", str(out), "--resume", "--epochs", "4"]) == 2
    line = one_line_error(capsys)
    assert "--epochs 4" in line and "one-cycle" in line and "2 epochs" in line and "--init" in line
    assert main(["train", "--out", str(out), "--resume", "--train-size", "64"]) == 2
    assert "--train-size 64 differs" in one_line_error(capsys)
    assert snapshot(out) == before  # refusals write nothing
    # how a run executes may change on resume; the run then finishes as started
    assert main(["--threads", "1", "train", "--out", str(out), "--resume", "--device", "cpu", "--workers", "0",
                 "--epochs", "2"]) == 0
    assert [r["epoch"] for r in csv.DictReader((out / "log.csv").open())] == ["1", "2"]
    assert (out / "MODEL_CARD.md").is_file()


# ---- 4. Ctrl-C: within a batch, says what was saved and how to resume ---------------------------------------------


@pytest.mark.slow
def test_ctrl_c_stops_within_a_batch_and_prints_the_resume_command(tmp_path):
    """A real SIGINT to a real training process in its second epoch (40 batches); then the printed command resumes."""
    out = tmp_path / "run"
    args = ["--train-size", "640", "--val-size", "8", "--batch-size", "16", "--widths", "8", "--epochs", "2"]
    cmd = [sys.executable, "-m", "segapp.cli", "--threads", "1", "train", *args, "--out", str(out)]
    # A shell that starts the test suite in the background hands it SIGINT ignored; give Ctrl-C back to the child.
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env1(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: lines.extend((time.monotonic(), line) for line in proc.stderr),
                              daemon=True)
    reader.start()
    deadline = time.monotonic() + 240
    while not any(line.startswith("epoch 1/2: train loss") for _, line in lines):
        assert proc.poll() is None and time.monotonic() < deadline, lines
        time.sleep(0.05)
    time.sleep(1.0)  # inside epoch 2, seconds before its end
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    reader.join(10)
    said_at, last = lines[-1][0], lines[-1][1].strip()
    assert said_at - sent < 3, said_at - sent  # a batch takes a fraction of that (exiting Python takes ~2 s more)
    assert last.startswith("segapp train: interrupted in epoch 2/2"), lines
    assert f"saved: {out / 'last.pt'} (epoch 1/2, resumable)" in last and "model.safetensors (epoch 1," in last
    command = last.split("resume with: ")[1]
    assert command == f"segapp train --out {out} --resume"
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1
    assert "Traceback" not in "".join(line for _, line in lines)
    resumed = subprocess.run([sys.executable, "-m", "segapp.cli", "--threads", "1", *shlex.split(command)[1:]],
                             capture_output=True, text=True, env=env1(), timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert [r["epoch"] for r in csv.DictReader((out / "log.csv").open())] == ["1", "2"]


def test_ctrl_c_before_the_first_epoch_says_nothing_was_saved(tmp_path, capsys, monkeypatch):
    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "train_one_epoch", stop)
    out = tmp_path / "run"
    assert main(["--threads", "1", "train", *TINY, "--out", str(out)]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"segapp train: interrupted before the first epoch finished; nothing saved besides {out / 'args.json'}; "
        f"start it again with: segapp train --out {out} --resume")


# ---- 5. predict: several inputs and patterns, numbered default folders ---------------------------------------------


def png(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def summary(out: Path) -> list[dict]:
    return list(csv.DictReader((out / "summary.csv").open(encoding="utf-8")))


@pytest.fixture
def scans(tmp_path, test_split, monkeypatch):
    """tmp_path/scans/{a,b,c}.png + notes.txt, tmp_path/other/{x.png, sub/y.png}; the working folder is tmp_path."""
    imgs = test_split[0]
    for i, name in enumerate("abc"):
        png(tmp_path / "scans" / f"{name}.png", imgs[i])
    (tmp_path / "scans" / "notes.txt").write_text("not an image")
    png(tmp_path / "other" / "x.png", imgs[3])
    png(tmp_path / "other" / "sub" / "y.png", imgs[4])
    monkeypatch.chdir(tmp_path)
    return tmp_path


def predict(*args: str, weights) -> int:
    return main(["--threads", "1", "predict", *args, "--weights", str(weights), "--workers", "1", "--quiet"])


def test_predict_takes_patterns_files_and_folders_once_each(scans, tiny_weights):
    assert predict("scans/*.png", "other/x.png", "scans/a.png", "other", weights=tiny_weights) == 0
    out = scans / "runs" / "predict" / scans.name  # the inputs' common folder names the default OUT
    rows = summary(out)
    assert [r["file"] for r in rows] == ["scans/a.png", "scans/b.png", "scans/c.png", "other/x.png",
                                         "other/sub/y.png"]  # in the order given, duplicates once
    assert all(r["status"] == "ok" for r in rows)
    assert sorted(p.relative_to(out / "masks").as_posix() for p in (out / "masks").rglob("*.png")) == [
        "other/sub/y.png", "other/x.png", "scans/a.png", "scans/b.png", "scans/c.png"]
    recorded = json.loads((out / "args.json").read_text())["input"]
    assert len(recorded) == 4 and os.path.isabs(recorded[0]) and recorded[0].endswith("scans/*.png")


def test_a_single_pattern_names_files_like_its_folder(scans, tiny_weights):
    assert predict("scans/*", weights=tiny_weights) == 0  # notes.txt matched but skipped: not an image
    out = scans / "runs" / "predict" / "scans"
    assert [r["file"] for r in summary(out)] == ["a.png", "b.png", "c.png"]
    assert predict("scans/**/*.png", "--out", "elsewhere", weights=tiny_weights) == 0
    assert [r["file"] for r in summary(scans / "elsewhere")] == ["a.png", "b.png", "c.png"]


def test_a_rerun_without_out_gets_a_fresh_numbered_folder(scans, tiny_weights, capsys):
    predict_dir = scans / "runs" / "predict"
    for _ in range(3):
        assert predict("scans", weights=tiny_weights) == 0
    assert sorted(p.name for p in predict_dir.iterdir()) == ["scans", "scans2", "scans3"]
    assert capsys.readouterr().err.strip().endswith(f"-> {Path('runs/predict/scans3')}")
    before = (predict_dir / "scans3" / "summary.csv").read_bytes()
    assert predict("scans", "--resume", weights=tiny_weights) == 0  # --resume without --out: the latest run
    err = capsys.readouterr().err
    assert "resuming the latest run, in runs/predict/scans3" in err and "3 already done" in err
    assert (predict_dir / "scans3" / "summary.csv").read_bytes() == before
    assert sorted(p.name for p in predict_dir.iterdir()) == ["scans", "scans2", "scans3"]


def test_runs_started_together_never_share_a_numbered_folder(scans):
    """The folder is taken by one mkdir when chosen: a second run choosing at the same moment gets the next one."""
    from segapp.predict_inputs import default_out, gather_inputs

    inputs = gather_inputs("scans")
    first, second = default_out(inputs, reserve=True), default_out(inputs, reserve=True)
    assert (first.name, second.name) == ("scans", "scans2") and first.is_dir() and second.is_dir()
    assert default_out(inputs).name == "scans3" and not (scans / "runs" / "predict" / "scans3").exists()


def test_a_refused_run_leaves_no_empty_numbered_folder(scans, tiny_weights, monkeypatch):
    """Refused after its folder was taken (any check of the folders): the empty folder is removed again."""
    import segapp.predict_files as pf

    def refuse(roots, out, items):
        assert out.is_dir() and not any(out.iterdir())  # taken, empty
        raise pf.UsageError(f"{out}: refused for the test")

    monkeypatch.setattr(pf, "check_folders", refuse)
    assert predict("scans", weights=tiny_weights) == 2
    assert not (scans / "runs" / "predict" / "scans").exists()


def test_a_name_ending_in_a_digit_is_numbered_with_a_dash(scans, tiny_weights):
    (scans / "scans").rename(scans / "set1")
    assert predict("set1", weights=tiny_weights) == 0
    assert predict("set1", weights=tiny_weights) == 0
    assert sorted(p.name for p in (scans / "runs" / "predict").iterdir()) == ["set1", "set1-2"]


def test_an_explicit_out_is_still_refused_when_it_holds_results(scans, tiny_weights, capsys):
    assert predict("scans", "--out", "res", weights=tiny_weights) == 0
    before = (scans / "res" / "summary.csv").read_bytes()
    capsys.readouterr()
    assert predict("scans", "--out", "res", weights=tiny_weights) == 2
    line = one_line_error(capsys)
    assert "already exist in res" in line and "--resume" in line and "--overwrite" in line
    assert (scans / "res" / "summary.csv").read_bytes() == before and not (scans / "res2").exists()


def test_several_inputs_keep_the_safety_rules(scans, tiny_weights, capsys):
    before = sorted(p.as_posix() for p in scans.rglob("*"))
    assert predict("other", "scans", "--out", "scans/out", weights=tiny_weights) == 2  # OUT inside one INPUT
    assert "inside INPUT scans" in one_line_error(capsys)
    assert predict("scans/*.jpg", weights=tiny_weights) == 2
    assert "scans/*.jpg: no such file or folder, and no file or folder matches it as a pattern" in one_line_error(
        capsys)
    assert predict("scans", "missing.png", weights=tiny_weights) == 2
    assert "missing.png: no such file or folder" in one_line_error(capsys)
    assert sorted(p.as_posix() for p in scans.rglob("*")) == before  # nothing written anywhere


def test_a_file_named_like_a_pattern_is_taken_literally(scans, tiny_weights, test_split):
    png(scans / "odd" / "[1].png", test_split[0][5])
    assert predict("odd/[1].png", "--out", "res", weights=tiny_weights) == 0
    assert [r["file"] for r in summary(scans / "res")] == ["[1].png"]


# ---- 6. help for every flag, defaults readable ---------------------------------------------------------------------


def help_text(*cmd: str, capsys) -> str:
    with pytest.raises(SystemExit):
        main([*cmd, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_help_has_text_for_every_flag_and_readable_defaults(capsys):
    parser = build_parser()
    subs = next(a for a in parser._actions if a.dest == "command").choices
    for cmd, sub in [("", parser), *subs.items()]:
        for action in sub._actions:
            name = action.option_strings or action.dest
            assert action.help or action.dest == "command", f"segapp {cmd} {name} has no help text"
    data = help_text("data", capsys=capsys)
    for flag in ("--train-size", "--val-size", "--test-size"):
        assert re.search(re.escape(flag) + r" \w+ images in", data), flag
    assert "--batch-size" not in help_text("evaluate", capsys=capsys)  # evaluate reads image by image
    text = help_text("train", capsys=capsys)
    assert "(default: 48 (x7))" in text and "[48" not in text
    assert "(default: 16; 4 with --init) --batch-size" in text  # no "(default: None)" after it
    for cmd in subs:  # an absent default or an off switch tells a user nothing
        shown = help_text(cmd, capsys=capsys)
        assert "(default: None)" not in shown and "(default: False)" not in shown, cmd
    assert "--quick" in text and "--quiet" in text

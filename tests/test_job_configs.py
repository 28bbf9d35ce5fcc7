"""Every job runs from a frozen, checked config built from the flags by one helper (``segapp.cli.config_from``):
each flag lands on a field of the same name, and a config refuses values that could only fail, in one line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from segapp.classes import SegappError
from segapp.cli import build_parser, config_from
from segapp.data import DataConfig
from segapp.evaluate import EvaluateConfig
from segapp.export import ExportConfig, ScoreConfig
from segapp.ink_judge_train import InkTrainConfig
from segapp.predict import inference_config
from segapp.predict_files import PredictConfig
from segapp.reader_train import ReaderTrainConfig

CONFIGS = {"data": DataConfig, "evaluate": EvaluateConfig, "predict": PredictConfig, "export": ExportConfig,
           "score": ScoreConfig, "train-reader": ReaderTrainConfig,
           "train-ink": InkTrainConfig}
RENAMED = {"json": "as_json"}  # flag dest -> field
NOT_FIELDS = {"command", "threads", "run"}  # global or argparse's own: kept in the record only


def parsed(argv: list[str]):
    a = build_parser().parse_args(argv)
    vars(a).pop("run")
    return a


@pytest.mark.parametrize("job, argv", [("data", []), ("evaluate", []), ("predict", ["in"]),
                                       ("export", ["--out", "m.onnx"]), ("score", ["p", "t"]), ("train-reader", []),
                                       ("train-ink", [])])
def test_every_flag_is_a_field_of_the_jobs_config(job, argv):
    names = {f.name for f in dataclasses.fields(CONFIGS[job])}
    dests = set(vars(parsed([job, *argv]))) - NOT_FIELDS
    assert {RENAMED.get(d, d) for d in dests} <= names


@pytest.mark.parametrize("flags, judge", [([], True), (["--no-ink-judge"], False)])
def test_no_ink_judge_reaches_the_inference_config_of_predict_and_evaluate(flags, judge):
    predict = config_from(PredictConfig, parsed(["predict", "a", *flags]), input=("a",))
    assert predict.ink_judge is judge and inference_config(predict).ink_judge is judge
    assert config_from(EvaluateConfig, parsed(["evaluate", *flags]), as_json=False).ink_judge is judge


@pytest.mark.parametrize("flags, deskew", [([], True), (["--no-deskew"], False)])
def test_no_deskew_reaches_the_inference_config_of_predict_and_evaluate(flags, deskew):
    predict = config_from(PredictConfig, parsed(["predict", "a", *flags]), input=("a",))
    assert predict.deskew is deskew and inference_config(predict).deskew is deskew
    assert config_from(EvaluateConfig, parsed(["evaluate", *flags]), as_json=False).deskew is deskew


@pytest.mark.parametrize("flags, reader", [([], True), (["--no-reader"], False)])
def test_no_reader_reaches_the_inference_config_of_predict_and_evaluate(flags, reader):
    predict = config_from(PredictConfig, parsed(["predict", "a", *flags]), input=("a",))
    assert predict.reader is reader and inference_config(predict).reader is reader
    assert config_from(EvaluateConfig, parsed(["evaluate", *flags]), as_json=False).reader is reader


def test_the_cli_builds_each_config_from_the_flags():
    cfg = config_from(PredictConfig, parsed(["predict", "a", "b", "--alpha", "0.3", "--ray-address", "auto"]),
                      input=("a", "b"), cluster="ray")
    assert (cfg.input, cfg.alpha, cfg.cluster, cfg.record()["cluster"]) == (("a", "b"), 0.3, "ray", "ray")
    export = config_from(ExportConfig, parsed(["export", "--format", "folder", "--out", "d", "--n", "7"]))
    assert (export.format, export.out, export.n) == ("folder", Path("d"), 7)
    score = config_from(ScoreConfig, parsed(["score", "p", "t", "--json"]), as_json=True)
    assert (score.pred, score.truth, score.as_json) == (Path("p"), Path("t"), True)
    data = config_from(DataConfig, parsed(["data", "--width", "224"]))
    assert data.width == 224 and data.record()["command"] == "data"


@pytest.mark.parametrize("make, flag", [
    (lambda: PredictConfig(input=("x",), alpha=1.5), "--alpha"),
    (lambda: PredictConfig(input=("x",), workers=0), "--workers"),
    (lambda: PredictConfig(input=("x",), ray_actors=0), "--ray-actors"),
    (lambda: ExportConfig(out="model.txt"), ".onnx"),
    (lambda: ExportConfig(out="m.onnx", calib_images=0), "--calib-images"),
    (lambda: ExportConfig(out="d", format="folder", n=0), "--n"),
    (lambda: DataConfig(train_size=0), "--train-size"),
    (lambda: DataConfig(width=27), "--width"),
])
def test_a_config_refuses_what_could_only_fail_in_one_line(make, flag):
    with pytest.raises(SegappError, match=flag) as e:
        make()
    assert "\n" not in str(e.value)


def test_configs_are_frozen():
    for cfg in (PredictConfig(input=("x",)), ExportConfig(out="m.onnx"), ScoreConfig("p", "t"), DataConfig()):
        with pytest.raises(dataclasses.FrozenInstanceError):
            cfg.out = "elsewhere"  # ScoreConfig has no out: frozen dataclasses refuse any attribute

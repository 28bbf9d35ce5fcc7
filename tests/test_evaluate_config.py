"""`segapp evaluate` runs from a frozen, checked :class:`EvaluateConfig`, not from argparse's Namespace: the CLI
builds the config from the flags, and the config refuses values that could only crash or score nothing."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from segapp.classes import SegappError
from segapp.cli import build_parser, evaluate_config, main
from segapp.evaluate import EvaluateArgumentError, EvaluateConfig, check_out, run


@pytest.mark.parametrize("values, flag", [({"limit": 0}, "--limit"),
                                          ({"width": 27}, "--width"), ({"width": 4097}, "--width")])
def test_the_config_refuses_values_that_cannot_work(values, flag):
    with pytest.raises(EvaluateArgumentError, match=flag) as e:
        EvaluateConfig(**values)
    assert isinstance(e.value, SegappError)  # so the CLI prints one line and exits 2


def test_the_config_is_frozen_and_its_record_read_only():
    cfg = EvaluateConfig(recorded={"command": "evaluate"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.limit = 3
    with pytest.raises(TypeError):
        cfg.recorded["command"] = "train"
    assert cfg.record() == {"command": "evaluate"}
    assert EvaluateConfig(limit=5).record()["limit"] == 5 and "recorded" not in EvaluateConfig().record()


def test_the_cli_maps_every_flag_onto_the_config():
    a = build_parser().parse_args(["evaluate", "--weights", "w", "--split", "val", "--limit", "7", "--no-rescale",
                                   "--digit-height", "30", "--backend", "torch", "--width", "224", "--json",
                                   "--out", "o", "--quiet", "--device", "cpu", "--data", "d", "--kaggle", "k"])
    vars(a).pop("run")
    cfg = evaluate_config(a)
    assert (cfg.weights, cfg.split, cfg.limit, cfg.rescale, cfg.digit_height, cfg.backend, cfg.width) == (
        Path("w"), "val", 7, False, 30.0, "torch", 224)
    assert (cfg.as_json, cfg.out, cfg.quiet, cfg.device, cfg.data, cfg.kaggle) == (
        True, Path("o"), True, "cpu", Path("d"), Path("k"))
    assert cfg.record() == vars(a)  # args.json keeps the command line's own record, as before the config


def test_a_bad_value_is_one_line_and_exit_2(capsys):
    assert main(["evaluate", "--limit", "0"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "segapp evaluate: error: --limit must be at least 1, got 0"


def test_run_takes_a_config_and_writes_what_the_cli_did(tmp_path, tiny_weights, capsys):
    out = tmp_path / "eval"
    metrics = run(EvaluateConfig(weights=tiny_weights, limit=2, as_json=True, out=out, device="cpu"))
    printed = json.loads(capsys.readouterr().out)
    assert printed["n_images"] == 2 and printed.keys() == metrics.keys()
    assert json.loads((out / "metrics.json").read_text())["data"] == "m2nist-recipe:test"
    assert json.loads((out / "args.json").read_text())["as_json"] is True  # no record given: the config's fields
    with pytest.raises(SegappError, match="already holds"):
        check_out(out)

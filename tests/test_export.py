"""ONNX export, int8, BatchNorm folding and the inference backends (torch / onnx / auto)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from segapp.cli import main
from segapp.engines import TorchEngine, fold_batchnorm, to_input
from segapp.inference import InferenceConfig, Segmenter
from segapp.m2nist import make_split
from segapp.model import DEFAULT_WEIGHTS, DilatedNet, NetConfig, load_pretrained, save_pretrained

ort = pytest.importorskip("onnxruntime")


def random_net(seed: int = 0) -> DilatedNet:
    """A narrow net with non-trivial BatchNorm statistics (fresh ones are the identity, which folds trivially)."""
    torch.manual_seed(seed)
    net = DilatedNet(NetConfig(widths=(8,) * 7))
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Exported graphs of loaded weights go to a temporary cache, not the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SEGAPP_CACHE", str(tmp_path_factory.mktemp("onnx-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """`segapp export --format onnx` of a random narrow net: (model, weights folder, .onnx path, exit status)."""
    root = tmp_path_factory.mktemp("export")
    net = random_net()
    save_pretrained(net, root / "weights")
    out = root / "net.onnx"
    rc = main(["export", "--format", "onnx", "--out", str(out), "--weights", str(root / "weights"),
               "--parity-images", "20"])
    return net, root / "weights", out, rc


def test_export_writes_model_and_parity(exported):
    _, _, out, rc = exported
    assert rc == 0
    record = json.loads(out.with_name(out.name + ".parity.json").read_text())
    assert record["parity_passed"] and record["precision"] == "fp32" and record["n_images"] == 20
    assert record["results"]["onnx"]["identical_pixels"] >= 0.9999
    assert record["miou_digits_equal_4dp"]


@pytest.mark.parametrize("shape", [(1, 1, 17, 23), (3, 1, 64, 84), (2, 1, 5, 131), (5, 1, 40, 9)])
def test_onnx_matches_torch_on_any_batch_and_size(exported, shape):
    net, _, out, _ = exported
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.rand(shape, generator=torch.Generator().manual_seed(sum(shape)))
    got = session.run(["logits"], {"image": x.numpy()})[0]
    with torch.inference_mode():
        want = net(x).numpy()
    assert got.shape == want.shape == (shape[0], 11, *shape[2:])
    assert np.abs(got - want).max() < 1e-4


def test_onnx_file_runs_without_segapp(exported):
    """The file needs onnxruntime and numpy only: a fresh interpreter that never imports segapp or torch runs it."""
    out = exported[2]
    code = ("import sys, numpy as np, onnxruntime as ort\n"
            f"s = ort.InferenceSession({str(out)!r}, providers=['CPUExecutionProvider'])\n"
            "y = s.run(None, {'image': np.zeros((2, 1, 30, 41), np.float32)})[0]\n"
            "assert y.shape == (2, 11, 30, 41), y.shape\n"
            "assert not any(m.split('.')[0] in ('segapp', 'torch') for m in sys.modules)\n"
            "print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_export_refuses_a_non_onnx_name(tmp_path, capsys):
    assert main(["export", "--format", "onnx", "--out", str(tmp_path)]) == 2
    assert "--format folder" in capsys.readouterr().err


@pytest.mark.parametrize("n", ["0", "-3"])
def test_folder_export_refuses_no_images(tmp_path, capsys, n):
    assert main(["export", "--format", "folder", "--n", n, "--out", str(tmp_path / "f")]) == 2
    assert f"--n {n}" in capsys.readouterr().err and not (tmp_path / "f").exists()


def test_int8_export_runs_and_is_recorded(exported, tmp_path, capsys):
    _, weights, _, _ = exported
    out = tmp_path / "net.int8.onnx"
    rc = main(["export", "--format", "onnx", "--int8", "--out", str(out), "--weights", str(weights),
               "--calib-images", "20", "--parity-images", "10"])
    printed = capsys.readouterr().out.splitlines()  # segapp's own lines only: no calibration progress of ONNX Runtime
    assert printed and all(line.startswith("segapp export:") for line in printed)
    record = json.loads(out.with_name(out.name + ".parity.json").read_text())
    assert record["precision"] == "int8" and record["calibration"]["data"].startswith("m2nist-recipe:train + 0.65 wild")
    assert rc == (0 if record["int8_within_tolerance"] else 1)
    assert {"onnx", "onnx_fp32", "torch_fp32"} <= set(record["results"])
    import onnx

    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    y = ort.InferenceSession(str(out)).run(None, {"image": np.zeros((1, 1, 21, 33), np.float32)})[0]
    assert y.shape == (1, 11, 21, 33)


def test_batchnorm_folding_keeps_outputs_and_the_training_model():
    net = random_net(1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 7  # the original keeps its BNs
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    x = torch.rand(3, 1, 29, 47)
    with torch.inference_mode():
        assert (folded(x) - net(x)).abs().max() < 1e-4
        engine = TorchEngine(net, torch.device("cpu"), amp=False)
        assert (engine(x) - net(x)).abs().max() < 1e-4


def test_backend_is_validated():
    with pytest.raises(ValueError, match="backend"):
        InferenceConfig(backend="tensorrt")


@pytest.mark.skipif(not (DEFAULT_WEIGHTS / "model.safetensors").is_file(), reason="no shipped weights")
def test_onnx_backend_gives_the_class_maps_of_torch(cache):
    images, _ = make_split("test", n=8, seed=5)
    model = load_pretrained()
    seg_torch = Segmenter(cfg=InferenceConfig(device="cpu", amp="off", backend="torch"), model=model)
    seg_onnx = Segmenter(cfg=InferenceConfig(device="cpu", amp="off", backend="onnx"), model=model)
    assert (seg_torch.backend, seg_onnx.backend) == ("torch", "onnx")
    x = to_input(images)
    assert (seg_onnx._forward(x) - seg_torch._forward(x)).abs().max() < 1e-3
    for img in images:
        a, b = seg_torch(img), seg_onnx(img)
        assert (a.classes == b.classes).mean() >= 0.9999 and a.text == b.text
    auto = Segmenter(cfg=InferenceConfig(device="cpu", amp="off"), model=model)
    assert auto.backend == "int8"  # the shipped weights come with their int8 graph (weights/model.int8.onnx)


@pytest.mark.parametrize("shape", [(3, 64, 84), (1, 29, 131)])
def test_onnx_class_outputs_are_the_argmax_and_softmax_of_the_logits(shape):
    """The class map and confidence ONNX Runtime computes in the graph are those torch computes from its logits."""
    from segapp.engines import OnnxEngine
    from segapp.onnx_export import onnx_bytes
    from segapp.postprocess import class_maps

    net = random_net(3)
    engine = OnnxEngine(onnx_bytes(net), class_outputs=True)
    images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    logits, classes, conf = engine.with_classes(images)
    assert torch.equal(logits, engine(to_input(images)))  # the same input bits and the same logits
    with torch.inference_mode():
        want = net(to_input(images))
    assert np.array_equal(classes, want.argmax(1).numpy()) and classes.dtype == np.uint8
    np.testing.assert_allclose(conf, want.softmax(1).amax(1).numpy(), atol=1e-5)
    digit = classes != 10
    assert np.array_equal(class_maps(logits)[0], classes)
    np.testing.assert_allclose(class_maps(logits)[1][digit], conf[digit], atol=1e-6)  # torch's path: digits only


def test_auto_runs_the_int8_graph_a_weights_folder_comes_with(tmp_path, cache, monkeypatch):
    """`segapp export --int8 --out FOLDER/model.int8.onnx` makes int8 the CPU default for those weights (no
    calibration at start-up); a graph made from other weights is never used."""
    import segapp.int8 as engines

    folder = tmp_path / "w"
    save_pretrained(random_net(4), folder)
    seg = lambda backend="auto": Segmenter(folder, InferenceConfig(device="cpu", amp="off", backend=backend))  # noqa: E731
    assert seg().backend == "onnx"  # no int8 graph: the float rule
    assert main(["export", "--format", "onnx", "--int8", "--out", str(folder / "model.int8.onnx"),
                 "--weights", str(folder), "--calib-images", "20", "--parity-images", "10"]) in (0, 1)
    monkeypatch.setattr(engines, "quantize_int8", lambda *a, **k: pytest.fail("calibrated despite the folder's graph"))
    assert seg().backend == "int8" and seg("int8").backend == "int8"
    assert seg("onnx").backend == "onnx" and seg("torch").backend == "torch"  # asked for: as asked
    save_pretrained(random_net(5), folder / "other")
    (folder / "other" / "model.int8.onnx").write_bytes((folder / "model.int8.onnx").read_bytes())
    with pytest.warns(UserWarning, match="not the int8 graph of these weights.*segapp export --format onnx --int8"):
        assert Segmenter(folder / "other", InferenceConfig(device="cpu", amp="off")).backend == "onnx"


def test_auto_follows_the_measured_rule(cache):
    """torch where bf16 is native and on (or on CUDA), ONNX Runtime fp32 on other CPUs (docs/speed.md)."""
    from segapp.backends import make_engine

    net, cpu = random_net(2), torch.device("cpu")
    assert make_engine(net, "auto", cpu, amp=True).name == "torch"
    assert make_engine(net, "auto", cpu, amp=False).name == "onnx"
    assert make_engine(net, "torch", cpu, amp=False).name == "torch"


@pytest.mark.slow
@pytest.mark.skipif(not (DEFAULT_WEIGHTS / "model.safetensors").is_file(), reason="no shipped weights")
def test_int8_backend_reads_what_float_reads_and_is_cached(tmp_path, monkeypatch):
    """--backend int8 for weights without an int8 graph of their own (here: the shipped net, loaded from a folder
    that lacks weights/model.int8.onnx): quantized once (then loaded from the cache), class maps close to float's,
    and close to those of the graph the shipped weights come with."""
    import segapp.int8 as engines

    cache, bare = tmp_path / "cache", tmp_path / "bare"
    monkeypatch.setenv("SEGAPP_CACHE", str(cache))
    images, _ = make_split("test", n=16, seed=7)
    model = load_pretrained()
    int8 = lambda folder: Segmenter(folder, InferenceConfig(device="cpu", amp="off", backend="int8"), model=model)  # noqa: E731
    seg_float = Segmenter(cfg=InferenceConfig(device="cpu", amp="off", backend="torch"), model=model)
    seg_int8 = int8(bare)
    assert seg_int8.backend == "int8" and len(list(cache.glob("*.int8v7.onnx"))) == 1
    shipped = int8(DEFAULT_WEIGHTS)
    for other in (seg_int8, shipped):
        agree = [(seg_float(img).classes == other(img).classes).mean() for img in images]
        assert np.mean(agree) >= engines.INT8_AGREEMENT
    monkeypatch.setattr(engines, "quantize_int8", lambda *a, **k: pytest.fail("quantized again despite the cache"))
    assert int8(bare).backend == "int8"


@pytest.mark.skipif(not (DEFAULT_WEIGHTS / "model.int8.onnx").is_file(), reason="no shipped int8 graph")
def test_the_shipped_int8_graph_is_of_the_shipped_weights_and_within_its_bar():
    """weights/model.int8.onnx is what `segapp export --int8` made from weights/ (its record says so), and it is
    the one `auto` and `--backend int8` run."""
    from segapp.int8 import shipped_int8
    from segapp.safeio import file_sha256

    record = json.loads((DEFAULT_WEIGHTS / "model.int8.onnx.parity.json").read_text())
    assert record["int8_within_tolerance"] and record["sha256"] == file_sha256(DEFAULT_WEIGHTS / "model.int8.onnx")
    assert shipped_int8(load_pretrained(), DEFAULT_WEIGHTS) == (DEFAULT_WEIGHTS / "model.int8.onnx").read_bytes()


def test_int8_calibration_images_are_training_like_and_repeatable():
    """int8 ranges are calibrated on what training draws (recipe canvases and real-world-like images), the same
    images every time, so a cached int8 graph and a fresh one agree."""
    from segapp.int8 import calibration_images

    a, b = calibration_images(40), calibration_images(40)
    assert a.shape == (40, 64, 84) and a.dtype == np.uint8 and np.array_equal(a, b)
    recipe, _ = make_split("train", n=40)
    paper = (a[:, :4, :] > 0).mean((1, 2))  # M2NIST canvases are exactly 0 away from the digits
    assert 0 < (paper > 0.2).sum() < 40 and (recipe[:, :4, :] > 0).mean() < 0.05


@pytest.mark.parametrize("n", [7, 12])
def test_int8_calibration_streams_one_batch_at_a_time(n, monkeypatch):
    """Percentile calibration holds every activation it has read until it builds its histograms: the images go
    in one batch per collection (memory of one batch, whatever --calib-images says), a short last batch too."""
    from onnxruntime.quantization.calibrate import HistogramCalibrater

    from segapp.engines import OnnxEngine
    from segapp.int8 import calibration_images, quantize_int8
    from segapp.onnx_export import onnx_bytes

    held, collect = [], HistogramCalibrater.collect_data

    def counting(self, reader):
        sizes = []
        real = reader.get_next

        def get_next():
            x = real()
            sizes.append(0 if x is None else len(next(iter(x.values()))))
            return x

        reader.get_next = get_next
        try:
            return collect(self, reader)
        finally:
            reader.get_next = real
            held.append(sum(sizes))

    monkeypatch.setattr(HistogramCalibrater, "collect_data", counting)
    torch.manual_seed(0)
    net = DilatedNet(NetConfig(widths=(4,) * 7)).eval()
    engine = OnnxEngine(quantize_int8(onnx_bytes(net), calibration_images(n), batch=5), precision="int8")
    assert held == [5] * (n // 5) + ([n % 5] if n % 5 else []) and sum(held) == n
    assert engine(to_input(make_split("val", n=2)[0])).shape == (2, 11, 64, 84)


def float_convs(path) -> int:
    """How many convolutions of an ONNX graph take float weights (not the output of a DequantizeLinear)."""
    import onnx

    nodes = onnx.load(str(path)).graph.node
    dequantized = {o for n in nodes if n.op_type == "DequantizeLinear" for o in n.output}
    return sum(n.op_type == "Conv" and n.input[1] not in dequantized for n in nodes)


def test_int8_export_tries_other_percentiles_until_one_is_within_tolerance(exported, tmp_path, monkeypatch):
    """A fine-tuned net can lose 0.02 mIoU at the range percentile that suited its parent, or at every percentile
    until its second conv stays float too: export tries each in turn."""
    import segapp.export as export
    from segapp.int8 import INT8_TRIES

    _, weights, _, _ = exported
    out = tmp_path / "net.int8.onnx"
    args = ["export", "--format", "onnx", "--int8", "--out", str(out), "--weights", str(weights),
            "--calib-images", "20", "--parity-images", "10"]

    def calibration() -> dict:
        return json.loads(out.with_name(out.name + ".parity.json").read_text())["calibration"]

    monkeypatch.setattr(export, "INT8_TOLERANCE", -1.0)  # nothing is good enough: every percentile is tried
    assert main(args) == 1
    tried = calibration()["tried"]
    assert [(t["percentile"], t["float_convs"]) for t in tried] == list(INT8_TRIES)
    best = min(tried, key=lambda t: t["miou_digits_drop"])  # the graph written is the one that lost least
    assert calibration()["method"] == f"percentile {best['percentile']:g}"
    assert float_convs(out) == best["float_convs"]  # ... quantized as that try says
    monkeypatch.setattr(export, "INT8_TOLERANCE", 1.0)  # anything will do: the first is kept
    assert main(args) == 0 and len(calibration()["tried"]) == 1 and calibration()["float_layers"].startswith(
        "the first conv")


def test_equalize_first_keeps_the_function_and_evens_the_first_ranges():
    """The first activation int8 quantizes shares one range over its channels: equalize_first gives every channel the
    same range without changing what the net computes."""
    from segapp.int8 import EQUALIZE_PERCENTILE, calibration_images, equalize_first

    torch.manual_seed(0)
    net = DilatedNet(NetConfig(widths=(6,) * 7)).eval()
    with torch.no_grad():  # a fine-tune's uneven channels: some 20x wider than others
        net.features[1].weight.mul_(torch.logspace(-1, 0.3, 6))
    images = calibration_images(40)
    fixed = equalize_first(net, images)
    x = to_input(images)

    def first_ranges(m) -> torch.Tensor:
        with torch.inference_mode():
            acts = m.features[:3](x).transpose(0, 1).flatten(1)
        return torch.quantile(acts, EQUALIZE_PERCENTILE / 100, dim=1)

    with torch.inference_mode():
        assert torch.allclose(fixed(x), net(x), atol=1e-4, rtol=1e-4)
    before, after = first_ranges(net), first_ranges(fixed)
    assert before.max() / before.min() > 10 and after.max() / after.min() < 1.5
    assert net.features[1].weight is not fixed.features[1].weight  # a copy: the net given is not touched

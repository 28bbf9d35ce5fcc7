"""The decoder-free net: any size in, same size out; parameters, receptive field, safe loading."""

import pickle

import pytest
import torch

from segapp.classes import NUM_CLASSES
from segapp.model import (
    DilatedNet,
    NetConfig,
    WeightsError,
    load_checkpoint,
    load_pretrained,
    save_pretrained,
)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return DilatedNet(NetConfig(widths=(8,) * 7)).eval()


@pytest.mark.parametrize("h, w", [(64, 84), (64 + 3, 84 + 7), (37, 101), (5, 300), (1, 1)])
def test_any_size_comes_back_the_same_size(net, h, w):
    logits = net(torch.rand(2, 1, h, w))
    assert logits.shape == (2, NUM_CLASSES, h, w)
    classes, conf = net.predict(torch.rand(1, 1, h, w))
    assert classes.shape == conf.shape == (1, h, w)
    assert 0 <= float(conf.min()) and float(conf.max()) <= 1


def test_default_net_is_small_and_sees_a_whole_digit():
    model = DilatedNet()
    assert model.num_params() <= 150_000
    assert model.receptive_field() == 45


def test_receptive_field_matches_gradient_support(net):
    """Only input pixels within receptive_field() of an output pixel can change it."""
    x = torch.rand(1, 1, 101, 101, requires_grad=True)  # eval mode: BN must not mix pixels
    net(x)[0, :, 50, 50].sum().backward()
    rows = (x.grad[0, 0].abs().sum(1) > 0).nonzero()
    assert int(rows.max() - rows.min() + 1) == net.receptive_field()


def test_wrong_channel_count_says_what_to_do(net):
    with pytest.raises(ValueError, match="grayscale"):
        net(torch.rand(1, 3, 8, 8))


def test_save_load_round_trip_gives_identical_logits(net, tmp_path):
    save_pretrained(net, tmp_path)
    loaded = load_pretrained(tmp_path)
    x = torch.rand(1, 1, 40, 50)
    assert loaded.config == net.config
    assert torch.equal(net(x), loaded(x))


def test_checkpoint_round_trip(net, tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"config": net.config.to_dict(), "model": net.state_dict()}, path)
    x = torch.rand(1, 1, 20, 30)
    assert torch.equal(load_pretrained(path)(x), net(x))


def test_other_class_count_is_refused(tmp_path):
    other = DilatedNet(NetConfig(widths=(8,) * 7, num_classes=5))
    save_pretrained(other, tmp_path)
    cfg = (tmp_path / "config.json").read_text().replace('"num_classes": 5', '"num_classes": 11')
    (tmp_path / "config.json").write_text(cfg)
    with pytest.raises(WeightsError, match="another architecture or class count"):
        load_pretrained(tmp_path)


def test_foreign_architecture_is_refused(net, tmp_path):
    save_pretrained(net, tmp_path, {"architecture": "smp.Unet"})
    with pytest.raises(WeightsError, match="architecture"):
        load_pretrained(tmp_path)


@pytest.mark.parametrize("name", ["model.safetensors", "last.pt"])
def test_truncated_weights_are_refused(net, tmp_path, name):
    save_pretrained(net, tmp_path)
    torch.save({"config": net.config.to_dict(), "model": net.state_dict()}, tmp_path / "last.pt")
    path = tmp_path / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WeightsError, match=name):
        load_pretrained(path)


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"config": {}, "model": Payload(str(marker))}, f)
    with pytest.raises(WeightsError, match="evil.pt"):
        load_checkpoint(path)
    assert not marker.exists()

"""Blending fine-tuned weights with the parent's: learn a new style, keep the old ones."""

import json

import pytest
import torch
from safetensors.torch import load_file

from segapp.blend import STEPS, blend_state, choose
from segapp.cli import main
from segapp.model import DilatedNet, NetConfig, load_pretrained


def net(seed: int) -> DilatedNet:
    torch.manual_seed(seed)
    model = DilatedNet(NetConfig(widths=(4,) * 7))
    for m in model.modules():  # give BatchNorm statistics something to blend
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.num_batches_tracked += seed
    return model.eval()


@pytest.mark.parametrize("b", [0.0, 0.3, 1.0])
def test_blend_state_is_the_weighted_mean(b):
    p, t = net(0).state_dict(), net(1).state_dict()
    out = blend_state(p, t, b)
    for k, v in t.items():
        if v.is_floating_point():
            torch.testing.assert_close(out[k], (1 - b) * p[k] + b * v)
        else:  # BatchNorm's batch counter is not averaged
            assert torch.equal(out[k], v)


@pytest.mark.parametrize("tolerance", [0.0, 0.05, 1.0])
def test_choose_keeps_the_most_blend_that_forgets_within_tolerance(test_split, tolerance):
    images, masks = test_split
    keep, learn = (images[:20], masks[:20]), (images[20:], masks[20:])
    b, rows = choose(net(0), net(1), keep, learn, tolerance, torch.device("cpu"), False)
    tried = rows[1:]
    assert rows[0]["blend"] == "parent" and [r["blend"] for r in tried] == list(STEPS[: len(tried)])
    assert tried[-1]["blend"] == b and tried[-1]["forgotten"] <= tolerance
    assert all(r["forgotten"] > tolerance for r in tried[:-1])  # every larger blend forgot too much
    if tolerance == 1.0:
        assert b == 1.0  # mIoU cannot drop by more than 1: the fine-tuned weights as they are


@pytest.mark.slow
def test_fine_tuning_on_a_folder_ends_blended_and_a_rerun_blends_once(tmp_path, test_split, tiny_weights):
    from PIL import Image

    from segapp.blend import blend_run
    from segapp.mask_files import mask_image

    images, masks = test_split
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for i in range(12):
        Image.fromarray(255 - images[i]).save(data / "images" / f"{i}.png")  # a "new style": dark ink on white
        mask_image(masks[i]).save(data / "masks" / f"{i}.png")
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--init", str(tiny_weights), "--epochs", "1", "--train-size", "16",
                 "--batch-size", "8", "--val-size", "16", "--mix-recipe", "0.5", "--blend", "0.25", "--out",
                 str(out), "--quiet"]) == 0
    parent = load_pretrained(tiny_weights).state_dict()
    tuned = load_file(out / "tuned.safetensors")
    final = load_file(out / "model.safetensors")
    for k, v in blend_state(parent, tuned, 0.25).items():
        torch.testing.assert_close(final[k], v)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["blend"] == 0.25 and "0.75 x parent + 0.25 x fine-tuned" in (out / "MODEL_CARD.md").read_text()
    # A run killed during blending is resumed from tuned.safetensors: blending again gives the same weights.
    blend_run(out, str(tiny_weights), 0.25, 0.002, (images[:8], masks[:8]), (images[8:16], masks[8:16]),
              torch.device("cpu"), False)
    again = load_file(out / "model.safetensors")
    assert all(torch.equal(again[k], final[k]) for k in final)


@pytest.mark.slow
def test_blend_with_averages_with_the_named_ancestor_not_the_init(tmp_path, tiny_weights):
    from segapp.model import save_pretrained

    ancestor = tmp_path / "ancestor"  # e.g. the shipped net, of which --init is a fine-tuned descendant
    torch.manual_seed(3)
    save_pretrained(DilatedNet(NetConfig(widths=(8,) * 7)), ancestor)  # tiny_weights' widths, other weights
    wide = tmp_path / "wide"
    save_pretrained(net(4), wide)  # widths 4, the run's 8: cannot be averaged with it
    common = ["train", "--init", str(tiny_weights), "--epochs", "1", "--train-size", "16", "--batch-size", "8",
              "--val-size", "16", "--blend", "0.5", "--quiet"]
    assert main([*common, "--blend-with", str(wide), "--out", str(tmp_path / "refused")]) == 2
    out = tmp_path / "run"
    assert main([*common, "--blend-with", str(ancestor), "--out", str(out)]) == 0
    tuned, final = load_file(out / "tuned.safetensors"), load_file(out / "model.safetensors")
    for k, v in blend_state(load_pretrained(ancestor).state_dict(), tuned, 0.5).items():
        torch.testing.assert_close(final[k], v)
    parent = load_pretrained(tiny_weights).state_dict()
    assert any(not torch.allclose(final[k], blend_state(parent, tuned, 0.5)[k]) for k in final if "weight" in k)
    card = (out / "MODEL_CARD.md").read_text()
    assert f"0.5 x `{ancestor}` (weights fingerprint " in card
    assert json.loads((out / "args.json").read_text())["blend_with"] == str(ancestor)


@pytest.mark.parametrize("argv, message", [
    (["--blend", "0.5"], "--blend 0.5 needs --init"),
    (["--blend-with", "weights", "--init", "weights"], "--blend-with weights needs --init and a --blend below 1"),
    (["--blend", "1.5", "--init", "weights"], "--blend is auto or a number from 0"),
    (["--forget-tolerance", "-1", "--init", "weights"], "--forget-tolerance must be 0 or more"),
])
def test_blend_arguments_are_checked_before_anything_is_written(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert main(["train", *argv, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_a_stale_tuned_file_is_replaced_and_a_blended_run_without_one_is_refused(tmp_path):
    """The fine-tuned weights are the run's unblended best epoch, never a tuned.safetensors some earlier run left in
    the folder; a folder whose weights are blended already and whose tuned file is gone is refused (blending again
    would blend twice)."""
    from safetensors.torch import save_file

    from segapp.blend import TUNED, blend_run
    from segapp.classes import SegappError
    from segapp.model import save_pretrained

    parent, out = tmp_path / "parent", tmp_path / "run"
    save_pretrained(net(0), parent)
    save_pretrained(net(1), out, {"epoch": 3, "val_miou_digits": 0.5})  # the run's best epoch, not blended yet
    save_file(net(2).state_dict(), out / TUNED)  # stale: left by another run
    blend_run(out, str(parent), 0.5, 0.002, None, None, torch.device("cpu"), False)
    final = load_file(out / "model.safetensors")
    for k, v in blend_state(net(0).state_dict(), net(1).state_dict(), 0.5).items():
        torch.testing.assert_close(final[k], v)
    assert all(torch.equal(load_file(out / TUNED)[k], v) for k, v in net(1).state_dict().items())
    (out / TUNED).unlink()
    with pytest.raises(SegappError, match="blended already .* is missing"):
        blend_run(out, str(parent), 0.5, 0.002, None, None, torch.device("cpu"), False)

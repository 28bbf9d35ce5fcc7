"""Folder datasets: predict -> correct a mask -> train / evaluate with --data; bad pairs refused."""

import json
import shutil

import cv2
import numpy as np
import pytest
from PIL import Image

from segapp.classes import PALETTE, VOID
from segapp.cli import main
from segapp.folders import FolderError, find_pairs, load_pair, read_mask
from segapp.mask_files import mask_image


def write_png(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


@pytest.fixture
def predicted_dataset(tmp_path, test_split, tiny_weights):
    """A folder dataset made the way a user makes one: `segapp predict`, then one mask corrected by hand."""
    images, masks = test_split
    src = tmp_path / "scans"
    for i, img in enumerate(images[:12]):
        write_png(src / f"s{i:02d}.png", img)
    assert main(["predict", str(src), "--out", str(tmp_path / "pred"), "--weights", str(tiny_weights),
                 "--quiet", "--no-overlays"]) == 0
    data = tmp_path / "data"
    shutil.copytree(src, data / "images")
    shutil.copytree(tmp_path / "pred" / "masks", data / "masks")
    mask_image(masks[0]).save(data / "masks" / "s00.png")  # the user's correction
    return data


@pytest.mark.slow
def test_predict_output_trains_and_evaluates(predicted_dataset, tmp_path, tiny_weights, capsys):
    pairs = find_pairs(predicted_dataset)
    assert len(pairs) == 12 and pairs[0].rel == "s00.png"
    out = tmp_path / "run"
    assert main(["train", "--data", str(predicted_dataset), "--init", str(tiny_weights), "--epochs", "1",
                 "--train-size", "16", "--batch-size", "8", "--mix-recipe", "0.5", "--out", str(out)]) == 0
    assert (out / "model.safetensors").is_file()
    card = (out / "MODEL_CARD.md").read_text()
    assert "folder dataset" in card and "fine-tuned" in card
    capsys.readouterr()
    assert main(["evaluate", "--data", str(predicted_dataset), "--weights", str(out), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["n_images"] == 12 and 0 <= m["miou_digits"] <= 1 and "numbers_read" in m
    assert 0 <= m["unsure_share"] <= 1  # readings to check first; the misreads among them, or None when none
    assert m["misreads_unsure"] is None if m["numbers_read"] == 1 else 0 <= m["misreads_unsure"] <= 1


def test_void_pixels_are_not_scored(tmp_path, test_split, capsys):
    images, masks = test_split

    def score(edit) -> float:
        data = tmp_path / str(edit)
        (data / "masks").mkdir(parents=True)
        for i in range(4):
            write_png(data / "images" / f"{i}.png", images[i])
            m = masks[i].copy()
            if edit:
                m[:, :12][m[:, :12] == 10] = 3 if edit == "wrong" else VOID  # paper at the left edge
            mask_image(m).save(data / "masks" / f"{i}.png")
        assert main(["evaluate", "--data", str(data), "--json"]) == 0
        return json.loads(capsys.readouterr().out)["miou_digits"]

    clean, wrong, void = score(None), score("wrong"), score("void")
    assert wrong < clean - 0.05  # wrong labels there count...
    assert abs(void - clean) < 0.01  # ...void ones do not


def test_palette_coloured_masks_convert_back(tmp_path, test_split):
    mask = test_split[1][0]
    rgb = np.where((mask < 10)[..., None], PALETTE[np.minimum(mask, 9)], 0).astype(np.uint8)
    write_png(tmp_path / "m.png", rgb)
    assert np.array_equal(read_mask(tmp_path / "m.png"), mask)


@pytest.mark.parametrize("problem", ["size", "index", "colours", "missing"])
def test_bad_pairs_get_one_line_errors(tmp_path, test_split, problem):
    images, masks = test_split
    data = tmp_path / "d"
    write_png(data / "images" / "a.png", images[0])
    mask = masks[0]
    if problem == "size":
        (data / "masks").mkdir(parents=True)
        mask_image(cv2.resize(mask, (40, 30), interpolation=cv2.INTER_NEAREST)).save(data / "masks" / "a.png")
        want = "must match their image"
    elif problem == "index":
        write_png(data / "masks" / "a.png", np.where(mask == 10, 42, mask).astype(np.uint8))
        want = "class index 42 out of range"
    elif problem == "colours":
        write_png(data / "masks" / "a.png", np.full((*mask.shape, 3), (12, 200, 99), np.uint8))
        want = "not segapp's palette"
    else:
        (data / "masks").mkdir(parents=True)
        write_png(data / "masks" / "other.png", mask)
        want = "no image in images/ has a mask"
    with pytest.raises(FolderError) as e:
        for pair in find_pairs(data):
            load_pair(pair)
    assert want in str(e.value) and "\n" not in str(e.value)


def test_a_mixed_epoch_is_the_same_every_time_it_is_drawn(predicted_dataset):
    """--data with --mix-recipe: the recipe's share is augmented too, from the run's seed and the epoch, so a
    resumed run draws what the uninterrupted one drew."""
    from segapp.datasets import WildM2NIST, train_augment
    from segapp.folders import FolderSet
    from segapp.train_loop import seed_epoch

    mixed = FolderSet(find_pairs(predicted_dataset), 24, seed=3,
                      other=WildM2NIST(24, 3, 0.5, train_augment()), share=0.5)

    def draw(epoch):
        seed_epoch(mixed, 3, epoch)
        return np.stack([mixed[i][0].numpy() for i in range(len(mixed))])

    first = draw(1)
    draw(2)  # the augmentation streams move on ...
    assert np.array_equal(draw(1), first)  # ... and epoch 1 is drawn again exactly
    assert not np.array_equal(draw(2), first)

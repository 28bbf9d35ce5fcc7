"""MNIST reading, the M2NIST recipe, splits, the Kaggle layout and augmentation."""

import gzip
from dataclasses import replace

import numpy as np
import pytest
import torch

from segapp.classes import BACKGROUND, NUM_CLASSES
from segapp.datasets import FreshM2NIST, SegmentationSet, WildM2NIST, train_augment
from segapp.kaggle import load_kaggle, save_kaggle
from segapp.m2nist import DataError, compose, digit_pool, load_mnist, make_split, read_idx


def test_mnist_files_are_the_originals():
    images, labels = load_mnist("train")
    assert images.shape == (60000, 28, 28) and labels.shape == (60000,)
    assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # as published in data/mnist/SOURCE.md
    test_images, test_labels = load_mnist("test")
    assert test_images.shape == (10000, 28, 28) and test_labels[:5].tolist() == [7, 2, 1, 0, 4]


@pytest.mark.parametrize(
    "content, reason",
    [(None, "not found"), (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated"), (b"PK\x03\x04garbage!", "magic")],
    ids=["missing", "truncated", "not-idx"],
)
def test_bad_idx_files_name_the_file(tmp_path, content, reason):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    if content is not None:
        with gzip.open(path, "wb") as f:
            f.write(content)
    with pytest.raises(DataError, match=reason) as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_missing_mnist_folder_says_how_to_fix(tmp_path):
    with pytest.raises(DataError, match="copy the four original MNIST"):
        load_mnist("test", tmp_path)


def test_compose_follows_the_recipe():
    rng = np.random.default_rng(0)
    digits = np.zeros((2, 28, 28), np.uint8)
    digits[0, 4:24, 4:24] = 200
    digits[1, 4:24, 4:24] = 90
    images, masks = compose(digits, np.array([3, 7]), 200, rng)
    assert images.shape == masks.shape == (200, 64, 84)
    # a pixel is a digit exactly where the canvas is lit
    assert np.array_equal(images > 0, masks != BACKGROUND)
    assert set(np.unique(masks)) <= {3, 7, BACKGROUND}
    # the third slot (x = 56 + U[0,9]) fits only with offset 0, so digit pixels never pass x = 84 - 28 + 28 - 4
    assert images[:, :, 80:].max() == 0


def test_brighter_digit_wins_on_overlap():
    digits = np.zeros((2, 28, 28), np.uint8)
    digits[0, :, 14:28] = 100  # right half of digit "1"
    digits[1, :, 0:14] = 250  # left half of digit "2", brighter
    images, masks = compose(digits, np.array([1, 2]), 300, np.random.default_rng(1), width=56)
    assert np.all(masks[images == 250] == 2)  # includes every pixel where the two overlap
    assert np.all(masks[images == 100] == 1)
    assert np.all(masks[images == 0] == BACKGROUND)


def test_wider_canvas_holds_more_digits():
    images, masks = make_split("test", n=20, width=224)
    counts = [len(np.unique(m[m != BACKGROUND])) for m in masks]
    assert images.shape == (20, 64, 224) and max(counts) >= 5


def test_splits_are_deterministic_and_disjoint():
    a, b = make_split("val", n=30), make_split("val", n=30)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    train_pool, _ = digit_pool("train")
    val_pool, _ = digit_pool("val")
    assert len(train_pool) + len(val_pool) == 60000
    train_keys = {d.tobytes() for d in train_pool}
    shared = sum(d.tobytes() in train_keys for d in val_pool)
    assert shared <= 10  # MNIST itself holds a handful of byte-identical duplicate digits


def test_kaggle_round_trip(tmp_path, test_split):
    images, masks = test_split
    save_kaggle(tmp_path, images, masks)
    assert np.load(tmp_path / "segmented.npy").shape == (*images.shape, NUM_CLASSES)
    images2, masks2 = load_kaggle(tmp_path)
    assert np.array_equal(images, images2) and np.array_equal(masks, masks2)


def test_kaggle_pair_with_wrong_shapes_is_refused(tmp_path):
    np.save(tmp_path / "combined.npy", np.zeros((3, 64, 84), np.uint8))
    np.save(tmp_path / "segmented.npy", np.zeros((3, 64, 84, 10), np.uint8))
    with pytest.raises(DataError, match="segmented.npy: expected shape"):
        load_kaggle(tmp_path)


def test_augmentation_keeps_masks_valid(test_split):
    images, masks = test_split
    ds = SegmentationSet(images, masks, train_augment())
    ds.augment.set_random_seed(0)
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (1, 64, 84) and y.shape == (64, 84)
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        assert set(y.unique().tolist()) <= set(range(NUM_CLASSES))
        assert torch.equal(x[0] > 0, y != BACKGROUND)  # the M2NIST label rule survives augmentation


def test_fresh_training_set_changes_per_epoch_and_is_reproducible():
    a, b = FreshM2NIST(8, seed=3), FreshM2NIST(8, seed=3)
    first = a.images.copy()
    a.set_epoch(1)
    b.set_epoch(1)
    assert not np.array_equal(first, a.images)
    assert np.array_equal(a.images, b.images)


def test_train_ruled_share_reaches_the_wild_images():
    # `segapp train --ruled` sets how many photographed pages are notebook paper: the default draws exactly the
    # recipe's images (the shipped weights' command stays reproducible), another share other pictures, same labels.
    from segapp.train_config import TrainConfig, build_data

    cfg = TrainConfig(train_size=24, val_size=1, wild=1.0, augment=False, seed=5)
    default, _ = build_data(cfg)
    plain = WildM2NIST(24, seed=5, wild=1.0)
    ruled, _ = build_data(replace(cfg, ruled=1.0))
    pairs = [(default[i], plain[i], ruled[i]) for i in range(24)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b, _ in pairs)
    assert any(not torch.equal(a[0], r[0]) for a, _, r in pairs)
    assert all(torch.equal(a[1], r[1]) for a, _, r in pairs)


def test_train_letters_share_reaches_the_wild_images_and_is_checked():
    # `segapp train --letters` puts letters and signs, labelled background, among the wild images' digits
    from segapp.classes import SegappError
    from segapp.train_config import TrainConfig, build_data, check_args

    cfg = TrainConfig(train_size=24, val_size=1, wild=1.0, augment=False, seed=5)
    default, _ = build_data(cfg)
    lettered, _ = build_data(replace(cfg, letters=0.5))
    assert any(not torch.equal(default[i][0], lettered[i][0]) for i in range(24))
    with pytest.raises(SegappError, match="--letters"):
        check_args(replace(cfg, letters=1.0), names=["letters"])


class _Cv2Threads(torch.utils.data.Dataset):
    """Each item is the number of threads OpenCV would use in the process that makes it, after some OpenCV work."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> torch.Tensor:
        import cv2

        cv2.GaussianBlur(np.zeros((300, 300), np.float32), (15, 15), 3)
        return torch.tensor(cv2.getNumThreads())


def _workers_opencv_threads() -> list[int]:
    """Runs OpenCV's pool in this process first (as making images in the main process does), then one epoch of
    two workers: each item says its worker's OpenCV threads."""
    import cv2

    from segapp.train_config import TrainConfig
    from segapp.train_loop import epoch_loader

    for _ in range(5):
        cv2.resize(cv2.GaussianBlur(np.zeros((2000, 2000), np.float32), (31, 31), 5), (3000, 3000))
    return torch.cat(list(epoch_loader(_Cv2Threads(), TrainConfig(batch_size=2, workers=2), epoch=1))).tolist()


def test_loader_workers_use_one_opencv_thread_each():
    """OpenCV's default pool is a thread per core in every worker; on a many-core host the workers then starve each
    other (a 16-core GPU host made half the images per second with it). Run in a child process with a time limit:
    a worker forked after its parent used OpenCV's pool can hang (it did when each worker set its own threads)."""
    import subprocess
    import sys

    code = "import json, tests.test_data as t; print(json.dumps(t._workers_opencv_threads()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[1, 1, 1, 1]"

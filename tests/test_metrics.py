"""Confusion-matrix metrics on hand-worked 4-pixel examples."""

import math

import numpy as np
import pytest
import torch

from segapp.metrics import ConfusionMatrix


def test_four_pixels_three_classes():
    # target: 0 0 1 2, prediction: 0 1 1 2
    # class 0: tp 1, fp 0, fn 1 -> IoU 1/2, Dice 2/3
    # class 1: tp 1, fp 1, fn 0 -> IoU 1/2, Dice 2/3
    # class 2: tp 1                -> IoU 1,   Dice 1
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([[0, 1], [1, 2]]), torch.tensor([[0, 0], [1, 2]]))
    m = cm.compute()
    assert m["per_class_iou"] == pytest.approx([0.5, 0.5, 1.0])
    assert m["per_class_dice"] == pytest.approx([2 / 3, 2 / 3, 1.0])
    assert m["miou"] == pytest.approx(2 / 3)
    assert m["pixel_accuracy"] == pytest.approx(0.75)
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]


def test_digits_mean_excludes_background_and_absent_classes():
    # 11 classes; 4 pixels: target 3 3 10 10, prediction 3 10 10 10
    # class 3: tp 1, fn 1 -> IoU 1/2; background: tp 2, fp 1 -> IoU 2/3; all others absent -> NaN
    cm = ConfusionMatrix(11)
    cm.update(torch.tensor([3, 10, 10, 10]), torch.tensor([3, 3, 10, 10]))
    m = cm.compute()
    assert m["miou_digits"] == pytest.approx(0.5)
    assert m["miou"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert math.isnan(m["per_class_iou"][0])
    assert m["per_class_iou"][10] == pytest.approx(2 / 3)


def test_bleed_and_missed_are_shares_of_true_digit_pixels():
    # target 3 3 3 10 10 10 10, prediction 3 10 5 3 3 10 10: three true digit pixels; two background pixels coloured
    # as a digit (bleed 2/3), one digit pixel left background (missed 1/3); the 3 read as 5 is neither
    cm = ConfusionMatrix(11)
    cm.update(torch.tensor([3, 10, 5, 3, 3, 10, 10]), torch.tensor([3, 3, 3, 10, 10, 10, 10]))
    m = cm.compute()
    assert m["bleed"] == pytest.approx(2 / 3)
    assert m["missed"] == pytest.approx(1 / 3)
    empty = ConfusionMatrix(11)
    empty.update(torch.tensor([10, 4]), torch.tensor([10, 10]))
    assert math.isnan(empty.compute()["bleed"])


def test_updates_accumulate_independently_of_batching():
    pred, target = torch.tensor([0, 1, 1, 2]), torch.tensor([0, 0, 1, 2])
    whole, parts = ConfusionMatrix(3), ConfusionMatrix(3)
    whole.update(pred, target)
    parts.update(pred[:1], target[:1])
    parts.update(pred[1:], target[1:])
    assert torch.equal(whole.matrix, parts.matrix)


@pytest.mark.parametrize(
    "pred, target",
    [(torch.tensor([0, 1]), torch.tensor([0, 1, 2])), (torch.tensor([0, 5]), torch.tensor([0, 1]))],
    ids=["shape-mismatch", "class-out-of-range"],
)
def test_bad_updates_raise(pred, target):
    with pytest.raises(ValueError):
        ConfusionMatrix(3).update(pred, target)


def test_boundary_f_is_one_for_a_perfect_mask_and_drops_for_a_halo():
    """A mask one pixel too fat keeps most of its IoU on a fat digit but its edge lies off the true edge."""
    import cv2

    from segapp.classes import BACKGROUND
    from segapp.metrics import BoundaryScore

    truth = np.full((40, 40), BACKGROUND, np.uint8)
    truth[10:30, 15:20] = 1
    perfect = BoundaryScore(tolerance=1)
    perfect.update(truth, truth)
    assert perfect.compute()["boundary_f"] == 1.0
    halo = truth.copy()
    grown = cv2.dilate((truth == 1).astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    halo[grown] = 1
    fat = BoundaryScore(tolerance=1)
    fat.update(halo, truth)
    assert fat.compute()["boundary_f"] < 0.2
    void = truth.copy()
    void[grown & (truth == BACKGROUND)] = 255  # the halo lies in the truth's void band: its edge is not counted
    lenient = BoundaryScore(tolerance=1)
    lenient.update(halo, void)
    assert lenient.pred == 0 and lenient.true == fat.true


def test_review_counts_flagged_readings_and_the_misreads_among_them():
    """check: readings under REVIEW_BELOW; caught: misreads among them; a reading of nothing is never flagged."""
    from segapp.classes import REVIEW_BELOW
    from segapp.metrics import review

    low, high = REVIEW_BELOW / 2, (1 + REVIEW_BELOW) / 2
    r = review([(low, False), (low, True), (high, True), (high, False), (None, False), (high, True)])
    assert r["check"] == pytest.approx(2 / 6) and r["caught"] == pytest.approx(1 / 3)
    assert r["sure_read"] == pytest.approx(2 / 4)
    assert np.isnan(review([(high, True)])["caught"])

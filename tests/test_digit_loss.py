"""benchmarks.digit_loss: the digit-level loss of session 27's experiment (a measuring tool, not the product)."""

import numpy as np
import torch

from benchmarks.digit_loss import digit_loss, digit_parts
from segapp.classes import BACKGROUND, VOID


def test_digit_parts_are_one_class_parts_of_twenty_pixels_or_more():
    y = np.full((2, 10, 12), BACKGROUND, np.uint8)
    y[0, 1:8, 1:4] = 3  # 21 px: a digit
    y[0, 1:8, 6:9] = 3  # another part of class 3
    y[0, 9, 0:3] = 5  # 3 px: a fragment
    y[1, 2:9, 2:6] = 7
    y[1, 0, :] = VOID
    ids, classes = digit_parts(y)
    assert classes == [3, 3, 7]
    assert (ids[0, 9, 0:3] == 0).all() and len(np.unique(ids[1][ids[1] > 0])) == 1


def test_digit_loss_is_low_where_the_digit_pools_to_its_class_and_high_where_it_does_not():
    y = torch.full((1, 10, 10), BACKGROUND, dtype=torch.long)
    y[0, 1:9, 3:7] = 2
    right = torch.zeros(1, 11, 10, 10)
    right[0, 2, 1:9, 3:7] = 6.0
    wrong = torch.zeros(1, 11, 10, 10)
    wrong[0, 9, 1:9, 3:7] = 6.0
    assert digit_loss(right, y) < 0.05 < 5 < digit_loss(wrong, y)
    assert digit_loss(right, torch.full((1, 10, 10), BACKGROUND, dtype=torch.long)) == 0

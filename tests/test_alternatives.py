"""A digit's likeliest other reading (segapp/alternatives.py), from net-scale logits."""

import numpy as np
import pytest
import torch

from segapp.alternatives import alternatives, runner_up
from segapp.classes import BACKGROUND, NUM_CLASSES


def logits_for(classes: np.ndarray, second: dict[int, tuple[int, float]]) -> torch.Tensor:
    """(C, h, w) logits whose argmax is ``classes`` and, for a digit class k in ``second``, whose runner-up is
    second[k][0] at probability about second[k][1]."""
    h, w = classes.shape
    x = torch.full((NUM_CLASSES, h, w), -10.0)
    for k in np.unique(classes):
        m = torch.from_numpy(classes == k)
        x[int(k)][m] = 5.0
        if int(k) in second:
            alt, p = second[int(k)]
            x[alt][m] = 5.0 + float(np.log(p / (1 - p)))  # two classes only: softmax gives alt about p
    return x


def test_each_digit_gets_the_class_its_pixels_rank_next():
    small = np.full((20, 40), BACKGROUND, np.uint8)
    small[2:18, 3:9] = 4  # a 4 the net nearly read as a 9
    small[2:18, 20:26] = 1  # a sure 1 (no runner-up of note)
    x = logits_for(small, {4: (9, 0.4)})
    digits = [{"digit": 4, "bbox": [3, 2, 9, 18]}, {"digit": 1, "bbox": [20, 2, 26, 18]}]
    alternatives(digits, small, runner_up(x, small))
    assert digits[0]["alternative"] == 9 and digits[0]["alternative_confidence"] == pytest.approx(0.4, abs=0.01)
    assert digits[1]["alternative"] != 1 and digits[1]["alternative_confidence"] < 1e-6


def test_a_digit_joined_from_pieces_of_other_classes_is_never_its_own_alternative():
    small = np.full((20, 30), BACKGROUND, np.uint8)
    small[2:10, 3:5] = 1  # a 4's arm the net coloured as a 1 ...
    small[2:18, 10:12] = 4  # ... beside its stem
    x = logits_for(small, {1: (4, 0.45), 4: (1, 0.1)})  # the arm votes 4 more strongly than the stem votes 1
    digits = [{"digit": 4, "bbox": [3, 2, 12, 18], "_joined": (1,)}]
    alternatives(digits, small, runner_up(x, small))
    assert digits[0]["alternative"] == 1  # the stem's runner-up; the arm's runner-up (4) is the digit itself


def test_the_shipped_net_offers_an_alternative_for_every_digit_it_reads(test_split):
    from segapp.inference import Segmenter

    seg = Segmenter()(test_split[0][0])
    assert seg.digits and all(d["alternative"] not in (None, d["digit"]) for d in seg.digits)
    assert all(0 <= d["alternative_confidence"] < 0.5 for d in seg.digits)

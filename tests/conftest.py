"""Shared fixtures: small deterministic data and a tiny model, so tests stay fast on 2 CPU cores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segapp.m2nist import make_split
from segapp.model import DilatedNet, NetConfig, save_pretrained

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def test_split():
    """40 M2NIST-recipe test images and their class maps."""
    return make_split("test", n=40)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A randomly initialised narrow net saved as a weights folder (fast; accuracy irrelevant)."""
    torch.manual_seed(0)
    model = DilatedNet(NetConfig(widths=(8,) * 7)).eval()
    folder = tmp_path_factory.mktemp("tiny_weights")
    save_pretrained(model, folder)
    return folder


@pytest.fixture
def rng():
    return np.random.default_rng(0)

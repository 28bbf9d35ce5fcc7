"""The in-domain ceiling tool (benchmarks.real_ceiling): its classifiers on toy data with a known answer."""

import numpy as np
import pytest

from benchmarks.real_ceiling import cnn_accuracy, knn_accuracy


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ten classes of 8x8 grids, class c lit in row c % 8 (columns by c // 8), with a little noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.uniform(0, 0.1, (n, 8, 8)).astype(np.float32)
    for i, c in enumerate(y):
        x[i, c % 8, 4 * (c // 8):4 * (c // 8) + 4] = 1.0
    return x, y


@pytest.mark.parametrize("k", [1, 3, 5])
def test_knn_reads_separable_classes_and_fails_on_shuffled_labels(k):
    x, y = blobs(200, 0)
    xt, yt = blobs(100, 1)
    assert knn_accuracy(x, y, xt, yt, k) == 1.0
    assert knn_accuracy(x, np.random.default_rng(2).permutation(y), xt, yt, k) < 0.5


def test_knn_with_k1_reads_its_own_training_rows():
    x, y = blobs(50, 3)
    assert knn_accuracy(x, y, x, y, 1) == 1.0


def test_cnn_learns_separable_classes_in_a_few_epochs():
    x, y = blobs(300, 4)
    xt, yt = blobs(100, 5)
    assert cnn_accuracy(x, y, xt, yt, epochs=8, seed=0) >= 0.9
    assert cnn_accuracy(x, y, xt, yt, epochs=0, seed=0) < 0.5  # untrained: chance

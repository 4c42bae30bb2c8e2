"""Retrieval metrics against pytorch-metric-learning's AccuracyCalculator, on digits pixels."""
import numpy as np
import pytest

from engine.data import load_dataset
from engine.metrics.retrieval import retrieval_metrics

pml_acc = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
from pytorch_metric_learning.distances import CosineSimilarity, LpDistance  # noqa: E402
from pytorch_metric_learning.utils.inference import CustomKNN  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    test = load_dataset("digits").test
    x = test.images.reshape(len(test), -1).astype(np.float32) / 255
    # a little jitter: no two points at exactly the same distance, so neighbour order is unique
    x += np.random.default_rng(0).normal(0, 1e-3, x.shape).astype(np.float32)
    return x, test.labels.copy()


def pml(x, y, distance):
    import torch

    calc = pml_acc.AccuracyCalculator(include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
                                      knn_func=CustomKNN(distance), device=torch.device("cpu"))
    return calc.get_accuracy(x, y)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_equal_to_pml_accuracy_calculator(digits, metric):
    x, y = digits
    ours = retrieval_metrics(x, y, metric=metric, nmi=False)
    theirs = pml(x, y, LpDistance(normalize_embeddings=False) if metric == "euclidean" else CosineSimilarity())
    assert ours["precision_at_1"] == pytest.approx(theirs["precision_at_1"], abs=1e-9)
    assert ours["r_precision"] == pytest.approx(theirs["r_precision"], abs=1e-9)
    # float32 distances computed two ways can swap two nearly tied neighbours deep in a list (1e-7 here)
    assert ours["map_at_r"] == pytest.approx(theirs["mean_average_precision_at_r"], abs=1e-5)
    assert 0.9 < ours["precision_at_1"] < 1 and ours["map_at_r"] < ours["r_precision"] < ours["precision_at_1"]


def test_lone_class_and_unlabelled_points_are_left_out(digits):
    x, y = digits
    y = y.copy()
    lone = np.flatnonzero(y == 3)
    y[lone[1:]] = -1  # class 3 keeps a single point: it is a reference but never a query
    ours = retrieval_metrics(x, y, nmi=False)
    keep = y >= 0
    theirs = pml(x[keep], y[keep], LpDistance(normalize_embeddings=False))
    assert ours["map_at_r"] == pytest.approx(theirs["mean_average_precision_at_r"], abs=1e-5)
    assert ours["precision_at_1"] == pytest.approx(theirs["precision_at_1"], abs=1e-9)
    assert ours["precision_at_1_per_class"][3] is None


def test_recall_at_k_and_per_class_by_brute_force(digits):
    x, y = digits
    ours = retrieval_metrics(x, y, ks=(1, 2, 4))
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    order = np.argsort(d, 1)
    for k in (1, 2, 4):
        assert ours[f"recall_at_{k}"] == pytest.approx((y[order[:, :k]] == y[:, None]).any(1).mean())
    first = y[order[:, 0]] == y
    assert ours["precision_at_1_per_class"] == pytest.approx([first[y == c].mean() for c in range(10)])
    assert ours["recall_at_1"] == ours["precision_at_1"]
    assert 0.5 < ours["nmi"] <= 1


def test_perfect_and_bad_inputs():
    y = np.repeat(np.arange(3), 4)
    x = np.eye(3)[y] * 10 + np.random.default_rng(0).normal(0, 0.01, (12, 3))
    m = retrieval_metrics(x, y, ks=(1,))
    assert m["precision_at_1"] == m["map_at_r"] == m["r_precision"] == 1.0 and m["nmi"] == pytest.approx(1.0)
    alone = retrieval_metrics(x[:3], np.arange(3))  # one point per class: nothing to retrieve, not 0
    assert alone["precision_at_1"] is None and alone["map_at_r"] is None
    assert alone["precision_at_1_per_class"] == [None] * 3
    with pytest.raises(ValueError, match="need"):
        retrieval_metrics(x, y[:5])

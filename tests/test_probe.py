"""The torch linear probe agrees with scikit-learn; the kNN accuracy with scikit-learn's classifier."""
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from engine.data import load_dataset
from engine.metrics.probe import knn_accuracy, linear_probe


@pytest.fixture(scope="module")
def pixels():
    d = load_dataset("fashion-mnist", train_size=3000, test_size=1000, seed=0)
    flat = lambda s: s.images.reshape(len(s), -1).astype(np.float32) / 255  # noqa: E731
    return flat(d.train), d.train.labels, flat(d.test), d.test.labels


def test_probe_matches_sklearn_logistic_regression(pixels):
    xtr, ytr, xte, yte = pixels
    ours = linear_probe(xtr, ytr, xte, yte, max_iter=200)
    scaler = StandardScaler().fit(xtr)
    ref = LogisticRegression(C=1.0, max_iter=200).fit(scaler.transform(xtr), ytr).score(scaler.transform(xte), yte)
    assert abs(ours - ref) <= 0.01


def test_knn_accuracy_matches_sklearn(pixels):
    xtr, ytr, xte, yte = pixels
    ours = knn_accuracy(xtr, ytr, xte, yte, k=1, metric="euclidean")
    ref = KNeighborsClassifier(1, algorithm="brute").fit(xtr, ytr).score(xte, yte)
    assert ours == pytest.approx(ref)


def test_probe_refuses_nan_embeddings(pixels):
    xtr, ytr, xte, yte = pixels
    bad = xtr.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        linear_probe(bad, ytr, xte, yte)

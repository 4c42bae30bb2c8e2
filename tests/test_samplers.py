"""The K x M sampler on the real digits labels and on a long-tailed Fashion-MNIST-like label set."""
import numpy as np
import pytest

from engine.data import load_dataset
from engine.data.samplers import k_by_m_batches, k_by_m_notes, k_by_m_steps


@pytest.fixture(scope="module")
def digits_labels():
    return load_dataset("digits").train.labels


def test_each_batch_has_k_classes_of_m_distinct_samples(digits_labels):
    batches = list(k_by_m_batches(digits_labels, 4, 8, np.random.default_rng(0)))
    assert len(batches) == k_by_m_steps(len(digits_labels), 4, 8) == 1200 // 32
    for rows in batches:
        assert len(rows) == 32
        classes, counts = np.unique(digits_labels[rows], return_counts=True)
        assert len(classes) == 4 and (counts == 8).all()
        assert len(np.unique(rows)) == 32  # every class has >= 8 rows: drawn without replacement


def test_classes_are_drawn_uniformly(digits_labels):
    seen = np.concatenate([digits_labels[r] for r in k_by_m_batches(digits_labels, 3, 4, np.random.default_rng(1),
                                                                     num_batches=2000)])
    share = np.bincount(seen, minlength=10) / len(seen)
    assert np.abs(share - 0.1).max() < 0.01


def test_same_seed_same_batches(digits_labels):
    a = list(k_by_m_batches(digits_labels, 5, 4, np.random.default_rng(7)))
    b = list(k_by_m_batches(digits_labels, 5, 4, np.random.default_rng(7)))
    assert all((x == y).all() for x, y in zip(a, b))


def test_small_class_sampled_with_replacement_and_said():
    labels = np.array([0] * 50 + [1] * 50 + [2] * 3 + [-1] * 10)
    notes = k_by_m_notes(np.bincount(labels[labels >= 0]), 3, 5, ["a", "b", "c"])
    assert len(notes) == 1 and "c: 3" in notes[0] and "with replacement" in notes[0]
    for rows in k_by_m_batches(labels, 3, 5, np.random.default_rng(0), num_batches=20):
        assert (labels[rows] >= 0).all()  # unlabelled rows never drawn
        assert (np.bincount(labels[rows]) == 5).all()
        assert len(np.unique(rows[labels[rows] == 2])) <= 3


def test_k_larger_than_classes_and_batch_larger_than_data():
    labels = np.array([0] * 3 + [1] * 3)
    notes = k_by_m_notes(np.bincount(labels), 4, 8)
    assert any("more than the 2 classes" in n for n in notes)
    assert any("larger than the 6 training samples" in n for n in notes)
    rows = list(k_by_m_batches(labels, 4, 8, np.random.default_rng(0)))
    assert len(rows) == 1 and len(rows[0]) == 16


def test_bad_settings():
    labels = np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match="--classes-per-batch"):
        next(k_by_m_batches(labels, 1, 2, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="--samples-per-class"):
        next(k_by_m_batches(labels, 2, 1, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="at least 2 classes"):
        next(k_by_m_batches(np.zeros(10, dtype=int), 2, 2, np.random.default_rng(0)))

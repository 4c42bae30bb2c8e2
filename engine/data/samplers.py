"""Batch samplers for online mining: K classes x M samples per batch (Hermans et al. 2017, "PK" batches).

Every batch holds K distinct classes and M images of each, so every anchor has M − 1 positives and
(K − 1)·M negatives in the batch: the triplet and pair losses always find something to mine.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np


def check_k_by_m(classes_per_batch: int, samples_per_class: int) -> None:
    if not isinstance(classes_per_batch, (int, np.integer)) or classes_per_batch < 2:
        raise ValueError(f"--classes-per-batch: {classes_per_batch!r} is not valid; allowed: a whole "
                         "number >= 2 (a triplet needs a negative class)")
    if not isinstance(samples_per_class, (int, np.integer)) or samples_per_class < 2:
        raise ValueError(f"--samples-per-class: {samples_per_class!r} is not valid; allowed: a whole "
                         "number >= 2 (a triplet needs a positive)")


def k_by_m_notes(class_counts, classes_per_batch: int, samples_per_class: int,
                 class_names: list[str] | None = None) -> list[str]:
    """What the sampler will do differently from plain K x M draws without replacement, in words
    a person reads in the run log (empty when nothing unusual happens)."""
    counts = np.asarray(class_counts)
    present = np.flatnonzero(counts > 0)
    notes = []
    if classes_per_batch > len(present):
        notes.append(f"--classes-per-batch {classes_per_batch} is more than the {len(present)} classes with "
                     f"training samples: each batch takes all {len(present)} classes "
                     f"({len(present) * samples_per_class} images)")
    small = [c for c in present if counts[c] < samples_per_class]
    if small:
        names = [class_names[c] if class_names and c < len(class_names) else str(c) for c in small]
        notes.append(f"{len(small)} class(es) have fewer than --samples-per-class {samples_per_class} "
                     f"training samples ({', '.join(f'{n}: {counts[c]}' for n, c in zip(names, small))}): "
                     "their samples are drawn with replacement, so a batch may repeat an image")
    n = int(counts.sum())
    if classes_per_batch * samples_per_class > n:
        notes.append(f"a batch of K x M = {classes_per_batch} x {samples_per_class} = "
                     f"{classes_per_batch * samples_per_class} is larger than the {n} training samples: "
                     "samples are drawn with replacement and one epoch is one batch")
    return notes


def k_by_m_steps(n_labelled: int, classes_per_batch: int, samples_per_class: int) -> int:
    """Batches per epoch: as many as make one pass over the data on average (at least one)."""
    return max(1, n_labelled // (classes_per_batch * samples_per_class))


def k_by_m_batches(labels: np.ndarray, classes_per_batch: int, samples_per_class: int,
                   rng: np.random.Generator, num_batches: int | None = None) -> Iterator[np.ndarray]:
    """Row indices of each batch of one epoch: K classes drawn without replacement, then M rows of
    each class without replacement (with replacement for a class that has fewer than M rows).

    Rows labelled −1 (unlabelled) are never drawn. When K exceeds the number of classes, every
    batch takes all classes. ``num_batches`` defaults to ``k_by_m_steps``. Each batch is grouped by
    class (M rows of the first class, then the second...), which the losses do not mind.
    """
    check_k_by_m(classes_per_batch, samples_per_class)
    labels = np.asarray(labels)
    classes = np.unique(labels[labels >= 0])
    if len(classes) < 2:
        raise ValueError(f"the K x M sampler needs at least 2 classes with training samples, found "
                         f"{len(classes)}: metric learning by triplets or pairs needs negatives")
    rows = {c: np.flatnonzero(labels == c) for c in classes}
    k = min(classes_per_batch, len(classes))
    m = samples_per_class
    n_labelled = sum(len(r) for r in rows.values())
    if num_batches is None:
        num_batches = k_by_m_steps(n_labelled, k, m)
    for _ in range(num_batches):
        chosen = rng.choice(classes, k, replace=False)
        yield np.concatenate([rng.choice(rows[c], m, replace=len(rows[c]) < m) for c in chosen])

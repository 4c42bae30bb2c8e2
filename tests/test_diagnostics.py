"""Diagnostics.evaluate end to end on real data with a real (fresh or briefly trained) convnet."""
import json
import math

import numpy as np
import pytest
import torch

from engine.augment import dataset_views
from engine.metrics.diagnostics import PROPERTIES, PROPERTY_HELP, Diagnostics
from engine.metrics.triplets import TripletDefinition, triplet_fractions

VIEWS = dataset_views(1, (8, 8), "digits")  # what a method without views of its own is measured under

REQUIRED = ("effective_rank", "l2_std", "alignment", "uniformity", "collapse", "mean_cosine", "dead_dims",
            "triplet_easy", "triplet_semi_hard", "triplet_hard", "silhouette", "nmi", "ari", "smoothness",
            "invariance", "sparsity", "trustworthiness", "neighbour_drift", "singular_values", "notes")


@pytest.fixture(scope="module")
def digits():
    from engine.data import load_dataset

    return load_dataset("digits", test_size=300)


def _encoder(ds, dim=32):
    from engine.encoders import build_encoder

    torch.manual_seed(0)
    return build_encoder("convnet", ds.channels, ds.image_size, dim, widths="16,32")


def _embed(enc, images):
    from engine.encoders import embed

    return embed(enc, torch.from_numpy(images)).numpy()


def _train_a_little(enc, ds, steps=30):
    """A few steps of cross-entropy through a linear head: the embeddings change, the map must follow."""
    head = torch.nn.Linear(enc.embedding_dim, 10)
    opt = torch.optim.Adam(list(enc.parameters()) + list(head.parameters()), lr=3e-3)
    x = torch.from_numpy(ds.train.images).float() / 255
    y = torch.from_numpy(ds.train.labels)
    enc.train()
    g = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: extra threads only fight the other jobs on the machine
    try:
        for _ in range(steps):
            idx = torch.randint(0, len(x), (128,), generator=g)
            loss = torch.nn.functional.cross_entropy(head(enc(x[idx])), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)


def test_evaluate_on_digits_returns_every_key_finite(digits):
    enc = _encoder(digits)
    diag = Diagnostics(augment=VIEWS, num_classes=10, labelled=True, projection="pca", property_points=128)
    images = torch.from_numpy(digits.test.images)
    labels = digits.test.labels
    metrics, coords = diag.evaluate(enc, images, labels, _embed(enc, digits.test.images), None, step=0)
    assert coords.shape == (300, 2) and np.isfinite(coords).all()
    for key in REQUIRED:
        assert key in metrics, key
    assert metrics["neighbour_drift"] is None  # no previous call yet
    assert metrics["collapse"] == "healthy"  # a fresh convnet is not collapsed
    assert len(metrics["singular_values"]) == 32
    json.dumps(metrics, allow_nan=False)  # JSON-able, NaN-free

    _train_a_little(enc, digits)
    metrics, coords2 = diag.evaluate(enc, images, labels, _embed(enc, digits.test.images), None, step=30)
    for key in REQUIRED:
        value = metrics[key]
        if key in ("collapse", "notes", "singular_values"):
            continue
        assert value is not None and math.isfinite(value), key
    assert 0 < metrics["neighbour_drift"] <= 1
    assert metrics["triplet_easy"] + metrics["triplet_semi_hard"] + metrics["triplet_hard"] == pytest.approx(1)
    assert 0.5 < metrics["trustworthiness"] <= 1
    assert metrics["nmi"] > 0.3  # 30 steps of supervision already group the digits
    assert "disentanglement" not in metrics  # digits have no known factors
    assert set(diag.arrays) >= {"kmeans_clusters", "hdbscan_clusters", "neighbour_overlap", "neighbour_drift"}
    assert all(len(v) == 300 for v in diag.arrays.values())
    assert set(diag.timings) >= {"collapse", "triplets", "clusters", "properties", "projection", "total"}


def test_help_covers_every_key_and_the_five_properties(digits):
    enc = _encoder(digits)
    diag = Diagnostics(augment=VIEWS, num_classes=10, labelled=True, projection="pca", property_points=64)
    metrics, _ = diag.evaluate(enc, torch.from_numpy(digits.test.images), digits.test.labels,
                               _embed(enc, digits.test.images), None, step=0)
    missing = [k for k in metrics if k not in PROPERTY_HELP and not k.endswith("_range")]
    assert missing == []
    assert set(PROPERTIES.values()) - {"disentanglement"} <= set(metrics)


def test_shapes_factors_give_disentanglement_and_per_factor_invariance():
    from engine.data.shapes import render, sample_factors

    factors = sample_factors(200, np.random.default_rng(0))
    images = render(factors)
    from engine.encoders import build_encoder

    torch.manual_seed(0)
    enc = build_encoder("convnet", 3, (32, 32), 16, widths="8,16")
    diag = Diagnostics(num_classes=3, labelled=True, projection="pca", property_points=64, factor_points=32,
                       augment=dataset_views(3, (32, 32), "shapes"))
    metrics, _ = diag.evaluate(enc, torch.from_numpy(images), factors["shape"], _embed(enc, images), factors, 0)
    for key in ("disentanglement", "mig", "invariance_hue", "invariance_x", "predictability_scale"):
        assert metrics[key] is not None and math.isfinite(metrics[key]), key
    assert 0 <= metrics["disentanglement"] <= 1
    assert [k for k in metrics if k not in PROPERTY_HELP and not k.endswith("_range")] == []


def test_nan_embeddings_name_the_step(digits):
    enc = _encoder(digits)
    z = _embed(enc, digits.test.images)
    z[7, 3] = np.nan
    diag = Diagnostics(augment=VIEWS, num_classes=10, labelled=True, projection="pca")
    with pytest.raises(ValueError, match="NaN/inf at step 42"):
        diag.evaluate(enc, torch.from_numpy(digits.test.images), digits.test.labels, z, None, step=42)


class Constant(torch.nn.Module):
    embedding_dim = 8

    def forward(self, x):
        return torch.ones(len(x), 8)


def test_constant_embeddings_are_complete_collapse_without_crash(digits):
    z = np.ones((300, 8), dtype=np.float32)
    diag = Diagnostics(augment=VIEWS, num_classes=10, labelled=True, projection="pca", property_points=32)
    metrics, coords = diag.evaluate(Constant(), torch.from_numpy(digits.test.images), digits.test.labels, z,
                                    None, step=5)
    assert metrics["collapse"] == "complete collapse"
    assert metrics["effective_rank"] == 0.0 and coords.shape == (300, 2)
    assert metrics["triplet_semi_hard"] == 1.0  # every distance is 0: every triplet sits at the margin
    json.dumps(metrics, allow_nan=False)


def test_single_class_and_unlabelled_say_so(digits):
    enc = _encoder(digits)
    keep = digits.test.labels == 3
    images, z = digits.test.images[keep], _embed(enc, digits.test.images[keep])
    diag = Diagnostics(augment=VIEWS, num_classes=10, labelled=True, projection="pca", property_points=16)
    metrics, _ = diag.evaluate(enc, torch.from_numpy(images), digits.test.labels[keep], z, None, step=1)
    assert metrics["triplet_hard"] is None and metrics["silhouette"] is None
    assert any("triplets undefined" in n for n in metrics["notes"])
    assert any("silhouette undefined" in n for n in metrics["notes"])

    diag = Diagnostics(augment=VIEWS, num_classes=0, labelled=False, projection="pca", property_points=16)
    metrics, _ = diag.evaluate(enc, torch.from_numpy(images), np.full(len(z), -1), z, None, step=1)
    assert metrics["triplet_easy"] is None and metrics["nmi"] is None
    assert any("unlabelled" in n for n in metrics["notes"])


def test_bad_configuration():
    with pytest.raises(ValueError, match="triplets"):
        Diagnostics(augment=VIEWS, num_classes=3, labelled=True, triplets=0.2)
    with pytest.raises(ValueError, match="property_points"):
        Diagnostics(augment=VIEWS, num_classes=3, labelled=True, property_points=1)
    with pytest.raises(ValueError, match="mds"):
        Diagnostics(augment=VIEWS, num_classes=3, labelled=True, projection="mds")


def test_fewer_points_than_clusters_or_neighbours(digits):
    enc = _encoder(digits)
    images, labels = digits.test.images[:6], digits.test.labels[:6]
    # k = the classes present among the labels (here at most 6) ...
    diag = Diagnostics(augment=VIEWS, num_classes=10, labelled=True, projection="pca", property_points=16)
    metrics, coords = diag.evaluate(enc, torch.from_numpy(images), labels, _embed(enc, images), None, step=2)
    assert coords.shape == (6, 2) and metrics["nmi"] is not None
    # ... and for unlabelled data the declared number of classes: 10 clusters of 6 points is undefined
    diag = Diagnostics(augment=VIEWS, num_classes=10, labelled=False, projection="pca", property_points=16)
    metrics, coords = diag.evaluate(enc, torch.from_numpy(images), labels, _embed(enc, images), None, step=2)
    assert metrics["kmeans_silhouette"] is None and any("clusters undefined" in n for n in metrics["notes"])
    assert metrics["trustworthiness"] is not None
    with pytest.raises(ValueError, match="at least 3"):
        diag.evaluate(enc, torch.from_numpy(images[:2]), labels[:2], _embed(enc, images[:2]), None, step=3)


@pytest.mark.parametrize("definition", [TripletDefinition(), TripletDefinition(margin=0.5),
                                        TripletDefinition(margin=0.05, distance="cosine", squared=False)])
def test_triplet_shares_count_with_the_given_definition_on_every_anchor(digits, definition):
    """The shares an evaluation reports are the triplet loss's own figure on those points: its
    distance, its margin, every anchor of the subset."""
    from engine.losses.metric import TripletLoss

    enc = _encoder(digits)
    _train_a_little(enc, digits, steps=60)  # past the fresh network's offset, where float32 rounding
    z = _embed(enc, digits.test.images)     # of the loss's expanded distances reorders near-ties
    diag = Diagnostics(augment=VIEWS, num_classes=10, labelled=True, projection="pca", property_points=16,
                       triplets=definition)
    metrics, _ = diag.evaluate(enc, torch.from_numpy(digits.test.images), digits.test.labels, z, None, step=1)
    assert metrics["triplet_margin"] == definition.margin
    assert metrics["triplet_definition"] == definition.describe()
    loss = TripletLoss(margin=definition.margin, distance=definition.distance, squared=definition.squared,
                       normalize=definition.normalize)
    loss(torch.from_numpy(z), torch.from_numpy(digits.test.labels))
    shares = (metrics["triplet_easy"], metrics["triplet_semi_hard"], metrics["triplet_hard"])
    assert shares == pytest.approx((loss.stats["triplet_easy"], loss.stats["triplet_semi_hard"],
                                    loss.stats["triplet_hard"]), abs=1e-6)
    assert min(shares) > 0  # a case with all three kinds
    limit = definition.difference_limit()
    assert metrics["triplet_histogram_range"] == [-limit, limit]


def test_cluster_ids_follow_the_previous_evaluation(digits):
    from engine.metrics.clusters import kmeans, match_ids

    enc = _encoder(digits)
    diag = Diagnostics(augment=VIEWS, num_classes=10, labelled=True, projection="pca", property_points=32,
                       with_hdbscan=False)
    images, labels = torch.from_numpy(digits.test.images), digits.test.labels
    z = _embed(enc, digits.test.images)
    diag.evaluate(enc, images, labels, z, None, step=0)
    first = diag.arrays["kmeans_clusters"].copy()
    diag.seed = 5  # k-means starts elsewhere and numbers the same clusters differently
    moved = z + np.random.default_rng(0).normal(scale=1e-4, size=z.shape).astype(np.float32)
    raw = kmeans(moved, 10, seed=5)
    metrics, _ = diag.evaluate(enc, images, labels, moved, None, step=10)
    # the same grouping as k-means' own, under the ids that keep the most points where they were
    assert np.array_equal(diag.arrays["kmeans_clusters"], match_ids(first, raw))
    assert (diag.arrays["kmeans_clusters"] == first).mean() > (raw == first).mean() + 0.3
    assert 0 < metrics["purity"] <= 1

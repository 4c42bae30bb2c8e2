"""Metric-learning losses against pytorch-metric-learning (same embeddings, labels and weights), the
triplet categories against a brute-force count, and the bad inputs."""
import itertools
import math

import numpy as np
import pytest
import torch

from engine.losses import LOSSES
from engine.losses.metric import (ArcFaceLoss, CenterLoss, CosFaceLoss, PairLoss, TripletLoss, adaptive_margins,
                                  auto_scale, parse_adaptive_margin, triplet_categories)

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
from pytorch_metric_learning import distances, miners, reducers  # noqa: E402


def batch(n_classes=5, per_class=6, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    # class means plus noise: a mix of easy, semi-hard and hard triplets
    emb = torch.randn(n_classes, dim, generator=g)[labels] * 0.6 + torch.randn(len(labels), dim, generator=g)
    return emb, labels


def test_registry_lists_the_losses():
    assert {"pair", "triplet", "center", "cosine", "arc"} <= set(LOSSES.names())


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("normalize", [True, False])
def test_triplet_batch_hard_equals_pml(squared, normalize):
    emb, labels = batch()
    margin = 0.3 if normalize else 2.0
    ours = TripletLoss(margin=margin, squared=squared, mining="batch-hard", normalize=normalize)(emb, labels)
    dist = distances.LpDistance(normalize_embeddings=normalize, power=2 if squared else 1)
    miner = miners.BatchHardMiner(distance=dist)
    # Hermans' batch-hard averages over all anchors; PML's default reducer averages the non-zero ones
    peer = pml_losses.TripletMarginLoss(margin=margin, distance=dist, reducer=reducers.MeanReducer())
    theirs = peer(emb, labels, miner(emb, labels))
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    assert ours.item() > 0


@pytest.mark.parametrize("squared", [True, False])
def test_triplet_batch_all_equals_pml(squared):
    emb, labels = batch(seed=1)
    margin = 0.4
    ours = TripletLoss(margin=margin, squared=squared, mining="batch-all", normalize=True)(emb, labels)
    dist = distances.LpDistance(normalize_embeddings=True, power=2 if squared else 1)
    miner = miners.TripletMarginMiner(margin=margin, type_of_triplets="all", distance=dist)
    theirs = pml_losses.TripletMarginLoss(margin=margin, distance=dist)(emb, labels, miner(emb, labels))
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


def test_triplet_cosine_distance_equals_pml_cosine_similarity():
    # 1 - cos as the distance: D_ap - D_an = cos_an - cos_ap, PML's inverted-similarity margin
    emb, labels = batch(seed=2)
    ours = TripletLoss(margin=0.2, distance="cosine", squared=False, mining="batch-all")(emb, labels)
    dist = distances.CosineSimilarity()
    miner = miners.TripletMarginMiner(margin=0.2, type_of_triplets="all", distance=dist)
    theirs = pml_losses.TripletMarginLoss(margin=0.2, distance=dist)(emb, labels, miner(emb, labels))
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


def brute_force_categories(d, labels, margin):
    easy = semi = hard = 0
    diffs = []
    n = len(labels)
    for a, p, q in itertools.product(range(n), repeat=3):
        if a != p and labels[a] == labels[p] and labels[q] != labels[a]:
            diff = d[a, q] - d[a, p]
            diffs.append(diff)
            if diff < 0:
                hard += 1
            elif diff >= margin:
                easy += 1
            else:
                semi += 1
    t = easy + semi + hard
    return easy / t, semi / t, hard / t, np.array(diffs)


def test_triplet_categories_match_brute_force():
    emb, labels = batch(n_classes=3, per_class=4, seed=3)
    loss = TripletLoss(margin=0.5, normalize=True, bins=10)
    loss(emb, labels)
    d = loss.pairwise(emb).detach().numpy()
    easy, semi, hard, diffs = brute_force_categories(d, labels.numpy(), 0.5)
    assert 0 < easy < 1 and 0 < semi < 1 and 0 < hard < 1  # the batch exercises all three
    s = loss.stats
    assert (s["triplet_easy"], s["triplet_semi_hard"], s["triplet_hard"]) == pytest.approx((easy, semi, hard))
    hist, _ = np.histogram(np.clip(diffs, -4, 4), bins=np.array(s["dan_dap_bins"]))
    assert s["dan_dap_hist"] == pytest.approx(hist / hist.sum(), abs=1e-6)
    assert s["margin"] == 0.5 and len(s["dan_dap_bins"]) == 11
    assert s["hinge_all"] == pytest.approx(np.maximum(0, 0.5 - diffs).mean(), rel=1e-5)
    # batch-hard mines one triplet per anchor; its hardest negatives are never easier than average
    assert s["mined_count"] == len(labels)
    assert s["mined_easy"] <= s["triplet_easy"]


def test_histogram_is_exact_on_larger_sets_and_in_chunks():
    from engine.losses.metric import _category_floats, _triplet_category_tensors

    emb, labels = batch(n_classes=6, per_class=20, seed=4)
    loss = TripletLoss(margin=0.3)
    d = loss.pairwise(emb).detach()
    exact = triplet_categories(d, labels, 0.3, loss.edges)
    assert exact["triplet_count"] == 120 * 19 * 100
    # every triplet's D_an - D_ap, enumerated with numpy
    dn, y = d.numpy(), labels.numpy()
    same = (y[:, None] == y[None]) & ~np.eye(len(y), dtype=bool)
    a, p = np.nonzero(same)
    diffs = (dn[a][:, None, :] - dn[a, p][:, None, None])[..., :].reshape(len(a), -1)
    diffs = diffs[(y[None, :] != y[a][:, None])]
    hist, _ = np.histogram(np.clip(diffs, loss.edges[0].item(), loss.edges[-1].item()), bins=loss.edges.numpy())
    assert exact["dan_dap_hist"] == pytest.approx(hist / hist.sum(), abs=1e-6)
    assert exact["hinge_all"] == pytest.approx(np.maximum(0, 0.3 - diffs).mean(), rel=1e-5)
    # a few anchors at a time (the evaluation subset's way) gives the same counts
    scalars, counts = _triplet_category_tensors(d, labels, 0.3, loss.edges, chunk_queries=5000)
    chunked = _category_floats(torch.cat([scalars, counts]).tolist(), len(counts))
    # pytest.approx compares flat dicts only (pytest 9): each figure on its own, the histogram as a list
    assert chunked.keys() == exact.keys()
    for name, value in exact.items():
        assert chunked[name] == pytest.approx(value), name


def test_semi_hard_mining_picks_closest_negative_beyond_positive():
    emb, labels = batch(n_classes=3, per_class=4, seed=5)
    loss = TripletLoss(margin=0.5, mining="semi-hard")
    value = loss(emb, labels)
    d = loss.pairwise(emb).detach().numpy()
    lab = labels.numpy()
    terms = []
    for a, p in itertools.product(range(len(lab)), repeat=2):
        if a != p and lab[a] == lab[p]:
            beyond = [d[a, q] for q in range(len(lab)) if lab[q] != lab[a] and d[a, q] > d[a, p]]
            if beyond:
                terms.append(max(0.0, d[a, p] - min(beyond) + 0.5))
    assert value.item() == pytest.approx(np.mean(terms), rel=1e-5)
    assert loss.stats["mined_hard"] == 0.0


def test_random_mining_draws_valid_triplets():
    emb, labels = batch(seed=6)
    loss = TripletLoss(margin=0.2, mining="random")
    value = loss(emb, labels)
    assert torch.isfinite(value) and loss.stats["mined_count"] == len(labels)


@pytest.mark.parametrize("mining", TripletLoss.MININGS)
def test_no_valid_triplet_gives_a_zero_loss_with_gradient(mining):
    emb = torch.randn(6, 8, requires_grad=True)
    loss = TripletLoss(mining=mining)
    for labels in (torch.zeros(6, dtype=torch.long), torch.arange(6)):  # one class; one sample per class
        value = loss(emb, labels)
        value.backward()
        assert value.item() == 0 and loss.stats["skipped"] == 1.0
        assert torch.isfinite(emb.grad).all() and (emb.grad == 0).all()


def test_pair_loss_equals_pml_contrastive():
    emb, labels = batch(seed=7)
    # margins in the units of these unnormalised embeddings (distances ~ 4 to 8), so both hinges act
    ours = PairLoss(margin=6.0, pos_margin=3.0, squared=False, normalize=False)(emb, labels)
    peer = pml_losses.ContrastiveLoss(pos_margin=3.0, neg_margin=6.0,
                                      distance=distances.LpDistance(normalize_embeddings=False))
    theirs = peer(emb, labels)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    assert ours.item() > 0


def test_pair_loss_squared_hinge_by_hand():
    emb, labels = batch(n_classes=3, per_class=3, seed=8)
    loss = PairLoss(margin=1.0, squared=True, reduction="mean")
    value = loss(emb, labels).item()
    x = torch.nn.functional.normalize(emb, dim=1)
    d = torch.cdist(x, x).numpy()
    lab = labels.numpy()
    pos = [d[i, j] ** 2 for i in range(9) for j in range(9) if i != j and lab[i] == lab[j]]
    neg = [max(0, 1.0 - d[i, j]) ** 2 for i in range(9) for j in range(9) if lab[i] != lab[j]]
    assert value == pytest.approx(np.mean(pos) + np.mean(neg), rel=1e-5)
    assert sum(loss.stats["pos_dist_hist"]) == pytest.approx(1.0)


def copy_weights(ours, theirs):
    with torch.no_grad():
        theirs.W.copy_(ours.weight.T)


@pytest.mark.parametrize("scale", [64.0, "auto"])
def test_cosface_equals_pml(scale):
    emb, labels = batch(seed=9)
    ours = CosFaceLoss(5, 16, margin=0.35, scale=scale)
    s = ours.scale
    theirs = pml_losses.CosFaceLoss(num_classes=5, embedding_size=16, margin=0.35, scale=s)
    copy_weights(ours, theirs)
    assert ours(emb, labels).item() == pytest.approx(theirs(emb, labels).item(), rel=1e-5)


def test_arcface_equals_pml_margin_in_degrees():
    emb, labels = batch(seed=10)
    ours = ArcFaceLoss(5, 16, margin=0.5, scale=30.0)
    theirs = pml_losses.ArcFaceLoss(num_classes=5, embedding_size=16, margin=math.degrees(0.5), scale=30.0)
    copy_weights(ours, theirs)
    assert ours(emb, labels).item() == pytest.approx(theirs(emb, labels).item(), rel=1e-5)


def test_arcface_fallback_past_pi_minus_m_equals_pml():
    # embeddings opposite to their class weight: α > π − m, the branch that keeps ψ decreasing
    ours = ArcFaceLoss(3, 4, margin=1.0, scale=10.0)
    labels = torch.tensor([0, 1, 2, 0])
    emb = -ours.weight.detach()[labels] + 0.05 * torch.randn(4, 4)
    theirs = pml_losses.ArcFaceLoss(num_classes=3, embedding_size=4, margin=math.degrees(1.0), scale=10.0)
    copy_weights(ours, theirs)
    assert ours(emb, labels).item() == pytest.approx(theirs(emb, labels).item(), rel=1e-5)


def test_subcenter_arcface_equals_pml():
    emb, labels = batch(seed=11)
    ours = ArcFaceLoss(5, 16, margin=0.4, scale=20.0, subcenters=3)
    theirs = pml_losses.SubCenterArcFaceLoss(num_classes=5, embedding_size=16, margin=math.degrees(0.4),
                                             scale=20.0, sub_centers=3)
    copy_weights(ours, theirs)
    assert ours(emb, labels).item() == pytest.approx(theirs(emb, labels).item(), rel=1e-5)
    assert ours.centers().shape == (5, 3, 16)


def test_adaptive_margins_give_each_class_its_margin():
    counts = [1000, 100, 10]
    m = adaptive_margins(counts, a=1.0, lam=0.25, b=0.1)
    assert m.tolist() == pytest.approx([1000 ** -0.25 + 0.1, 100 ** -0.25 + 0.1, 10 ** -0.25 + 0.1], rel=1e-6)
    assert m[2] > m[1] > m[0]  # rare classes get the wider margin
    emb, labels = batch(n_classes=3, per_class=4, seed=12)
    adaptive = ArcFaceLoss(3, 16, scale=10.0, class_margins=m)
    # the same as a fixed-margin loss where every sample's class had that margin
    for c in range(3):
        fixed = ArcFaceLoss(3, 16, margin=float(m[c]), scale=10.0)
        fixed.weight.data.copy_(adaptive.weight.data)
        rows = labels == c
        assert adaptive(emb[rows], labels[rows]).item() == pytest.approx(fixed(emb[rows], labels[rows]).item())


def test_auto_scale_and_bad_values():
    assert auto_scale(10) == pytest.approx(math.sqrt(2) * math.log(9))
    with pytest.raises(ValueError, match="--scale"):
        auto_scale(2)
    for make in (lambda: TripletLoss(margin=0), lambda: PairLoss(margin=-1), lambda: CosFaceLoss(4, 8, margin=0),
                 lambda: ArcFaceLoss(4, 8, margin=-0.1)):
        with pytest.raises(ValueError, match="--margin"):
            make()
    with pytest.raises(ValueError, match="--scale"):
        CosFaceLoss(4, 8, scale=0.0)
    with pytest.raises(ValueError, match="--mining"):
        TripletLoss(mining="hardest")
    with pytest.raises(ValueError, match="--distance"):
        TripletLoss(distance="manhattan")
    with pytest.raises(ValueError, match="--adaptive-margin"):
        adaptive_margins([], 1.0, 0.25, 0.1)
    with pytest.raises(ValueError, match="--adaptive-margin"):
        parse_adaptive_margin("1,2")
    assert parse_adaptive_margin("") is None
    assert parse_adaptive_margin("0.5, 0.25, 0.05") == (0.5, 0.25, 0.05)


def test_center_loss_formula():
    emb, labels = batch(seed=13)
    loss = CenterLoss(5, 16, center_weight=0.2)
    value = loss(emb, labels)
    ce = torch.nn.functional.cross_entropy(loss.classifier(emb), labels)
    pull = ((emb - loss.centers[labels]) ** 2).sum(1).mean()
    assert value.item() == pytest.approx((ce + 0.1 * pull).item(), rel=1e-6)
    value.backward()
    assert loss.centers.grad is not None and loss.centers.grad[labels].abs().sum() > 0

"""Triplet categories against a brute-force loop over every (anchor, positive, negative)."""
import itertools

import numpy as np
import pytest

from engine import neighbours
from engine.metrics import triplets as t


def _brute(z, labels, margin, metric="euclidean", squared=False):
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    if metric == "cosine":
        d = 1 - u @ u.T
    else:
        d = np.sqrt(((u[:, None] - u[None]) ** 2).sum(-1))
    d = d ** 2 if squared else d
    easy = semi = hard = 0
    n = len(z)
    for a, p, q in itertools.product(range(n), repeat=3):
        if a == p or labels[a] < 0 or labels[p] != labels[a] or labels[q] < 0 or labels[q] == labels[a]:
            continue
        if d[a, q] < d[a, p]:
            hard += 1
        elif d[a, q] < d[a, p] + margin:
            semi += 1
        else:
            easy += 1
    total = easy + semi + hard
    return easy / total, semi / total, hard / total, total


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("squared", [False, True])
def test_fractions_match_brute_force(metric, squared):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 40)
    labels[:3] = -1  # unlabelled points take part in no triplet
    z = rng.normal(size=(40, 5)) + 1.5 * np.eye(5)[np.maximum(labels, 0)]
    easy, semi, hard, total = _brute(z, labels, 0.3, metric, squared)
    definition = t.TripletDefinition(margin=0.3, distance=metric, squared=squared)
    got = t.triplet_fractions(z, labels, definition, chunk=7)
    assert got.triplets == total
    assert (got.easy, got.semi_hard, got.hard) == pytest.approx((easy, semi, hard), abs=1e-12)
    assert min(easy, semi, hard) > 0.05  # the case exercises all three categories


def test_read_only_points_are_prepared_once_and_a_writable_array_is_read_anew():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 3, 80)
    z = rng.normal(size=(80, 5)).astype(np.float32)
    frozen = z.copy()
    frozen.setflags(write=False)  # a snapshot's array: cannot change, so its prepared points are kept
    for anchor in (0, 1, 2):
        want = t.anchor_categories(z, labels, anchor)
        got = t.anchor_categories(frozen, labels, anchor)
        assert np.array_equal(got.codes, want.codes) and np.allclose(got.distances, want.distances, atol=1e-6)
        assert (got.hardest_positive, got.hardest_negative) == (want.hardest_positive, want.hardest_negative)
    assert any(entry[0] is frozen for entry in neighbours._SHARED)
    before = t.anchor_categories(z, labels, 0)
    z[:] = rng.normal(size=z.shape)  # a writable array may change between calls: never kept
    after = t.anchor_categories(z, labels, 0)
    assert not np.allclose(before.distances, after.distances)
    assert not any(entry[0] is z for entry in neighbours._SHARED)


def test_a_click_s_neighbours_and_triplet_categories_share_one_pass_and_one_copy(monkeypatch):
    """The neighbour index and the triplet categories of one read-only array read the same prepared
    rows, and the same product for the same point: a click on a 70k x 1280 map passed over its 358 MB
    twice. The categories stay those of a brute force over plain differences."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 300)
    frozen = (rng.normal(size=(300, 16)) + 3 * np.eye(16)[labels] + 50).astype(np.float32)  # a shared offset
    frozen.setflags(write=False)
    index = neighbours.NeighbourIndex(frozen, "cosine")
    products = []
    real = neighbours.CentredRows.ranking_of
    monkeypatch.setattr(neighbours.CentredRows, "ranking_of", lambda self, q: products.append(1) or real(self, q))
    index.query(17, 12)
    cats = t.anchor_categories(frozen, labels, 17)  # the inspector's, after the neighbours panel's
    t.anchor_categories(frozen, labels, 17)  # the map's triplet colouring
    assert len(products) == 1
    assert neighbours.centred_rows(frozen, True) is index._rows
    u = frozen / np.linalg.norm(frozen, axis=1, keepdims=True)
    d = np.linalg.norm(u.astype(np.float64) - u[17], axis=1) ** 2  # the default: squared, as the loss trains
    np.testing.assert_allclose(cats.distances, d, atol=1e-6)
    pos = (labels == labels[17]) & (np.arange(300) != 17)
    assert cats.hardest_positive == int(np.flatnonzero(pos)[np.argmax(d[pos])])


def test_sampled_anchors_estimate_the_fractions():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 600)
    z = rng.normal(size=(600, 8)) + np.eye(8)[labels]
    full = t.triplet_fractions(z, labels)
    part = t.triplet_fractions(z, labels, max_anchors=200)
    assert full.note is None and full.anchors == 600
    assert part.anchors == 200 and "200 random anchors" in part.note
    assert part.hard == pytest.approx(full.hard, abs=0.03)
    assert part.easy == pytest.approx(full.easy, abs=0.03)


def test_single_class_is_undefined_with_a_note():
    z = np.random.default_rng(2).normal(size=(20, 4))
    got = t.triplet_fractions(z, np.zeros(20, dtype=int))
    assert got.easy is None and got.hard is None and "undefined" in got.note
    assert t.margin_histogram(z, np.zeros(20, dtype=int)) is None


def test_constant_embeddings_are_all_semi_hard():
    got = t.triplet_fractions(np.ones((12, 3)), np.arange(12) % 3)
    assert (got.easy, got.semi_hard, got.hard) == (0.0, 1.0, 0.0)


def test_difficulty_puts_ties_where_the_loss_does():
    """A tie at D_an = D_ap still costs m (semi-hard); a tie at D_ap + m costs nothing (easy)."""
    m = 0.25
    d_an = np.array([0.4, 0.5, 0.6, 0.75, 0.9])
    codes = t.difficulty(0.5, d_an, m)
    assert [t.DIFFICULTY[int(c)] for c in codes] == ["hard", "semi-hard", "semi-hard", "easy", "easy"]
    loss = np.maximum(0.0, 0.5 - d_an + m)
    assert ((loss == 0) == (codes == t.EASY)).all() and ((d_an < 0.5) == (codes == t.HARD)).all()
    assert t.DIFFICULTY[int(t.difficulty(1.0, 0.2, m))] == "hard"  # plain numbers too


def test_anchor_categories_against_definitions():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 50)
    labels[5] = -1
    z = 0.5 * rng.normal(size=(50, 6)) + 2 * np.eye(6)[np.maximum(labels, 0)]
    anchor = int(np.flatnonzero(labels == labels[0])[0])
    m = 0.25
    got = t.anchor_categories(z, labels, anchor, t.TripletDefinition(margin=m, squared=False))
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    d = np.linalg.norm(u - u[anchor], axis=1)
    pos = [i for i in range(50) if i != anchor and labels[i] == labels[anchor]]
    neg = [i for i in range(50) if labels[i] >= 0 and labels[i] != labels[anchor]]
    ref = max(d[i] for i in pos)
    assert got.hardest_positive == pos[int(np.argmax(d[pos]))]
    assert got.hardest_negative == neg[int(np.argmin(d[neg]))]
    assert got.reference_distance == pytest.approx(ref, rel=1e-5)
    names = got.names
    assert names[anchor] == "anchor" and names[5] == "unlabelled"
    for i in pos:
        assert names[i] == "positive"
    for i in neg:
        want = "hard negative" if d[i] < ref else "semi-hard negative" if d[i] < ref + m else "easy negative"
        assert names[i] == want
    assert {"hard negative", "easy negative"} <= set(names)


def test_margin_histogram_counts_sampled_triplets():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, 80)
    z = rng.normal(size=(80, 4)) + 2 * np.eye(4)[labels]
    counts, edges = t.margin_histogram(z, labels, samples=20000, bins=40)
    assert counts.sum() == 20000 and len(edges) == 41 and edges[0] == -4 and edges[-1] == 4  # squared: D in [0, 4]
    plain = t.margin_histogram(z, labels, t.TripletDefinition(squared=False), samples=20000, bins=40)[1]
    assert plain[0] == -2 and plain[-1] == 2
    # the share of negative differences estimates the hard fraction
    hard_share = counts[edges[:-1] < 0].sum() / 20000
    assert hard_share == pytest.approx(t.triplet_fractions(z, labels).hard, abs=0.02)


def test_bad_arguments():
    z, y = np.zeros((4, 2)), np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match="distance"):
        t.TripletDefinition(distance="manhattan")
    with pytest.raises(ValueError, match="margin"):
        t.TripletDefinition(margin=-1)
    with pytest.raises(ValueError, match="margin"):
        t.TripletDefinition(margin="wide")
    with pytest.raises(ValueError, match="anchor"):
        t.anchor_categories(z, y, 9)
    with pytest.raises(ValueError, match="unlabelled"):
        t.anchor_categories(z, np.array([-1, 0, 1, 1]), 0)


def test_precomputed_distances_and_a_large_offset_give_the_same_fractions():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 3, 45)
    z = rng.normal(size=(45, 6)) + 1.5 * np.eye(6)[labels]
    # a shared offset 1000x the spread (a fresh convnet): normalised points differ by ~1e-3, where
    # 2 - 2 cos in float32 would lose the order of the distances
    shifted = (z + 1000.0).astype(np.float32)
    easy, semi, hard, total = _brute(shifted.astype(np.float64), labels, 0.0005)
    got = t.triplet_fractions(shifted, labels, t.TripletDefinition(margin=0.0005, squared=False))
    assert (got.easy, got.semi_hard, got.hard) == pytest.approx((easy, semi, hard), abs=1e-3)  # naive float32: off by 0.02
    assert min(easy, semi, hard) > 0.05
    d = t.distance_matrix(z)
    for squared in (False, True):  # the shared matrix holds plain distances; squared ones are derived
        definition = t.TripletDefinition(squared=squared)
        with_matrix = t.triplet_fractions(z, labels, definition, distances=d)
        alone = t.triplet_fractions(z, labels, definition)
        assert (with_matrix.easy, with_matrix.hard) == pytest.approx((alone.easy, alone.hard), abs=1e-12)


# the peer: pytorch-metric-learning's miner sorts every (a, p, n) of a set by D_an - D_ap against the
# margin (it puts exact ties the other way: D_an - D_ap = 0 is hard there, = m semi-hard; random
# float data have none)
PEER_DISTANCES = {  # our definition -> the peer's distance with the same D
    (False, "euclidean"): dict(cls="LpDistance", kw=dict(normalize_embeddings=True, p=2, power=1)),
    (True, "euclidean"): dict(cls="LpDistance", kw=dict(normalize_embeddings=True, p=2, power=2)),
    (False, "cosine"): dict(cls="CosineSimilarity", kw={}),  # ranks by similarity: the same order as 1 - cos
}


@pytest.mark.parametrize("squared, metric", list(PEER_DISTANCES))
def test_fractions_match_pytorch_metric_learning_miner(squared, metric):
    import torch
    from pytorch_metric_learning import distances, miners

    rng = np.random.default_rng(7)
    labels = rng.integers(0, 4, 90)
    z = (rng.normal(size=(90, 8)) + 1.2 * np.eye(8)[labels]).astype(np.float32)
    margin = 0.3
    peer = PEER_DISTANCES[(squared, metric)]
    distance = getattr(distances, peer["cls"])(**peer["kw"])
    counts = {}
    for kind in ("easy", "semihard", "hard"):
        miner = miners.TripletMarginMiner(margin=margin, type_of_triplets=kind, distance=distance)
        counts[kind] = len(miner(torch.from_numpy(z), torch.from_numpy(labels))[0])
    got = t.triplet_fractions(z, labels, t.TripletDefinition(margin=margin, distance=metric, squared=squared))
    total = sum(counts.values())
    assert got.triplets == total
    want = (counts["easy"] / total, counts["semihard"] / total, counts["hard"] / total)
    assert (got.easy, got.semi_hard, got.hard) == pytest.approx(want, abs=1e-9)
    assert min(want) > 0.05  # all three categories are exercised


@pytest.mark.parametrize("kw", [{}, {"margin": 0.5}, {"squared": False, "margin": 0.1},
                                {"distance": "cosine", "margin": 0.05}, {"normalize": False, "margin": 1.0}])
def test_fractions_equal_the_loss_s_own_shares_with_its_definition(kw):
    """The evaluation's shares and the triplet loss's shares on the same points are one figure."""
    import torch

    from engine.losses.metric import TripletLoss

    rng = np.random.default_rng(8)
    labels = rng.integers(0, 5, 120)
    z = (rng.normal(size=(120, 6)) + 1.5 * np.eye(6)[labels]).astype(np.float32)
    loss = TripletLoss(**kw)
    loss(torch.from_numpy(z), torch.from_numpy(labels))
    got = t.triplet_fractions(z, labels, loss.definition)
    assert got.triplets == loss.stats["triplet_count"]
    assert (got.easy, got.semi_hard, got.hard) == pytest.approx(
        (loss.stats["triplet_easy"], loss.stats["triplet_semi_hard"], loss.stats["triplet_hard"]), abs=1e-6)
    assert loss.definition.margin == loss.margin == kw.get("margin", t.TripletDefinition().margin)


def test_the_margin_s_default_is_written_once():
    """The loss, the method's parameter, the diagnostics and the window's inspector all take the
    definition's default."""
    import inspect

    from engine.losses.metric import TripletLoss
    from engine.methods import METHODS

    default = t.TripletDefinition().margin
    assert inspect.signature(TripletLoss).parameters["margin"].default == default
    assert next(p for p in METHODS.get("triplet").params if p.name == "margin").default == default
    assert METHODS.get("supervised").triplet_definition({}) == t.TripletDefinition()


def test_the_triplets_of_a_histogram_bin_are_the_ones_it_counted():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 300)
    z = rng.normal(size=(300, 16)) + 2.0 * np.eye(16)[labels]
    definition = t.TripletDefinition(margin=0.3)
    counts, edges = t.margin_histogram(z, labels, definition, bins=40, samples=5000, seed=7)
    sampled = t.sample_triplets(z, labels, definition, samples=5000, seed=7)
    per_bin = [int(t.in_bin(sampled.difference, edges, i).sum()) for i in range(40)]
    assert per_bin == counts.tolist() and sum(per_bin) == 5000
    busiest = int(np.argmax(counts))
    chosen = sampled.subset(t.in_bin(sampled.difference, edges, busiest))
    assert len(chosen) == counts[busiest]
    assert (labels[chosen.anchor] == labels[chosen.positive]).all() and (chosen.anchor != chosen.positive).all()
    assert (labels[chosen.anchor] != labels[chosen.negative]).all()
    # each one's distances, recomputed from the embeddings, put it in that bin
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    d_ap = ((u[chosen.anchor] - u[chosen.positive]) ** 2).sum(1)
    d_an = ((u[chosen.anchor] - u[chosen.negative]) ** 2).sum(1)
    np.testing.assert_allclose(chosen.d_an - chosen.d_ap, d_an - d_ap, atol=1e-5)
    assert ((d_an - d_ap >= edges[busiest] - 1e-5) & (d_an - d_ap <= edges[busiest + 1] + 1e-5)).all()
    with pytest.raises(ValueError, match="bin 40"):
        t.in_bin(sampled.difference, edges, 40)

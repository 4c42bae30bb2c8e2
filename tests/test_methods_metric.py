"""The five metric-learning methods on digits: each learns (its loss falls on a fixed batch), reports
what the window draws, and refuses or explains bad input."""
import numpy as np
import pytest
import torch

from engine.data import load_dataset
from engine.encoders import build_encoder
from engine.methods import METHODS, DataInfo
from engine.methods.metric import MetricMethod

NAMES = ("pair", "triplet", "center", "cosine", "arc")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def info_of(ds, counts=None):
    counts = tuple(int(c) for c in ds.class_counts()) if counts is None else counts
    return DataInfo(ds.num_classes, counts, ds.channels, ds.image_size, True, ds.name)


def build(name, ds, counts=None, **params):
    torch.manual_seed(0)
    encoder = build_encoder("convnet", ds.channels, ds.image_size, 32, widths="16,32")
    return METHODS.get(name)(encoder, info_of(ds, counts), **params)


def batch(ds, rows):
    return torch.from_numpy(ds.train.images[rows]).float() / 255, torch.from_numpy(ds.train.labels[rows])


def test_registered_as_metric_learning_with_documented_params():
    for name in NAMES:
        cls = METHODS.get(name)
        assert issubclass(cls, MetricMethod) and cls.family == "metric learning"
        assert cls.summary and cls.help and {"batch_size", "lr", "epochs"} <= set(cls.defaults)
        assert all(p.help.endswith(".") for p in cls.params)


@pytest.mark.parametrize("name", NAMES)
def test_trains_a_few_steps_and_its_loss_falls(digits, name):
    method = build(name, digits)
    groups = method.parameter_groups(3e-3)
    opt = torch.optim.Adam(groups)
    steps = method.steps_per_epoch(len(digits.train), 128)
    batches = list(method.batches(digits.train.labels, 128, np.random.default_rng(0)))
    assert len(batches) == steps
    fixed = batch(digits, batches[0])
    method.train()

    def loss_on_fixed():
        with torch.no_grad():
            return method.training_step(*fixed).loss.item()

    before = loss_on_fixed()
    for rows in batches[:20]:
        out = method.training_step(*batch(digits, rows))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    after = loss_on_fixed()
    assert np.isfinite(after) and after < 0.7 * before, (before, after)
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in out.terms.values())


def test_triplet_step_reports_categories_for_the_window(digits):
    method = build("triplet", digits, classes_per_batch=4, samples_per_class=4)
    rows = next(iter(method.batches(digits.train.labels, 16, np.random.default_rng(0))))
    stats = method.training_step(*batch(digits, rows)).stats
    assert stats["triplet_count"] == 16 * 3 * 12
    assert stats["triplet_easy"] + stats["triplet_semi_hard"] + stats["triplet_hard"] == pytest.approx(1)
    assert stats["mined_easy"] + stats["mined_semi_hard"] + stats["mined_hard"] == pytest.approx(1)
    assert stats["mined_count"] == 16 and stats["margin"] == 0.2 and stats["skipped"] == 0.0
    assert len(stats["dan_dap_hist"]) + 1 == len(stats["dan_dap_bins"])
    assert sum(stats["dan_dap_hist"]) == pytest.approx(1)
    assert method.retrieval_metric == "cosine"  # normalised embeddings: rank by angle


@pytest.mark.parametrize("params", [{}, {"margin": 0.5, "squared": False}, {"distance": "cosine", "margin": 0.1}])
def test_triplet_declares_its_loss_s_definition_for_the_diagnostics(digits, params):
    """The evaluation's triplet shares count with the margin and distance the loss trains with."""
    from engine.metrics.triplets import TripletDefinition

    method = build("triplet", digits, **params)
    definition = method.triplet_definition(method.hparams)
    assert definition == method.loss.definition
    assert definition.margin == params.get("margin", TripletDefinition().margin)
    assert definition.squared is params.get("squared", True) and definition.distance == params.get("distance", "euclidean")
    from engine.methods import Method

    assert type(method).evaluation_stats is Method.evaluation_stats  # no second count of the same triplets


def test_pair_reports_distance_histograms(digits):
    method = build("pair", digits, classes_per_batch=4, samples_per_class=4)
    rows = next(iter(method.batches(digits.train.labels, 16, np.random.default_rng(0))))
    out = method.training_step(*batch(digits, rows))
    assert set(out.terms) == {"positive", "negative"}
    assert sum(out.stats["pos_dist_hist"]) == pytest.approx(1) and sum(out.stats["neg_dist_hist"]) == pytest.approx(1)


@pytest.mark.parametrize("name", ["cosine", "arc", "center"])
def test_centres_and_angles_for_the_angle_view(digits, name):
    method = build(name, digits)
    centres = method.class_centers()
    assert centres.shape[0] == 10 and centres.shape[-1] == 32
    with torch.no_grad():
        emb = method.encoder.eval()(torch.from_numpy(digits.test.images[:100]).float() / 255)
    ev = method.evaluation_stats(emb, torch.from_numpy(digits.test.labels[:100]))
    angles = np.array(ev["center_angles"])
    assert angles.shape == (10, 10) and np.allclose(np.diag(angles), 0, atol=0.1)
    assert len(ev["point_center_angle"]) == 10


def test_center_learns_its_centres_at_their_own_rate(digits):
    method = build("center", digits, center_lr=0.3, center_weight=0.1)
    groups = method.parameter_groups(1e-3)
    assert groups[1]["params"] == [method.loss.centers] and groups[1]["lr"] == 0.3
    assert groups[1]["weight_decay"] == 0.0
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in method.parameters())


@pytest.mark.parametrize("name", ["triplet", "pair"])
def test_batch_without_valid_triplet_is_skipped_without_nan(digits, name):
    method = build(name, digits)
    one_class = np.flatnonzero(digits.train.labels == 3)[:8]
    one_each = np.array([np.flatnonzero(digits.train.labels == c)[0] for c in range(10)])
    for rows in (one_class, one_each):
        out = method.training_step(*batch(digits, rows))
        assert out.loss.item() == 0 and not out.loss.requires_grad  # the job skips backward and step
        assert out.stats["skipped"] == 1.0 and np.isfinite(out.loss.item())
    assert out.stats["skipped_steps"] == 2.0


def test_small_classes_and_batch_size_mismatch_are_noted(digits):
    counts = (100, 100, 3, 100, 100, 100, 100, 100, 100, 100)
    method = build("triplet", digits, counts=counts, classes_per_batch=4, samples_per_class=8)
    assert any("with replacement" in n and "2: 3" in n for n in method.notes)
    assert method.steps_per_epoch(1000, 128) == 1000 // 32
    assert any("batch size 128 (--batch-size) is not used" in n and "4 x 8 = 32" in n for n in method.notes)
    big = build("triplet", digits, counts=(3, 3, 0, 0, 0, 0, 0, 0, 0, 0), classes_per_batch=8, samples_per_class=8)
    assert any("more than the 2 classes" in n for n in big.notes)
    assert any("larger than the 6 training samples" in n for n in big.notes)


@pytest.mark.parametrize("name,params,flag", [
    ("triplet", {"margin": 0}, "--margin"),
    ("pair", {"margin": -1.0}, "--margin"),
    ("cosine", {"margin": 0.0}, "--margin"),
    ("arc", {"scale": 0}, "--scale"),
    ("cosine", {"scale": -2.0}, "--scale"),
    ("triplet", {"mining": "hardest"}, "--mining"),
    ("triplet", {"samples_per_class": 1}, "--samples-per-class"),
    ("arc", {"adaptive_margin": "1,2"}, "--adaptive-margin"),
])
def test_bad_values_name_their_flag(digits, name, params, flag):
    with pytest.raises(ValueError, match=flag):
        build(name, digits, **params)


def test_subcenters_and_adaptive_margins_need_class_counts(digits):
    counts = tuple([100] * 9 + [2])
    with pytest.raises(ValueError, match="--subcenters: 3 is more than the 2 training sample"):
        build("arc", digits, counts=counts, subcenters=3)
    assert build("arc", digits, counts=counts, subcenters=2).loss.subcenters == 2
    with pytest.raises(ValueError, match="--adaptive-margin needs the number of training samples"):
        build("arc", digits, counts=(), adaptive_margin="1,0.25,0.1")
    method = build("arc", digits, counts=counts, adaptive_margin="1,0.25,0.1")
    margins = method.loss.margins
    assert margins[9] > margins[0] and any("adaptive margins" in n for n in method.notes)


def test_scale_auto_is_noted(digits):
    method = build("cosine", digits)
    assert method.loss.scale == pytest.approx(np.sqrt(2) * np.log(9))
    assert any("--scale auto" in n for n in method.notes)
    assert build("cosine", digits, scale=20).loss.scale == 20.0


def test_training_job_logs_triplet_categories_and_retrieval(tmp_path):
    from engine.config import TrainConfig
    from engine.training import train

    config = TrainConfig(method="triplet", dataset="digits", epochs=2, batch_size=32, train_size=400,
                         diagnostics=False, final_eval=False, eval_every=0, out=str(tmp_path),
                         method_params={"classes_per_batch": 4, "samples_per_class": 8})
    events = list(train(config))
    steps = [e for e in events if e.kind == "step"]
    assert len(steps) == 2 * (400 // 32)
    easy = [s.stats["triplet_easy"] for s in steps]
    assert np.mean(easy[-3:]) > np.mean(easy[:3]) + 0.1  # the share of easy triplets rises as it learns
    hinge = [s.stats["hinge_all"] for s in steps]
    assert np.mean(hinge[-3:]) < 0.5 * np.mean(hinge[:3])  # and the batch-all hinge falls
    assert {"triplet_semi_hard", "triplet_hard", "mined_hard", "dan_dap_hist", "dan_dap_bins", "margin"} <= set(
        steps[-1].stats)
    final = [e for e in events if e.kind == "evaluation"][-1].metrics
    assert final["precision_at_1"] > 0.85 and 0 < final["map_at_r"] <= final["precision_at_1"]

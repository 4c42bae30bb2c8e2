"""Self-supervised methods: each trains and its loss falls; their inspectors; their bad inputs."""
import numpy as np
import pytest
import torch

from engine.color import lab_to_rgb, rgb_to_lab
from engine.data import load_dataset
from engine.encoders import build_encoder
from engine.methods import METHODS, DataInfo
from engine.params import resolve

SSL_FAMILIES = ("pretext task", "contrastive", "non-contrastive self-supervised", "collapse control")
SSL_METHODS = [name for name, cls in METHODS.items() if cls.family in SSL_FAMILIES]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def shapes():
    return load_dataset("shapes", train_size=256, test_size=64, seed=0)


def info_of(ds):
    return DataInfo(ds.num_classes, tuple(int(c) for c in ds.class_counts()), ds.channels, ds.image_size,
                    ds.labelled, ds.name)


def build(name, ds, embedding_dim=32, **given):
    cls = METHODS.get(name)
    encoder = build_encoder("convnet", ds.channels, ds.image_size, embedding_dim, widths="16,32")
    return cls(encoder, info_of(ds), **resolve(cls.params, given))


def batch(ds, n=64):
    return torch.from_numpy(ds.train.images[:n]).float() / 255


def test_every_family_is_there():
    assert {"rotation", "colorization", "inpainting", "simclr", "vicreg", "byol", "swav",
            "invariance-only"} <= set(SSL_METHODS)
    for name in SSL_METHODS:
        cls = METHODS.get(name)
        assert not cls.needs_labels and cls.summary and cls.help
        assert all(p.help for p in cls.params)


@pytest.mark.parametrize("name", SSL_METHODS)
def test_trains_and_loss_falls(name, digits, shapes):
    torch.manual_seed(0)
    ds = shapes if name == "colorization" else digits
    method = build(name, ds)
    method.train()
    x = batch(ds)
    optimiser = torch.optim.Adam(method.parameter_groups(2e-3))
    losses = []
    steps = 16
    for step in range(steps):
        out = method.training_step(x, torch.full((len(x),), -1))
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
        method.after_step(step + 1, steps)
        losses.append(out.loss.item())
        assert np.isfinite(losses[-1])
    assert np.mean(losses[-4:]) < np.mean(losses[:4]), losses
    for value in out.terms.values():
        assert np.isfinite(float(value))
    # the representation is the encoder's, as for every method
    assert method.encoder(x[:4]).shape == (4, 32)


# --- inspectors ---------------------------------------------------------------------------------

def test_simclr_views_and_logits(digits):
    method = build("simclr", digits, temperature=0.25)
    x = batch(digits, 6)
    v1, v2 = method.views(x, torch.Generator().manual_seed(0))
    assert v1.shape == x.shape and v2.shape == x.shape and not torch.equal(v1, v2)
    s = method.logits(x, torch.Generator().manual_seed(0))
    assert s.shape == (12, 12)
    assert torch.allclose(torch.diagonal(s), torch.full((12,), 4.0), atol=1e-4)  # cos = 1, over tau
    assert s.max() <= 4.0 + 1e-4 and method.training  # eval mode was temporary


def test_rotation_debug(digits):
    method = build("rotation", digits)
    x = batch(digits, 3)
    d = method.debug(x)
    assert d["input"].shape == (12, 8, 8) and d["input"].dtype == np.uint8
    assert list(d["target"]) == [0] * 3 + [90] * 3 + [180] * 3 + [270] * 3
    assert set(np.unique(d["prediction"])) <= {0, 90, 180, 270}
    np.testing.assert_array_equal(d["input"][3], np.rot90(digits.train.images[0, 0]))
    assert np.allclose(d["probabilities"].sum(1), 1, atol=1e-5)


def test_colorization_debug_and_decode(shapes):
    method = build("colorization", shapes)
    x = batch(shapes, 4)
    d = method.debug(x)
    assert d["input"].shape == d["prediction"].shape == d["target"].shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(d["target"], shapes.train.images[:4].transpose(0, 2, 3, 1))
    grey = d["input"].astype(int)
    assert np.abs(grey[..., 0] - grey[..., 1]).max() <= 1  # the encoder sees a grey image
    # decode() of a certain prediction of each pixel's own bin gives back its colour, up to the bin size
    lab = rgb_to_lab(x)
    bins = method.quantise(lab[:, 1:])
    logits = torch.nn.functional.one_hot(bins, len(method.palette)).permute(0, 3, 1, 2).float() * 50
    rgb = method.decode(logits, lab[:, :1])
    back = rgb_to_lab(rgb)
    assert (back[:, 1:] - lab[:, 1:]).abs().mean() < 5  # ab bins are 10 wide


def test_palette_is_the_in_gamut_ab_grid():
    from engine.methods.pretext import ab_palette

    palette, lookup = ab_palette()
    assert 200 < len(palette) < 330  # Zhang et al. count 313 on their gamut
    assert palette.abs().max() <= 110 and lookup.max() < len(palette)


def test_lab_round_trip_against_scikit_image():
    from skimage.color import rgb2lab

    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(2, 3, 8, 8, generator=g)
    lab = rgb_to_lab(rgb)
    ref = rgb2lab(rgb.permute(0, 2, 3, 1).numpy())
    assert np.abs(lab.permute(0, 2, 3, 1).numpy() - ref).max() < 0.05
    assert torch.allclose(lab_to_rgb(lab), rgb, atol=1e-4)


def test_inpainting_debug(digits):
    method = build("inpainting", digits, patch_size=3)
    x = batch(digits, 5)
    d = method.debug(x, seed=1)
    mask = d["mask"]
    assert mask.shape == (5, 8, 8) and (mask.sum((1, 2)) == 9).all()
    target = digits.train.images[:5, 0]
    np.testing.assert_array_equal(d["target"], target)
    np.testing.assert_array_equal(d["input"][~mask], target[~mask])  # only the patch is removed
    np.testing.assert_array_equal(d["prediction"][~mask], target[~mask])  # the rest is kept


def test_inpainting_adversarial_trains_the_discriminator(digits):
    torch.manual_seed(0)
    method = build("inpainting", digits, adversarial_weight=0.01)
    out = method.training_step(batch(digits, 16), None)
    assert {"l2", "adversarial", "discriminator"} <= set(out.terms)
    out.loss.backward()
    assert method.discriminator.net[0].weight.grad is not None
    assert method.decoder.fc[0].weight.grad is not None


def test_byol_teacher_follows_by_ema_without_gradient(digits):
    method = build("byol", digits, ema=0.9)
    out = method.training_step(batch(digits, 16), None)
    out.loss.backward()
    assert all(p.grad is None for p in method.teacher.parameters())
    before = [p.clone() for p in method.teacher.parameters()]
    with torch.no_grad():
        for p in method.encoder.parameters():
            p.add_(1.0)
    method.after_step(0, 100)  # rate 0.9 at the start
    t = next(iter(method.teacher.parameters()))
    o = next(iter(method.encoder.parameters()))
    assert torch.allclose(t, 0.9 * before[0] + 0.1 * o, atol=1e-6)
    method.after_step(100, 100)
    assert method.ema_rate == 1.0


def test_invariance_only_has_nothing_but_the_encoder(digits):
    """No projector (it could meet the loss by itself) and so no batch norm outside the encoder."""
    method = build("invariance-only", digits)
    assert {id(p) for p in method.parameters()} == {id(p) for p in method.encoder.parameters()}
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in build("simclr", digits).projector.modules())


# --- bad inputs -----------------------------------------------------------------------------------

def test_colorization_refuses_grey_data(digits):
    with pytest.raises(ValueError, match=r"dataset 'digits' has 1 channel.*allowed: colour images with 3 "
                                         r"channels \(painted-shapes, shapes, cifar10"):
        build("colorization", digits)


def test_patch_must_be_smaller_than_the_image(digits):
    with pytest.raises(ValueError, match=r"--patch-size: 8 is out of range; allowed: .*< 8.*8x8"):
        build("inpainting", digits, patch_size=8)
    with pytest.raises(ValueError, match=r"--patch-size"):
        build("inpainting", digits, patch_size=0)
    assert build("inpainting", digits).patch == 4  # 'auto': half the side


@pytest.mark.parametrize("name", ["simclr", "vicreg", "byol", "swav", "invariance-only"])
def test_batch_of_one_is_refused(name, digits):
    method = build(name, digits)
    with pytest.raises(ValueError, match=r"batch size: 1 is too small .*allowed: >= 2"):
        method.training_step(batch(digits, 1), None)


@pytest.mark.parametrize("value", [0, -0.1])
def test_temperature_must_be_positive(value):
    with pytest.raises(ValueError, match=rf"--temperature: {float(value)!r} is out of range; allowed: a number > 0"):
        resolve(METHODS.get("simclr").params, {"temperature": value})


@pytest.mark.parametrize("flag, value", [("jitter", 2.0), ("gray_p", 1.5), ("crop_min", 0.0), ("blur_p", -0.2)])
def test_augmentation_strengths_out_of_range(flag, value):
    with pytest.raises(ValueError, match=rf"--{flag.replace('_', '-')}: {value!r} is out of range; allowed: "):
        resolve(METHODS.get("simclr").params, {flag: value})


def test_rotation_needs_square_images():
    encoder = build_encoder("convnet", 1, (8, 12), 16, widths="8")
    with pytest.raises(ValueError, match=r"8x12 are not square"):
        METHODS.get("rotation")(encoder, DataInfo(0, (), 1, (8, 12), False, "folder:x"))


def test_invariance_only_collapses_completely_within_two_evaluations_on_digits(tmp_path):
    """The control, through the real training job with the method's defaults (neck none, lr 3e-2):
    healthy before training, every test image on one embedding by the second evaluation (the map: one
    blob), and the final linear probe at chance."""
    from engine import events as ev
    from engine.config import TrainConfig
    from engine.training import train

    events = list(train(TrainConfig(method="invariance-only", dataset="digits", epochs=2, out=str(tmp_path))))
    assert isinstance(events[-1], ev.Finished), events[-1]
    evaluations = [e.metrics for e in events if isinstance(e, ev.Evaluation)]
    assert evaluations[0]["collapse"] == "healthy" and evaluations[0]["effective_rank"] > 10
    assert evaluations[2]["collapse"] == "complete collapse", [m["collapse"] for m in evaluations]
    assert np.ptp([e for e in events if isinstance(e, ev.Snapshot)][-1].embeddings, axis=0).max() == 0
    assert evaluations[-1]["linear_probe_acc"] < 0.15  # chance: 0.10


@pytest.mark.parametrize("name", ["simclr", "vicreg", "byol", "swav"])
def test_the_methods_that_avoid_collapse_stay_healthy_on_digits(name, tmp_path):
    """The counterpart of the control: same data, every verdict healthy, at every step of the first
    epoch too, where the embeddings' spread dips under the fresh network's (the weights move faster
    than batch norm's running statistics follow) and must not read as near collapse."""
    from engine import events as ev
    from engine.config import TrainConfig
    from engine.training import train

    events = list(train(TrainConfig(method=name, dataset="digits", epochs=1, eval_every=0.2, out=str(tmp_path))))
    metrics = [e.metrics for e in events if isinstance(e, ev.Evaluation)]
    verdicts = [m["collapse"] for m in metrics]
    assert len(verdicts) >= 5 and set(verdicts) == {"healthy"}, verdicts
    spreads = [m["relative_spread"] for m in metrics]
    assert min(spreads) < spreads[0], spreads  # the dip is among the evaluations

"""Colourisation: Zhang et al.'s soft targets, the data it is meant for (painted-shapes), the grey
input its representation is evaluated on, and a short run on painted-shapes that learns."""
import numpy as np
import pytest
import torch

from engine import events as ev
from engine.color import rgb_to_lab
from engine.config import TrainConfig
from engine.data import load_dataset
from engine.data.shapes import PAINTED_HUES
from engine.encoders import build_encoder
from engine.methods import METHODS, DataInfo
from engine.params import resolve
from engine.training import train


@pytest.fixture(scope="module")
def painted():
    return load_dataset("painted-shapes", train_size=512, test_size=256, seed=0)


def colorization(ds, **given):
    cls = METHODS.get("colorization")
    info = DataInfo(ds.num_classes, tuple(int(c) for c in ds.class_counts()), ds.channels, ds.image_size,
                    ds.labelled, ds.name)
    encoder = build_encoder("convnet", ds.channels, ds.image_size, 32, widths="16,32")
    return cls(encoder, info, **resolve(cls.params, given))


def test_soft_targets_sum_to_one_and_centre_on_the_true_bin(painted):
    method = colorization(painted)
    ab = rgb_to_lab(torch.from_numpy(painted.train.images[:8]).float() / 255)[:, 1:]
    bins, weights = method.soft_targets(ab)
    assert bins.shape == weights.shape == (8, 5, 32, 32)
    torch.testing.assert_close(weights.sum(1), torch.ones(8, 32, 32))
    assert (weights >= 0).all() and (weights[:, :1] >= weights).all()  # the nearest bin weighs most
    assert torch.equal(bins[:, 0], method.quantise(ab))  # ... and it is the hard target's bin
    # the weights are a Gaussian of sigma 5 of the distance from the pixel's colour to each bin
    pixel = ab[0, :, 10, 10]
    d2 = ((method.palette[bins[0, :, 10, 10]] - pixel) ** 2).sum(1)
    expected = torch.exp(-d2 / 50)
    torch.testing.assert_close(weights[0, :, 10, 10], expected / expected.sum())
    # a colour exactly on a bin's centre keeps most of its weight there, the rest on its 4 neighbours
    centre = method.palette[100].view(1, 2, 1, 1)
    bins, weights = method.soft_targets(centre)
    assert bins[0, 0, 0, 0] == 100 and 0.5 < weights[0, 0, 0, 0] < 0.7


def test_hard_targets_are_one_switch_away(painted):
    x = torch.from_numpy(painted.train.images[:16]).float() / 255
    torch.manual_seed(0)
    soft = colorization(painted).training_step(x, torch.zeros(16))
    torch.manual_seed(0)
    hard = colorization(painted, targets="hard").training_step(x, torch.zeros(16))
    assert soft.loss.item() > hard.loss.item() > 0  # the soft target's entropy adds to the loss
    with pytest.raises(ValueError, match="--targets"):
        colorization(painted, targets="fuzzy")


def test_painted_shapes_colour_follows_the_shape_and_grey_does_not_tell_it():
    ds = load_dataset("painted-shapes", seed=0)
    lab = rgb_to_lab(torch.from_numpy(ds.train.images[:600]).float() / 255)
    labels = ds.train.labels[:600]
    inside = lab[:, 0] > 20  # the shape's pixels (the background is black)
    hue = torch.atan2(lab[:, 2], lab[:, 1]) / (2 * np.pi) % 1
    lightness = []
    for c, centre in enumerate(PAINTED_HUES):
        rows = labels == c
        h = hue[rows][inside[rows]]
        distance = torch.minimum((h - centre).abs(), 1 - (h - centre).abs())
        assert distance.max() < 20 / 360  # the class's hue, jittered by 15 degrees at most
        lightness.append(float(lab[rows, 0][inside[rows]].mean()))
    assert max(lightness) - min(lightness) < 3  # lightness is drawn apart from the class
    assert set(ds.train.factors) == {"shape", "scale", "rotation", "x", "y", "hue", "lightness"}
    # the same seed draws the same images; shapes itself is unchanged beside it
    np.testing.assert_array_equal(ds.train.images[:5], load_dataset("painted-shapes", seed=0).train.images[:5])
    assert load_dataset("shapes", seed=0).name == "shapes"


def test_the_representation_is_of_the_grey_image(painted):
    method = colorization(painted)
    x = torch.from_numpy(painted.train.images[:4]).float() / 255
    view = method.encoder_input(x)
    assert torch.allclose(view[:, 0], view[:, 1], atol=1e-4) and torch.allclose(view[:, 1], view[:, 2], atol=1e-4)
    method.eval()
    with torch.no_grad():
        torch.testing.assert_close(method.representation()(x), method.encoder(view))


def test_colorization_learns_on_painted_shapes(tmp_path):
    """A short run: the loss falls, and the grey images' representation beats the same encoder at
    random initialisation on the same grey images."""
    events = list(train(TrainConfig(method="colorization", dataset="painted-shapes", train_size=512,
                                    test_size=256, epochs=2, batch_size=32, eval_every=0, diagnostics=False,
                                    out=str(tmp_path))))
    assert isinstance(events[-1], ev.Finished), events[-1]
    losses = [e.losses["loss"] for e in events if isinstance(e, ev.StepReport)]
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4])
    summary = events[-1].summary
    assert summary["knn_acc"] > summary["baseline_knn_acc"]
    assert summary["linear_probe_acc"] > summary["baseline_linear_probe_acc"]

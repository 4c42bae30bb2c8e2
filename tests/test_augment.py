"""The batched SimCLR augmentation: per-sample draws, shapes and ranges, its parts against
torchvision, and its bad settings."""
import numpy as np
import pytest
import torch

from engine.augment import AUGMENT_PARAMS, SimCLRAugment, augment_from_params, hsv_to_rgb, shift_hue
from engine.color import rgb_to_hsv
from engine.data import load_dataset
from engine.params import resolve


@pytest.fixture(scope="module")
def shapes_batch():
    ds = load_dataset("shapes", train_size=64, test_size=10, seed=0)
    return torch.from_numpy(ds.train.images[:32]).float() / 255


@pytest.fixture(scope="module")
def digits_batch():
    ds = load_dataset("digits", seed=0)
    return torch.from_numpy(ds.train.images[:64]).float() / 255


def test_shapes_ranges_and_per_sample_draws(shapes_batch):
    aug = SimCLRAugment(3, 32)
    g = torch.Generator().manual_seed(1)
    out = aug(shapes_batch, g)
    assert out.shape == shapes_batch.shape and out.dtype == shapes_batch.dtype
    assert out.min() >= 0 and out.max() <= 1
    p = aug.sample(256, generator=torch.Generator().manual_seed(2))
    # every sample draws its own crop; about half flip, ~80 % jitter, ~20 % grey, ~50 % blur
    assert torch.unique(p.crop, dim=0).shape[0] == 256
    assert 0.35 < p.flip.float().mean() < 0.65
    assert 0.7 < (p.brightness != 1).float().mean() < 0.9
    assert 0.1 < p.gray.float().mean() < 0.3
    assert 0.4 < (p.sigma > 0).float().mean() < 0.6
    area = p.crop[:, 2] * p.crop[:, 3]
    assert area.min() >= 0.2 - 1e-6 and area.max() <= 1 + 1e-6
    # the crop stays inside the image
    assert (p.crop[:, 0] - p.crop[:, 2] / 2 >= -1e-6).all() and (p.crop[:, 0] + p.crop[:, 2] / 2 <= 1 + 1e-6).all()
    # the same image repeated gives different views
    same = shapes_batch[:1].expand(8, -1, -1, -1)
    views = aug(same, g)
    assert torch.cdist(views.flatten(1), views.flatten(1)).triu(1)[torch.triu_indices(8, 8, 1).unbind()].min() > 0


def test_generator_makes_views_reproducible(digits_batch):
    aug = SimCLRAugment(1, 8, crop_scale=(0.3, 1.0), flip=False)
    a = aug(digits_batch, torch.Generator().manual_seed(5))
    b = aug(digits_batch, torch.Generator().manual_seed(5))
    c = aug(digits_batch, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_grey_data_gets_brightness_and_contrast_but_no_colour_operations(digits_batch):
    aug = SimCLRAugment(1, 8, jitter=0.4, jitter_p=0.8)
    p = aug.sample(2000, generator=torch.Generator().manual_seed(0))
    assert (p.saturation == 1).all() and (p.hue == 0).all() and not p.gray.any()
    jittered = p.brightness != 1
    assert 0.75 < jittered.float().mean() < 0.85  # jitter_p
    assert p.brightness.min() >= 0.6 and p.brightness.max() <= 1.4
    assert ((p.contrast != 1) == jittered).all()
    out = aug(digits_batch)
    assert out.shape == digits_batch.shape and 0 <= out.min() and out.max() <= 1
    # only brightness: a grey image is scaled (then clipped), nothing else moves
    still = SimCLRAugment(1, 8, jitter=0.4, jitter_p=1.0, blur_p=0, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                          flip=False)
    q = still.sample(len(digits_batch), generator=torch.Generator().manual_seed(1))
    q = type(q)(**{**q.__dict__, "contrast": torch.ones_like(q.contrast)})
    assert torch.allclose(still.apply(digits_batch, q),
                          (digits_batch * q.brightness.view(-1, 1, 1, 1)).clamp(0, 1), atol=1e-5)


def test_identity_draws_leave_images_unchanged(shapes_batch):
    aug = SimCLRAugment(3, 32, jitter_p=0, gray_p=0, blur_p=0, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                        flip=False)
    assert torch.allclose(aug(shapes_batch), shapes_batch, atol=1e-5)


def test_flip_and_crop_match_torch_reference(shapes_batch):
    aug = SimCLRAugment(3, 32, jitter_p=0, gray_p=0, blur_p=0)
    p = aug.sample(len(shapes_batch), generator=torch.Generator().manual_seed(0))
    full = torch.tensor([[0.5, 0.5, 1.0, 1.0]]).expand(len(p.crop), 4)
    flipped = aug._crop_flip(shapes_batch, full, torch.ones(len(p.crop), dtype=torch.bool))
    assert torch.allclose(flipped, shapes_batch.flip(-1), atol=1e-5)
    # a centred half-size crop equals bilinear upsampling of the centre (align_corners=False)
    half = torch.tensor([[0.5, 0.5, 0.5, 0.5]]).expand(len(p.crop), 4)
    crop = aug._crop_flip(shapes_batch, half, torch.zeros(len(p.crop), dtype=torch.bool))
    ref = torch.nn.functional.interpolate(shapes_batch[:, :, 8:24, 8:24], size=32, mode="bilinear",
                                          align_corners=False)
    assert torch.allclose(crop[:, :, 2:-2, 2:-2], ref[:, :, 2:-2, 2:-2], atol=1e-5)


def test_jitter_matches_torchvision_per_sample(shapes_batch):
    """Our batched brightness/contrast/saturation/hue equals torchvision's functional ops, sample by sample."""
    from torchvision.transforms.v2 import functional as TF

    aug = SimCLRAugment(3, 32, jitter=0.8, jitter_p=1.0)
    p = aug.sample(len(shapes_batch), generator=torch.Generator().manual_seed(3))
    ours = aug._jitter(shapes_batch, p)
    for i in range(len(shapes_batch)):
        x = shapes_batch[i]
        x = TF.adjust_brightness(x, float(p.brightness[i]))
        x = TF.adjust_contrast(x, float(p.contrast[i]))
        x = TF.adjust_saturation(x, float(p.saturation[i]))
        x = TF.adjust_hue(x, float(p.hue[i]))
        assert torch.allclose(ours[i], x, atol=2e-3), i


def test_blur_matches_torchvision(digits_batch):
    from torchvision.transforms.v2 import functional as TF

    aug = SimCLRAugment(1, 8, blur_p=1.0, blur_sigma=(0.5, 1.5))
    sigma = torch.linspace(0.5, 1.5, len(digits_batch))
    ours = aug._blur(digits_batch, sigma)
    k = 2 * aug.blur_radius + 1
    for i in range(0, len(digits_batch), 7):
        ref = TF.gaussian_blur(digits_batch[i], [k, k], [float(sigma[i])] * 2)
        assert torch.allclose(ours[i], ref, atol=1e-5), i


def test_hsv_round_trip():
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5)


def test_fused_hue_shift_equals_the_two_conversions():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(16, 3, 8, 8, generator=g)
    x[0] = 0.5  # grey pixels have no hue: unchanged
    shift = torch.rand(16, 1, 1, 1, generator=g) - 0.5
    hsv = rgb_to_hsv(x)
    ref = hsv_to_rgb(torch.cat([(hsv[:, :1] + shift) % 1.0, hsv[:, 1:]], 1))
    assert torch.allclose(shift_hue(x, shift), ref, atol=1e-5)
    assert torch.allclose(shift_hue(x, shift)[0], x[0])


def test_torchvision_equivalent_runs(shapes_batch):
    pipeline = SimCLRAugment(3, 32).torchvision_equivalent()
    out = pipeline(shapes_batch[0])
    assert out.shape == shapes_batch[0].shape


@pytest.mark.parametrize("kwargs, word", [
    ({"jitter": 1.5}, "jitter: 1.5"), ({"jitter": -0.1}, "jitter"), ({"gray_p": 2}, "gray_p: 2"),
    ({"blur_p": -1}, "blur_p"), ({"crop_scale": (0.0, 1.0)}, "crop_scale (low): 0.0"),
    ({"crop_scale": (0.5, 0.3)}, "crop_scale (high): 0.3"), ({"jitter_p": float("nan")}, "jitter_p"),
])
def test_bad_strengths_name_value_and_range(kwargs, word):
    with pytest.raises(ValueError, match="allowed") as info:
        SimCLRAugment(3, 32, **kwargs)
    assert word in str(info.value)


def test_params_reject_out_of_range_strengths():
    with pytest.raises(ValueError, match=r"--jitter: 3\.0 is out of range; allowed: a number >= 0\.0 and <= 1\.0"):
        resolve(AUGMENT_PARAMS, {"jitter": 3})
    with pytest.raises(ValueError, match="--crop-min"):
        resolve(AUGMENT_PARAMS, {"crop_min": 0})
    aug = augment_from_params(3, (32, 32), resolve(AUGMENT_PARAMS, {"jitter": 0.5}))
    assert aug.jitter == 0.5 and np.isclose(aug.crop_scale[0], 0.3)


def test_wrong_channel_count_is_refused(digits_batch):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        SimCLRAugment(3, 8)(digits_batch)


def test_rotation_is_composed_into_the_affine_matrix(digits_batch):
    """A quarter turn through the per-sample affine grid equals torch.rot90, pixel for pixel."""
    import math

    n = len(digits_batch)
    full = torch.tensor([[0.5, 0.5, 1.0, 1.0]]).expand(n, 4)
    turned = SimCLRAugment._crop_flip(digits_batch, full, torch.zeros(n, dtype=torch.bool),
                                      torch.full((n,), math.pi / 2))
    assert torch.allclose(turned, torch.rot90(digits_batch, 1, (2, 3)), atol=1e-5)
    p = SimCLRAugment(1, 8, rotate=20).sample(500, generator=torch.Generator().manual_seed(0))
    assert p.angle.abs().max() <= math.radians(20) and p.angle.std() > math.radians(5)
    with pytest.raises(ValueError, match=r"rotate: 200 is out of range"):
        SimCLRAugment(1, 8, rotate=200)

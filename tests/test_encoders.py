"""Each encoder runs on each input size and returns (B, embedding_dim)."""
import pytest
import torch

from engine.encoders import ENCODERS, build_encoder

SIZES = [(1, (8, 8)), (1, (28, 28)), (3, (32, 32)), (3, (96, 96))]
FAST = ["convnet", "pixels", "color"]


@pytest.mark.parametrize("name", FAST)
@pytest.mark.parametrize("channels, size", SIZES)
def test_forward_on_each_input_size(name, channels, size):
    enc = build_encoder(name, channels, size, embedding_dim=32).eval()
    out = enc(torch.rand(3, channels, *size))
    assert out.shape == (3, enc.embedding_dim)
    assert torch.isfinite(out).all()


def test_convnet_depth_and_width_are_configurable():
    enc = build_encoder("convnet", 1, (28, 28), 16, widths="8,16", convs_per_block=1)
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16]
    assert isinstance(enc.neck[2], torch.nn.PReLU)  # neck: dense + batch norm + PReLU


def test_without_a_neck_the_embedding_is_the_pooled_features():
    torch.manual_seed(0)
    enc = build_encoder("convnet", 1, (28, 28), 16, widths="8,16", neck="none").eval()
    x = torch.rand(4, 1, 28, 28)
    pooled = enc.backbone(x).mean((2, 3))  # global average pooling, by hand
    torch.testing.assert_close(enc(x), pooled)
    assert enc.embedding_dim == 16 and not isinstance(enc.neck, torch.nn.Sequential)
    # the size of the embedding is the last width: another one is refused with the fix
    with pytest.raises(ValueError, match=r"--embedding-dim: 32 does not fit --neck none; allowed: 16.*--neck dense"):
        build_encoder("convnet", 1, (28, 28), 32, widths="8,16", neck="none")


def test_bad_encoder_settings_name_the_field():
    with pytest.raises(ValueError, match="--widths"):
        build_encoder("convnet", 1, (8, 8), 16, widths="a,b")
    with pytest.raises(ValueError, match="--convs-per-block"):
        build_encoder("convnet", 1, (8, 8), 16, convs_per_block=0)
    with pytest.raises(ValueError, match="unknown encoder"):
        build_encoder("nope", 1, (8, 8), 16)


def test_color_encoder_sees_colour_not_shape():
    red, blue = torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16)
    red[:, 0, 4:12, 4:12] = 1
    blue[:, 2, 2:6, 2:6] = 1
    for space in ("rgb", "hsv", "lab"):
        enc = build_encoder("color", 3, (16, 16), 1, space=space, mode="dominant")
        # dominant colour of both is the black background; the histograms differ by the patch
        hist = build_encoder("color", 3, (16, 16), 1, space=space)
        assert torch.allclose(hist(red).sum(1), torch.ones(1))
        assert not torch.allclose(hist(red), hist(blue))
        assert torch.allclose(enc(red), enc(blue))


def test_every_registered_encoder_is_tested_somewhere():
    assert set(FAST) <= set(ENCODERS.names())

"""Encoders a user has (engine/encoders/external.py): TorchScript, ONNX, timm with a state dict or its
hub, a Python factory, a pickled model (trusted only), an export, a run; and each bad input's message.
No network: state dicts are made here, and the hub is a cache laid out here."""
from __future__ import annotations

import argparse
import sys
import textwrap
import warnings

import pytest
import torch
from torch import nn

from engine.encoders import build_encoder
from engine.encoders import external


@pytest.fixture(scope="module")
def tiny_resnet():
    """timm's smallest ResNet, random weights, and its state dict as safetensors and .pt files."""
    import timm

    torch.manual_seed(0)
    return timm.create_model("test_resnet", pretrained=False).eval()


def _features(model, x):
    return model.forward_head(model.forward_features(x), pre_logits=True)


def _write_factory(tmp_path, monkeypatch, body: str) -> str:
    (tmp_path / "user_models.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("user_models", None)
    return "user_models"


class FixedInput(nn.Module):
    """Needs exactly 3 x 32 x 32 images: a Linear after flattening."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 32 * 32, 10)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


# ---------------------------------------------------------------- timm and state dicts

@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_timm_state_dict_round_trips(tmp_path, tiny_resnet, suffix):
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(tiny_resnet.state_dict(), str(path))
    else:
        torch.save({"state_dict": tiny_resnet.state_dict(), "epoch": 3}, path)  # a checkpoint, nested
    encoder = build_encoder("timm:test_resnet", 3, (32, 32), 128, weights=str(path), normalize="none",
                            input_size="32").eval()
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), _features(tiny_resnet, x))
    assert encoder.embedding_dim == tiny_resnet.num_features
    assert any("fc.weight" in n and "classifier" in n for n in encoder.notes)  # said, not silently dropped


def test_timm_reads_its_input_from_the_pretrained_cfg(tmp_path, tiny_resnet):
    from safetensors.torch import save_file

    save_file(tiny_resnet.state_dict(), str(tmp_path / "w.safetensors"))
    encoder = build_encoder("timm:test_resnet", 1, (28, 28), 128, weights=str(tmp_path / "w.safetensors"))
    assert encoder.adapter.size == (160, 160) and encoder.adapter.model_channels == 3  # test_resnet's cfg
    assert encoder.adapter.mean.flatten().tolist() == [0.5, 0.5, 0.5]
    notes = " ".join(encoder.notes)
    assert "resized from 28x28 to the model's 160x160" in notes and "repeated to 3 channels" in notes
    x = torch.rand(2, 1, 28, 28)
    by_hand = torch.nn.functional.interpolate(x, size=(160, 160), mode="bilinear", antialias=True)
    with torch.no_grad():
        torch.testing.assert_close(encoder.eval()(x), _features(tiny_resnet, (by_hand.expand(-1, 3, -1, -1) - 0.5) / 0.5))


def test_timm_vit_at_another_input_size(tmp_path):
    encoder = build_encoder("timm:test_vit", 3, (32, 32), 128, random_init=True, input_size="32")
    assert encoder.adapter.size == (32, 32)
    assert encoder(torch.rand(3, 3, 32, 32)).shape == (3, encoder.embedding_dim)


def test_a_state_dict_that_does_not_fit_names_the_keys(tmp_path):
    import timm

    other = timm.create_model("test_vit", pretrained=False)
    path = tmp_path / "vit.pt"
    torch.save(other.state_dict(), path)
    with pytest.raises(ValueError) as error:
        build_encoder("timm:test_resnet", 3, (32, 32), 128, weights=str(path))
    message = str(error.value)
    assert str(path) in message and "does not fit timm's test_resnet" in message
    assert "75 missing key(s): bn1.bias" in message and "conv1.0.weight" in message
    assert "80 unexpected key(s): " in message and "blocks.0.attn.qkv.weight" in message
    assert " more" in message  # a few of each, not hundreds


def test_a_whole_file_prefix_is_taken_off(tmp_path, tiny_resnet):
    path = tmp_path / "ddp.pt"
    torch.save({f"module.{k}": v for k, v in tiny_resnet.state_dict().items()}, path)
    encoder = build_encoder("timm:test_resnet", 3, (32, 32), 128, weights=str(path), normalize="none",
                            input_size="32").eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), _features(tiny_resnet, x))
    assert any("prefix 'module.'" in n for n in encoder.notes)


def test_a_pickle_is_refused_unless_trusted(tmp_path, tiny_resnet):
    path = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": tiny_resnet.state_dict(), "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(ValueError) as error:
        build_encoder("timm:test_resnet", 3, (32, 32), 128, weights=str(path))
    message = str(error.value)
    assert str(path) in message and "argparse.Namespace" in message
    assert "runs code" in message and "--trust-pickle" in message
    encoder = build_encoder("timm:test_resnet", 3, (32, 32), 128, weights=str(path), trust_pickle=True)
    torch.testing.assert_close(encoder.model.conv1[0].weight, tiny_resnet.conv1[0].weight)


def test_a_whole_pickled_model(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    path = tmp_path / "model.pt"
    torch.save(model, path)
    with pytest.raises(ValueError, match=r"runs code.*--trust-pickle"):
        build_encoder(f"torch:{path}", 3, (16, 16), 128)
    for kind in ("torchscript", "onnx"):  # the wrong kind for the file: said what it is and how to load it
        with pytest.raises(ValueError, match=rf"saved whole with torch.save\(model\).*torch:{path}"):
            build_encoder(f"{kind}:{path}", 3, (16, 16), 128)
    encoder = build_encoder(f"torch:{path}", 3, (16, 16), 128, trust_pickle=True).eval()
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(encoder(x), model(x))
    state = tmp_path / "state.pt"
    torch.save(model.state_dict(), state)
    with pytest.raises(ValueError, match=r"weights without .*--weights"):
        build_encoder(f"torch:{state}", 3, (16, 16), 128)


def test_timm_hub_weights_from_the_cache_offline(tmp_path, monkeypatch, tiny_resnet):
    """The hub cannot be reached here: from the cache when the weights are there, else the fix."""
    from huggingface_hub import constants
    from safetensors.torch import save_file

    monkeypatch.setattr(external, "_hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError) as error:
        build_encoder("timm:test_resnet", 3, (32, 32), 128)
    message = str(error.value)
    assert "not in the Hugging Face cache" in message and "cannot be reached" in message
    assert "--weights" in message and "--random-init" in message
    repo = tmp_path / "hub" / "models--timm--test_resnet.r160_in1k"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    save_file(tiny_resnet.state_dict(), str(repo / "snapshots" / commit / "model.safetensors"))
    encoder = build_encoder("timm:test_resnet", 3, (32, 32), 128, normalize="none", input_size="32").eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), _features(tiny_resnet, x))
    assert constants.HF_HUB_OFFLINE is False or constants.HF_HUB_OFFLINE  # restored to what it was


def test_an_unknown_timm_name_suggests_close_ones():
    with pytest.raises(ValueError, match=r"has no model 'resnet1800'.*close names: .*resnet18"):
        build_encoder("timm:resnet1800", 3, (32, 32), 128)


# ---------------------------------------------------------------- TorchScript and ONNX files

def _script(model: nn.Module, path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(model.eval()), str(path))


def test_torchscript_file_embeds_and_pools_a_feature_map(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU())  # returns (B, 5, H, W)
    path = tmp_path / "features.pt"
    _script(model, path)
    encoder = build_encoder(f"torchscript:{path}", 1, (12, 12), 128).eval()
    assert encoder.adapter.model_channels == 3  # read from its first convolution
    assert encoder.embedding_dim == 5
    assert any("feature map of 5x12x12" in n and "average" in n for n in encoder.notes)
    x = torch.rand(2, 1, 12, 12)
    torch.testing.assert_close(encoder(x), model(x.expand(-1, 3, -1, -1)).mean((2, 3)))
    flat = build_encoder(f"torchscript:{path}", 1, (12, 12), 128, pool="flatten")
    assert flat.embedding_dim == 5 * 12 * 12


def test_torchscript_that_expects_another_input_size(tmp_path):
    path = tmp_path / "fixed.pt"
    _script(FixedInput(), path)
    with pytest.raises(ValueError) as error:
        build_encoder(f"torchscript:{path}", 1, (28, 28), 128)
    message = str(error.value)
    assert str(path) in message and "(2, 3, 28, 28)" in message and "--input-size" in message
    encoder = build_encoder(f"torchscript:{path}", 1, (28, 28), 128, input_size="32")
    assert encoder.embedding_dim == 10


def test_torchscript_fine_tunes_in_transfer(tmp_path):
    from engine import events as ev
    from engine.training import TrainConfig, train

    torch.manual_seed(0)
    path = tmp_path / "net.pt"
    _script(nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()), path)
    before = torch.jit.load(str(path)).state_dict()["0.weight"].clone()
    events = list(train(TrainConfig(method="transfer", dataset="digits", encoder=f"torchscript:{path}", epochs=1,
                                    out=str(tmp_path / "runs"), run_name="ts", diagnostics=False, eval_every=0)))
    assert isinstance(events[-1], ev.Finished), events[-1]
    from engine.runs import load_checkpoint

    after = load_checkpoint(tmp_path / "runs" / "ts")["model"]["encoder.model.0.weight"]
    assert not torch.equal(before, after)  # fine-tuned, not just evaluated


def _onnx(model: nn.Module, path, shape=(1, 3, 32, 32), dynamic=True) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.rand(*shape),), str(path), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "b"}, "y": {0: "b"}} if dynamic else None, dynamo=False)


def test_onnx_file_embeds_with_onnxruntime(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    path = tmp_path / "model.onnx"
    _onnx(model, path)
    encoder = build_encoder(f"onnx:{path}", 1, (28, 28), 128)
    assert not encoder.trainable and encoder.embedding_dim == 6
    assert any("resized from 28x28 to the model's 32x32" in n for n in encoder.notes)  # the ONNX shape says 32
    x = torch.rand(5, 1, 28, 28)
    expected = model(encoder.adapter(x))
    torch.testing.assert_close(encoder(x), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"takes 32x32 images \(the ONNX input shape\); --input-size 64 does not fit"):
        build_encoder(f"onnx:{path}", 1, (28, 28), 128, input_size="64")


def test_onnx_with_a_fixed_batch_runs_in_chunks(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    path = tmp_path / "batch1.onnx"
    _onnx(model, path, dynamic=False)
    encoder = build_encoder(f"onnx:{path}", 3, (32, 32), 128)
    x = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(encoder(x), model(x), atol=1e-5, rtol=1e-5)
    assert any("batches of exactly 1" in n for n in encoder.notes)


def test_a_state_dict_is_not_a_torchscript_file(tmp_path, tiny_resnet):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file(tiny_resnet.state_dict(), str(path))
    with pytest.raises(ValueError, match=r"state dict .* not a TorchScript file.*timm:NAME --weights"):
        build_encoder(f"torchscript:{path}", 3, (32, 32), 128)
    with pytest.raises(FileNotFoundError, match=r"no file at .*missing.pt"):
        build_encoder(f"torchscript:{tmp_path / 'missing.pt'}", 3, (32, 32), 128)


# ---------------------------------------------------------------- Python factories and model outputs

def test_python_factory(tmp_path, monkeypatch):
    _write_factory(tmp_path, monkeypatch, """
        import torch
        from torch import nn

        def small():
            torch.manual_seed(0)
            return nn.Sequential(nn.Conv2d(3, 7, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())

        def broken():
            raise RuntimeError("the checkpoint server is down")

        def not_a_model():
            return 42

        def two_outputs():
            class Two(nn.Module):
                def forward(self, x):
                    return x.mean((2, 3)), x.amax((2, 3))
            return Two()

        def scores():
            class Score(nn.Module):
                def forward(self, x):
                    return x.mean((1, 2, 3))
            return Score()
    """)
    encoder = build_encoder("python:user_models:small", 3, (16, 16), 128)
    assert encoder.embedding_dim == 7 and encoder.trainable
    with pytest.raises(ValueError) as error:
        build_encoder("python:user_models:broken", 3, (16, 16), 128)
    assert str(error.value) == "python:user_models:broken: broken() raised RuntimeError: the checkpoint server is down"
    with pytest.raises(ValueError, match=r"returned a int; it must return a torch.nn.Module"):
        build_encoder("python:user_models:not_a_model", 3, (16, 16), 128)
    with pytest.raises(ValueError, match=r"returns a tuple of 2; wrap it"):
        build_encoder("python:user_models:two_outputs", 3, (16, 16), 128)
    with pytest.raises(ValueError, match=r"one number per image"):
        build_encoder("python:user_models:scores", 3, (16, 16), 128)
    with pytest.raises(ValueError, match=r"could not import nowhere_pkg.models \(ModuleNotFoundError.*PYTHONPATH"):
        build_encoder("python:nowhere_pkg.models:make", 3, (16, 16), 128)
    with pytest.raises(ValueError, match=r"has no function 'nope'"):
        build_encoder("python:user_models:nope", 3, (16, 16), 128)
    with pytest.raises(ValueError, match=r"python:package.module:function"):
        build_encoder("python:user_models", 3, (16, 16), 128)


def test_tokens_are_averaged_and_said(tmp_path, monkeypatch):
    _write_factory(tmp_path, monkeypatch, """
        from torch import nn

        class Tokens(nn.Module):  # transformer-like: (B, 3, 16, 16) -> 16 tokens of 8 values
            def __init__(self):
                super().__init__()
                self.proj = nn.Conv2d(3, 8, 4, stride=4)

            def forward(self, x):
                return self.proj(x).flatten(2).transpose(1, 2)

        def make():
            return Tokens()
    """)
    encoder = build_encoder("python:user_models:make", 3, (16, 16), 128)
    assert encoder.embedding_dim == 8
    assert any("16 tokens of 8 values" in n for n in encoder.notes)
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(encoder(x), encoder.model(x).mean(1))


def test_random_init_reinitialises_any_module(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with torch.no_grad():
        model[0].weight.fill_(0.5)
        model[1].running_mean.fill_(3.0)
    path = tmp_path / "m.pt"
    _script(model, path)
    encoder = build_encoder(f"torchscript:{path}", 3, (8, 8), 128, random_init=True)
    assert not torch.allclose(encoder.model.state_dict()["0.weight"], torch.full_like(model[0].weight, 0.5))
    assert torch.equal(encoder.model.state_dict()["1.running_mean"], torch.zeros(4))


def test_the_kinds_need_their_argument():
    from engine.encoders import check_encoder_name

    with pytest.raises(ValueError, match=r"'timm' needs NAME after the colon: timm:NAME, e.g. timm:vit_small_patch14_dinov2"):
        check_encoder_name("timm")
    with pytest.raises(ValueError, match=r"convnet takes nothing after ':'"):
        check_encoder_name("convnet:x")
    with pytest.raises(ValueError, match=r"unknown encoder 'nope:x'.*onnx:PATH, timm:NAME"):
        check_encoder_name("nope:x")


def test_a_factory_in_the_current_folder_is_found(tmp_path, monkeypatch):
    (tmp_path / "here_models.py").write_text("from torch import nn\n\ndef make():\n    return nn.Flatten()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    sys.modules.pop("here_models", None)
    encoder = build_encoder("python:here_models:make", 1, (4, 4), 128)
    assert encoder.embedding_dim == 16 and str(tmp_path) not in sys.path

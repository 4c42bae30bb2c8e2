"""Taking the encoder out (engine/export.py): each encoder kind exported and loaded back gives the same
embeddings; ONNX agrees with torch within 1e-4 under onnxruntime; the command line; bad input."""
from __future__ import annotations

import json
import textwrap
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from engine.cli import main
from engine.encoders import build_encoder
from engine.export import (FILES, ExportError, export_encoder, export_named, export_run, load_encoder,
                           read_settings)
from engine.runs import RunDir, load_snapshot


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A supervised convnet trained for one epoch on digits: a run directory with a checkpoint."""
    from engine import events as ev
    from engine.training import TrainConfig, train

    out = tmp_path_factory.mktemp("runs")
    events = list(train(TrainConfig(method="supervised", dataset="digits", epochs=1, out=str(out), run_name="sup",
                                    diagnostics=False, eval_every=0)))
    assert isinstance(events[-1], ev.Finished), events[-1]
    return out / "sup"


def _run_images(run_dir):
    """The run's map images (its fixed evaluation subset) and their embeddings in the last snapshot."""
    from engine.restore import load_run_dataset

    config = RunDir(run_dir).config()
    snapshot = load_snapshot(RunDir(run_dir).snapshot_paths()[-1])
    data = load_run_dataset(config)
    images = torch.from_numpy(data.test.images[snapshot["indices"]]).float() / 255
    return images, torch.from_numpy(snapshot["embeddings"])


def test_a_run_exports_and_loads_back_in_each_format(digits_run, tmp_path):
    result = export_run(digits_run, tmp_path / "exported")
    assert set(result.files) == {"safetensors", "torchscript", "onnx"}
    settings = read_settings(tmp_path / "exported")
    assert settings["format"] == "embedding-explorer-encoder" and settings["format_version"] == 1
    assert settings["input"] | {} == settings["input"] and settings["input"]["channels"] == 1
    assert (settings["input"]["height"], settings["input"]["width"]) == (8, 8)
    assert settings["checks"]["onnx"]["max_abs_diff"] <= 1e-4
    assert settings["checks"]["onnx"]["images_from"] == "16 test images of digits"
    assert settings["source"]["method"] == "supervised" and settings["source"]["run"] == "sup"
    assert (tmp_path / "exported" / "README.md").read_text().count("load_encoder") == 2
    images, embeddings = _run_images(digits_run)
    for fmt in ("safetensors", "torchscript", "onnx"):
        encoder = load_encoder(tmp_path / "exported", format=fmt)
        assert encoder.format == fmt and encoder.embedding_dim == embeddings.shape[1]
        with torch.no_grad():
            torch.testing.assert_close(encoder(images), embeddings, atol=1e-4, rtol=1e-4)
    assert load_encoder(tmp_path / "exported").format == "safetensors"  # auto: the rebuildable one first


def test_a_colorization_run_exports_behind_its_grey_view(tmp_path):
    """Colorization's encoder was trained and evaluated on the grey version of the images: every
    exported format takes the colour images and embeds them as the run's map did."""
    from engine import events as ev
    from engine.training import TrainConfig, train

    events = list(train(TrainConfig(method="colorization", dataset="shapes", epochs=1, train_size=64, test_size=64,
                                    batch_size=32, out=str(tmp_path), run_name="col", diagnostics=False,
                                    eval_every=0, final_eval=False, device="cpu")))
    assert isinstance(events[-1], ev.Finished), events[-1]
    result = export_run(tmp_path / "col", tmp_path / "exported")
    assert set(result.files) == {"safetensors", "torchscript", "onnx"}
    assert read_settings(tmp_path / "exported")["input"]["view"] == "grey"
    images, embeddings = _run_images(tmp_path / "col")
    assert images.shape[1] == 3
    for fmt in ("safetensors", "torchscript", "onnx"):
        with torch.no_grad():
            torch.testing.assert_close(load_encoder(tmp_path / "exported", format=fmt)(images), embeddings,
                                       atol=1e-4, rtol=1e-4)
    settings = json.loads((tmp_path / "exported" / "encoder.json").read_text())
    settings["input"]["view"] = "sepia"  # a view this version does not know: refused, not ignored
    (tmp_path / "exported" / "encoder.json").write_text(json.dumps(settings))
    with pytest.raises(ValueError, match=r"unknown input view 'sepia'.*upgrade embedding-explorer"):
        load_encoder(tmp_path / "exported")


def test_onnx_agrees_with_torch_under_onnxruntime(digits_run, tmp_path):
    import onnxruntime as ort

    from engine.export import encoder_from_run

    export_run(digits_run, tmp_path / "e", formats="onnx")
    encoder, _ = encoder_from_run(digits_run)
    session = ort.InferenceSession(str(tmp_path / "e" / FILES["onnx"]), providers=["CPUExecutionProvider"])
    for batch in (1, 3, 37):  # a dynamic batch: any size, not the one it was exported with
        x = torch.rand(batch, 1, 8, 8)
        out = session.run(None, {"images": x.numpy()})[0]
        with torch.no_grad():
            diff = np.abs(out - encoder(x).numpy()).max()
        assert out.shape == (batch, encoder.embedding_dim) and diff <= 1e-4


def test_embed_reads_image_files(digits_run, tmp_path):
    from PIL import Image

    export_run(digits_run, tmp_path / "e", formats="safetensors")
    encoder = load_encoder(tmp_path / "e")
    images, _ = _run_images(digits_run)
    paths = []
    for i, image in enumerate(images[:6]):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray((image[0].numpy() * 255).round().astype(np.uint8)).convert("RGB").save(paths[-1])
    with torch.no_grad():
        expected = encoder(images[:6])
    torch.testing.assert_close(encoder.embed(paths), expected, atol=1e-5, rtol=1e-4)
    uint8 = (images[:6, 0].numpy() * 255).round().astype(np.uint8)  # (N, H, W) arrays
    torch.testing.assert_close(encoder.embed(uint8), expected, atol=1e-5, rtol=1e-4)
    big = torch.nn.functional.interpolate(images[:2], size=(32, 32))  # another size: resized to 8x8
    assert encoder.embed(big).shape == (2, encoder.embedding_dim)
    with pytest.raises(ValueError, match="could not be read as an image"):
        encoder.embed([tmp_path / "missing.png"])


def _same_outputs(original, folder, formats, atol=1e-5):
    x = torch.rand(5, original.in_channels, *original.image_size)
    with torch.no_grad():
        reference = original.eval()(x)
        for fmt in formats:
            torch.testing.assert_close(load_encoder(folder, format=fmt)(x), reference, atol=atol, rtol=1e-4)


def test_every_encoder_kind_round_trips(tmp_path, monkeypatch):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    # a built-in encoder, by name
    result = export_named("convnet", tmp_path / "convnet", "safetensors,torchscript", 3, (16, 16), 32, widths="8,16")
    assert result.settings["encoder"]["params"] == {"widths": "8,16"}
    convnet = load_encoder(tmp_path / "convnet")
    _same_outputs(convnet.net, tmp_path / "convnet", ("torchscript",))
    # timm with a state dict of its own
    tiny = timm.create_model("test_resnet", pretrained=False)
    save_file(tiny.state_dict(), str(tmp_path / "tiny.safetensors"))
    timm_encoder = build_encoder("timm:test_resnet", 3, (32, 32), 128, weights=str(tmp_path / "tiny.safetensors"),
                                 input_size="32")
    export_named("timm:test_resnet", tmp_path / "timm", FILES, weights=str(tmp_path / "tiny.safetensors"),
                 input_size="32")
    settings = read_settings(tmp_path / "timm")
    assert settings["encoder"]["params"]["weights"] == ""  # the weights travel in the export, not a path
    _same_outputs(timm_encoder, tmp_path / "timm", ("safetensors", "torchscript", "onnx"), atol=1e-4)
    # a Python factory
    (tmp_path / "factory_models.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        def make():
            torch.manual_seed(1)
            return nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("factory_models", None)
    factory = build_encoder("python:factory_models:make", 3, (12, 12), 128)
    export_named("python:factory_models:make", tmp_path / "python", "safetensors,torchscript", image_size=(12, 12))
    _same_outputs(factory, tmp_path / "python", ("safetensors", "torchscript"))
    # a TorchScript file: its architecture is the file, so no safetensors, said why; the rest written
    path = tmp_path / "net.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())),
                       str(path))
    scripted = build_encoder(f"torchscript:{path}", 1, (10, 10), 128)
    with pytest.raises(ExportError, match=r"safetensors: .*keeps its architecture in a file.*torchscript or onnx") as error:
        export_named(f"torchscript:{path}", tmp_path / "ts", FILES, image_size=(10, 10))
    assert set(error.value.result.files) == {"torchscript", "onnx"}
    _same_outputs(scripted, tmp_path / "ts", ("torchscript", "onnx"), atol=1e-4)
    # an export, exported again (another format), and used as an encoder
    export_named(f"exported:{tmp_path / 'python'}", tmp_path / "again", "onnx")
    _same_outputs(factory, tmp_path / "again", ("onnx",), atol=1e-4)
    reused = build_encoder(f"exported:{tmp_path / 'python'}", 3, (12, 12), 128)
    x = torch.rand(2, 3, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(reused(x), factory.eval()(x))


def test_an_onnx_file_that_disagrees_is_not_kept(digits_run, tmp_path):
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError) as error:
        export_run(digits_run, tmp_path / "e", tolerance=1e-30)
    message = str(error.value)
    assert "onnxruntime's output differs from torch's by up to" in message and "limit 1e-30" in message
    assert "written: encoder.safetensors, encoder.torchscript.pt" in message
    assert not (tmp_path / "e" / FILES["onnx"]).exists()
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == sorted(
        ["README.md", "encoder.json", "encoder.safetensors", "encoder.torchscript.pt", "notes.txt"])
    assert load_encoder(tmp_path / "e").format == "safetensors"  # what was written works


def test_a_new_export_replaces_the_files_of_an_earlier_one(digits_run, tmp_path):
    export_run(digits_run, tmp_path / "e", formats="safetensors,torchscript")
    (tmp_path / "e" / "mine.txt").write_text("keep")
    export_run(digits_run, tmp_path / "e", formats="torchscript")
    assert not (tmp_path / "e" / FILES["safetensors"]).exists()
    assert (tmp_path / "e" / "mine.txt").read_text() == "keep"
    assert read_settings(tmp_path / "e")["files"] == {"torchscript": FILES["torchscript"]}


def test_command_line_export(digits_run, tmp_path, capsys):
    code = main(["export", str(digits_run), "--format", "safetensors,torchscript", "--out", str(tmp_path / "cli")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "encoder.safetensors" in out and "loaded back: max abs difference 0.00e+00" in out
    assert "load_encoder(" in out
    assert main(["export", str(digits_run), "--format", "pickle"]) == 2
    assert "--format: pickle is not valid; allowed: one or more of safetensors, torchscript, onnx" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: the folder does not exist" in capsys.readouterr().err
    assert main(["export", str(digits_run), "--widths", "8"]) == 2
    assert "applies with --encoder only" in capsys.readouterr().err
    assert main(["export", "--encoder", "convnet", "--out", str(tmp_path / "c")]) == 2
    assert "--channels" in capsys.readouterr().err


def test_the_loader_refuses_what_it_cannot_read(tmp_path, digits_run):
    with pytest.raises(FileNotFoundError, match=r"is not an exported encoder: it has no encoder.json"):
        load_encoder(tmp_path)
    export_run(digits_run, tmp_path / "e", formats="torchscript")
    settings = json.loads((tmp_path / "e" / "encoder.json").read_text())
    (tmp_path / "e" / "encoder.json").write_text(json.dumps(settings | {"format_version": 99}))
    with pytest.raises(ValueError, match=r"format version 99; .* reads versions 1 to 1: upgrade"):
        load_encoder(tmp_path / "e")
    (tmp_path / "e" / "encoder.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"encoder.json is not valid JSON"):
        load_encoder(tmp_path / "e")
    (tmp_path / "e" / "encoder.json").write_text(json.dumps(settings))
    with pytest.raises(FileNotFoundError, match=r"has no safetensors file"):
        load_encoder(tmp_path / "e", format="safetensors")


def test_an_onnx_encoder_has_nothing_to_export(tmp_path, digits_run):
    export_run(digits_run, tmp_path / "e", formats="onnx")
    encoder = build_encoder(f"onnx:{tmp_path / 'e' / FILES['onnx']}", 1, (8, 8), 128)
    with pytest.raises(ValueError, match="is an ONNX model already"):
        export_encoder(encoder, tmp_path / "again")

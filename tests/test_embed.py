"""embed: every image of a folder through an encoder, no training, into a run directory whose arrays
open memory-mapped; corrupt files skipped and listed; the files read back as input from elsewhere."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine import events as ev
from engine import schema
from engine.cli import main
from engine.collection import NpyRows
from engine.data.folder import decode
from engine.embed import CPU_BATCH_SIZE, EmbedConfig, embed
from engine.encoders import build_encoder
from engine.training import Control

COLOURS = ((200, 30, 30), (30, 200, 30), (30, 30, 200))


def _folder(root: Path, per_class: int = 5, labelled: bool = True, size=(24, 30)) -> list[Path]:
    """Coloured images in class folders (one class has a nested sub-folder), or flat."""
    paths = []
    for c, colour in enumerate(COLOURS):
        folder = root / f"class{c}" if labelled else root
        for i in range(per_class):
            img = np.full((*size, 3), 20 * i, np.uint8)
            img[4:12, 2 * i:2 * i + 8] = colour
            where = folder / "nested" if labelled and c == 1 and i == 0 else folder
            where.mkdir(parents=True, exist_ok=True)
            path = where / f"c{c}_img{i}.png"
            Image.fromarray(img).save(path)
            paths.append(path)
    return paths


def _corrupt(root: Path) -> list[Path]:
    bad = root / "class0" / "zz_not_an_image.png"
    bad.write_bytes(b"this is not a png")
    good = (root / "class2" / "c2_img0.png").read_bytes()
    cut = root / "class2" / "zz_cut.png"
    cut.write_bytes(good[: len(good) // 2])
    return [bad, cut]


def _run(config: EmbedConfig, control: Control | None = None) -> list[ev.Event]:
    events = list(embed(config, control))
    failed = [e for e in events if isinstance(e, ev.Failed)]
    assert not failed, failed[0].message
    return events


def test_every_image_embedded_corrupt_files_skipped_and_listed(tmp_path):
    paths = _folder(tmp_path / "images")
    bad = _corrupt(tmp_path / "images")
    config = EmbedConfig(dataset=f"folder:{tmp_path / 'images'}", encoder="pixels", evaluate=False, out=str(tmp_path / "runs"),
                         run_name="r", batch_size=4, workers=1, projection="pca")
    events = _run(config)
    run = tmp_path / "runs" / "r"
    progress = [e for e in events if isinstance(e, ev.Progress) and e.stage == "embedding"]
    assert progress[-1].done == progress[-1].total == len(paths) + 2 and progress[-1].skipped == 2
    assert [e.done for e in progress] == sorted(e.done for e in progress)
    warnings = [e.text for e in events if isinstance(e, ev.Message) and e.level == "warning"]
    assert any("zz_not_an_image.png" in w and "not an image" in w for w in warnings)
    assert any("zz_cut.png" in w and "truncated" in w for w in warnings)
    finished = events[-1]
    assert isinstance(finished, ev.Finished) and finished.summary["images"] == len(paths)
    assert finished.summary["skipped"] == 2

    loaded = schema.load_collection(run)
    assert loaded.notes == []
    c = loaded.value
    assert isinstance(c.embeddings, np.memmap) and isinstance(c.thumbnails, np.memmap)  # never read whole
    assert c.class_names == ["class0", "class1", "class2"]
    items = [row["path"] for row in c.items]
    assert sorted(items) == sorted(p.relative_to(tmp_path / "images").as_posix() for p in paths)
    assert "class1/nested/c1_img0.png" in items  # a class's own sub-folders belong to it
    assert c.labels.tolist() == [int(p.split("/")[0][-1]) for p in items]
    # each row is the encoder on the image decoded at its input size (64 for pixels), in folder order
    encoder = build_encoder("pixels", 3, (64, 64)).eval()
    for row in (0, 7, len(items) - 1):
        image, thumb = decode(tmp_path / "images" / items[row], (64, 24), "RGB")
        expected = encoder(torch.from_numpy(image[None].copy()).float() / 255).numpy()[0]
        np.testing.assert_allclose(c.embeddings[row], expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(c.thumbnails[row], thumb)  # the thumbnail: its own size, 24 < 64
    assert c.coords.shape == (len(paths), 2) and c.manifest["layout"] == "pca"
    skipped = (run / "skipped.csv").read_text().splitlines()
    assert skipped[0] == "path,reason" and len(skipped) == 3
    assert {line.split(",")[0] for line in skipped[1:]} == {p.relative_to(tmp_path / "images").as_posix() for p in bad}
    config_json = json.loads((run / "config.json").read_text())
    assert config_json["method"] == "embed" and config_json["test_images"] == len(paths)
    assert schema.load_config(run / "config.json").notes == []
    assert [r["kind"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())][-1] == "finished"


def test_flat_folder_unlabelled_grey_and_the_same_without_workers(tmp_path):
    folder = tmp_path / "flat"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(np.full((10, 10), 40 * i, np.uint8)).save(folder / f"g{i}.png")
    runs = []
    for workers in (0, 1):
        config = EmbedConfig(dataset=f"folder:{folder}", encoder="pixels", evaluate=False, out=str(tmp_path / "runs"),
                             run_name=f"w{workers}", batch_size=4, workers=workers, projection="none")
        _run(config)
        runs.append(schema.load_collection(tmp_path / "runs" / f"w{workers}").value)
    a, b = runs
    assert a.class_names == [] and (a.labels == -1).all()
    assert a.thumbnails.shape == (6, 1, 10, 10)  # grey stays one channel
    assert a.coords is None and a.manifest["layout"] is None
    np.testing.assert_array_equal(a.embeddings, b.embeddings)


def test_decoded_at_the_encoders_input_size(tmp_path):
    _folder(tmp_path / "images", per_class=2)
    config = EmbedConfig(dataset=f"folder:{tmp_path / 'images'}", encoder="efficientnet-lite0",
                         encoder_params={"input_size": 40}, evaluate=False, out=str(tmp_path / "runs"), run_name="e",
                         workers=0, projection="none")
    events = _run(config)
    c = schema.load_collection(tmp_path / "runs" / "e").value
    assert c.manifest["input_size"] == [40, 40] and c.embeddings.shape == (6, 1280)
    # the default batch on a CPU, and the job's CPU time for the embedding loop beside its wall time
    assert json.loads((tmp_path / "runs" / "e" / "config.json").read_text())["batch_size"] == CPU_BATCH_SIZE
    assert events[-1].summary["embed_cpu_seconds"] > 0
    assert any("decoded at 40x40" in e.text for e in events if isinstance(e, ev.Message))
    encoder = build_encoder("efficientnet-lite0", 3, (40, 40), input_size=40).eval()
    image = decode(tmp_path / "images" / c.items[0]["path"], (40,), "RGB")[0]
    with torch.no_grad():
        expected = encoder(torch.from_numpy(image[None].copy()).float() / 255).numpy()[0]
    np.testing.assert_allclose(c.embeddings[0], expected, rtol=1e-4, atol=1e-4)


def test_stopped_job_keeps_what_it_embedded(tmp_path):
    _folder(tmp_path / "images", per_class=6)
    control = Control()
    config = EmbedConfig(dataset=f"folder:{tmp_path / 'images'}", encoder="pixels", evaluate=False, out=str(tmp_path / "runs"),
                         run_name="s", batch_size=4, workers=0, projection="pca")
    events = []
    for event in embed(config, control):
        events.append(event)
        if isinstance(event, ev.Progress) and event.done >= 8:
            control.stop()
    assert isinstance(events[-1], ev.Finished) and events[-1].stopped
    c = schema.load_collection(tmp_path / "runs" / "s").value
    assert len(c.embeddings) == 8 and c.manifest["complete"] is False and c.coords.shape == (8, 2)


def test_cli_embed_and_its_argument_errors(tmp_path, capsys):
    _folder(tmp_path / "images", per_class=3)
    code = main(["embed", "--dataset", f"folder:{tmp_path / 'images'}", "--encoder", "pixels", "--out",
                 str(tmp_path / "runs"), "--run-name", "cli", "--workers", "0", "--projection", "pca", "--quiet",
                 "--no-evaluation"])
    out = capsys.readouterr().out
    assert code == 0 and "embedded 9 images (0 skipped)" in out
    assert schema.load_collection(tmp_path / "runs" / "cli").value.embeddings.shape[0] == 9
    for args, words in ((["--dataset", "digits"], "embed takes folder:PATH"),
                        (["--dataset", f"folder:{tmp_path / 'none'}"], "does not exist"),
                        (["--dataset", f"folder:{tmp_path / 'images'}", "--projection", "tsne3"], "--projection"),
                        (["--dataset", f"folder:{tmp_path / 'images'}", "--encoder", "pixels", "--input-size", "32"],
                         "--input-size does not apply"),
                        ([], "--dataset")):
        assert main(["embed", *args]) == 2
        assert words in capsys.readouterr().err
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    (empty / "a" / "broken.png").write_bytes(b"xx")
    assert main(["embed", "--dataset", f"folder:{empty}", "--encoder", "pixels", "--out", str(tmp_path / "runs"),
                 "--workers", "0", "--quiet", "--no-evaluation"]) == 1
    assert "no readable image" in capsys.readouterr().err


def test_npy_rows_writes_a_valid_npy_of_the_rows_written(tmp_path):
    writer = NpyRows(tmp_path / "a.npy", np.float32, (3,), max_rows=123456)
    writer.append(np.arange(6, dtype=np.float32).reshape(2, 3))
    writer.append(np.ones((1, 3), np.float32))
    assert not (tmp_path / "a.npy").exists()  # hidden until complete
    writer.close()
    arr = np.load(tmp_path / "a.npy")
    assert arr.shape == (3, 3) and arr[2].tolist() == [1, 1, 1] and arr[1].tolist() == [3, 4, 5]


@pytest.fixture(scope="module")
def made_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("made")
    _folder(tmp / "images", per_class=4)
    _run(EmbedConfig(dataset=f"folder:{tmp / 'images'}", encoder="pixels", evaluate=False, out=str(tmp / "runs"), run_name="m",
                     workers=0, projection="pca"))
    return tmp / "runs" / "m"


def _copy(run: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, tmp_path / "copy"))


def test_truncated_embeddings_file_gives_its_complete_rows(made_run, tmp_path):
    run = _copy(made_run, tmp_path)
    path = run / schema.EMBEDDINGS_NPY
    row_bytes = 64 * 64 * 3 * 4
    os.truncate(path, path.stat().st_size - 5 * row_bytes - 100)  # 5 whole rows and part of another gone
    loaded = schema.load_collection(run)
    c = loaded.value
    assert len(c.embeddings) == 12 - 6 and len(c.labels) == len(c.thumbnails) == len(c.coords) == len(c.items) == 6
    assert any("cut short: 6 of its 12 rows" in n for n in loaded.notes)
    whole = schema.load_collection(made_run).value
    np.testing.assert_array_equal(c.embeddings, whole.embeddings[:6])


def test_damaged_collection_files_are_left_out_with_a_note(made_run, tmp_path):
    run = _copy(made_run, tmp_path)
    np.save(run / schema.LABELS_NPY, np.full(12, 7))  # class 7 of 3
    np.save(run / schema.THUMBNAILS_NPY, np.zeros((12, 1, 4, 4), np.float32))
    coords = np.load(run / schema.COORDS_NPY)
    coords[3] = np.nan
    np.save(run / schema.COORDS_NPY, coords)
    (run / schema.ITEMS_CSV).write_text("path\nonly-one.png\n")
    emb = np.load(run / schema.EMBEDDINGS_NPY)
    emb[5, 0] = np.inf
    np.save(run / schema.EMBEDDINGS_NPY, emb)
    loaded = schema.load_collection(run)
    c, notes = loaded.value, "\n".join(loaded.notes)
    assert (c.labels == -1).all() and "labels outside -1 to 2" in notes
    assert c.thumbnails is None and "thumbnails.npy: float32 values, not uint8" in notes
    assert c.coords is None and "coords.npy: NaN" in notes
    assert c.items is None and "items.csv: 1 rows, not 12" in notes
    assert len(c.embeddings) == 11 and 5 not in c.rows and "1 row(s) hold NaN or infinite values (first: row 5)" in notes


@pytest.mark.parametrize("damage, words", [
    (lambda run: (run / schema.MANIFEST).unlink(), "embeddings.json: missing (the run is still being embedded"),
    (lambda run: (run / schema.MANIFEST).write_text('{"format": "embedding-explorer-embeddings", "format_version": 9, '
                                                    '"n": 12, "dim": 12288}'), "newer than this program reads"),
    (lambda run: np.save(run / schema.EMBEDDINGS_NPY, np.array([{"a": 1}] * 12, dtype=object)), "Python objects"),
    (lambda run: (run / schema.EMBEDDINGS_NPY).write_bytes(b"garbage"), "not a NumPy .npy file"),
    (lambda run: np.save(run / schema.EMBEDDINGS_NPY, np.zeros((12, 5), np.float32)), "5 dimensions, not embeddings.json's"),
])
def test_unusable_embeddings_say_why(made_run, tmp_path, damage, words):
    run = _copy(made_run, tmp_path)
    damage(run)
    loaded = schema.load_collection(run)
    assert loaded.value is None and words in "\n".join(loaded.notes)


def test_the_trainers_figures_are_recorded_for_the_record_panels(tmp_path):
    _folder(tmp_path / "images", per_class=6)
    config = EmbedConfig(dataset=f"folder:{tmp_path / 'images'}", encoder="color", out=str(tmp_path / "runs"),
                         run_name="v", workers=0, projection="pca")
    events = _run(config)
    evaluation = next(e for e in events if isinstance(e, ev.Evaluation))
    assert evaluation.final and evaluation.metrics["collapse"] in ("healthy", "dimensional collapse")
    assert 0 <= evaluation.metrics["linear_probe_acc"] <= 1 and "triplet_easy" in evaluation.metrics
    records = [json.loads(line) for line in (tmp_path / "runs" / "v" / "metrics.jsonl").read_text().splitlines()]
    assert any(r["kind"] == "evaluation" for r in records)
    summary = json.loads((tmp_path / "runs" / "v" / "summary.json").read_text())
    assert summary["linear_probe_acc"] == evaluation.metrics["linear_probe_acc"]
    assert schema.load_summary(tmp_path / "runs" / "v" / "summary.json").notes == []

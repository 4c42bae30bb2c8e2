"""embed --from: embeddings made elsewhere (.npy + a table, .parquet, TensorBoard projector files) become
the same collection an embed run holds; a table whose rows do not match is refused, saying both counts."""
import csv

import numpy as np
import pytest
from PIL import Image

from engine import events as ev
from engine import schema
from engine.cli import main
from engine.embed import EmbedConfig, embed

RNG = np.random.default_rng(0)


def _run(tmp_path, **kw):
    events = list(embed(EmbedConfig(out=str(tmp_path / "runs"), run_name="i", projection="pca", workers=0, **kw)))
    assert isinstance(events[-1], ev.Finished), events[-1]
    loaded = schema.load_collection(tmp_path / "runs" / "i")
    assert loaded.value is not None, loaded.notes
    return loaded.value, events


def test_a_projector_export_of_the_explorer_opens_as_a_run(tmp_path):
    from explorer.export import export_projector

    n = 30
    embeddings = RNG.normal(size=(n, 8)).astype(np.float32)
    labels = np.arange(n) % 3
    names = ["T-shirt/top", "Trouser", "Bag"]
    images = RNG.integers(0, 255, size=(n, 28, 28), dtype=np.uint8)
    export_projector(tmp_path / "projector", embeddings, labels, names, np.arange(100, 100 + n), images)
    c, _ = _run(tmp_path, from_file=str(tmp_path / "projector"))
    np.testing.assert_allclose(c.embeddings, embeddings, rtol=1e-6)  # written with 7 significant digits
    assert c.labels.tolist() == labels.tolist() and c.class_names == names  # the export's own class order
    np.testing.assert_array_equal(c.thumbnails[:, 0], images)  # the sprite's tiles, grey
    assert [item["index"] for item in c.items] == [str(i) for i in range(100, 100 + n)]  # metadata kept
    assert c.coords.shape == (n, 2) and c.manifest["source"].startswith("projector:")


def test_tensorboard_style_projector_with_one_column_metadata_and_rgb_sprite(tmp_path):
    """As SummaryWriter.add_embedding writes it: the config at the log dir, files in a sub-folder, a
    metadata.tsv of one column without a header, an RGB sprite of w x h tiles, a tensor_shape."""
    n, w, h = 10, 6, 4
    logdir = tmp_path / "logs"
    sub = logdir / "00000" / "default"
    sub.mkdir(parents=True)
    emb = RNG.normal(size=(n, 5)).astype(np.float32)
    np.savetxt(sub / "tensors.tsv", emb, delimiter="\t", fmt="%.7g")
    (sub / "metadata.tsv").write_text("".join(f"{'cat' if i % 2 else 'dog'}\n" for i in range(n)))
    side = 4  # ceil(sqrt(10))
    sprite = RNG.integers(0, 255, size=(side * h, side * w, 3), dtype=np.uint8)
    Image.fromarray(sprite).save(sub / "sprite.png")
    (logdir / "projector_config.pbtxt").write_text(
        'embeddings {\n  tensor_name: "default:00000"\n  tensor_path: "00000/default/tensors.tsv"\n'
        '  metadata_path: "00000/default/metadata.tsv"\n  tensor_shape: 10\n  tensor_shape: 5\n'
        '  sprite {\n    image_path: "00000/default/sprite.png"\n    single_image_dim: 6\n    single_image_dim: 4\n  }\n}\n'
        'embeddings {\n  tensor_name: "other:00001"\n  tensor_path: "x.tsv"\n}\n')
    c, events = _run(tmp_path, from_file=str(logdir / "projector_config.pbtxt"))
    assert c.class_names == ["cat", "dog"] and c.labels.tolist() == [1, 0] * 5
    assert c.thumbnails.shape == (n, 3, h, w)
    np.testing.assert_array_equal(c.thumbnails[5].transpose(1, 2, 0), sprite[h:2 * h, w:2 * w])  # row 1, column 1
    assert any("2 embeddings" in e.text and "--tensor" in e.text for e in events if isinstance(e, ev.Message))


def test_npy_with_a_csv_table_of_labels_and_image_paths(tmp_path):
    n = 12
    emb = RNG.normal(size=(n, 6)).astype(np.float64)
    np.save(tmp_path / "emb.npy", emb)
    (tmp_path / "imgs").mkdir()
    for i in range(n):
        Image.fromarray(np.full((20, 20, 3), (i * 20, 0, 0), np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    with open(tmp_path / "meta.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "species", "note"])
        for i in range(n):
            writer.writerow([f"imgs/{i}.png" if i != 4 else "imgs/missing.png", ["a", "b", ""][i % 3], f"n{i}"])
    c, events = _run(tmp_path, from_file=str(tmp_path / "emb.npy"), labels=str(tmp_path / "meta.csv"),
                     label_column="species")
    np.testing.assert_allclose(c.embeddings, emb.astype(np.float32))
    assert c.class_names == ["a", "b"] and c.labels.tolist()[:3] == [0, 1, -1]
    assert c.thumbnails.shape == (n, 3, 20, 20) and c.thumbnails[2, 0, 0, 0] == 40
    assert (c.thumbnails[4] == 0).all()  # its image is missing: a blank, and said
    assert any("missing.png" in e.text for e in events if isinstance(e, ev.Message))
    assert c.items[0] == {"path": "imgs/0.png", "file": "imgs/0.png", "species": "a", "note": "n0"}


def test_parquet_with_a_vector_column_and_metadata(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    n = 9
    emb = RNG.normal(size=(n, 4)).astype(np.float32)
    table = pa.table({"id": list(range(n)), "embedding": [list(map(float, row)) for row in emb],
                      "label": [i % 3 for i in range(n)]})
    pq.write_table(table, tmp_path / "e.parquet")
    c, _ = _run(tmp_path, from_file=str(tmp_path / "e.parquet"))
    np.testing.assert_allclose(c.embeddings, emb)
    assert c.labels.tolist() == [i % 3 for i in range(n)] and c.class_names == ["0", "1", "2"]


def test_rows_that_do_not_match_the_table_are_refused_naming_both(tmp_path, capsys):
    np.save(tmp_path / "emb.npy", RNG.normal(size=(10, 3)).astype(np.float32))
    (tmp_path / "labels.csv").write_text("label\n" + "".join(f"{i % 2}\n" for i in range(9)))
    code = main(["embed", "--from", str(tmp_path / "emb.npy"), "--labels", str(tmp_path / "labels.csv"),
                 "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and "labels.csv has 9 rows but the embeddings (" in err and "have 10" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # nothing written


@pytest.mark.parametrize("make, words", [
    (lambda p: np.save(p / "e.npy", np.array([{"a": 1}] * 4, dtype=object)), "Python objects (loading them would run pickled code"),
    (lambda p: np.save(p / "e.npy", np.zeros((4,), np.float32)), "2-D array of numbers"),
    (lambda p: np.save(p / "e.npy", np.array([[1.0, np.nan], [0, 1], [1, 1]], np.float32)), "row 0 holds NaN"),
    (lambda p: (p / "e.npy").write_bytes(b"\x93NUMPY garbage"), "not a NumPy .npy file"),
])
def test_bad_embeddings_files_say_why(tmp_path, capsys, make, words):
    make(tmp_path)
    code = main(["embed", "--from", str(tmp_path / "e.npy"), "--out", str(tmp_path / "runs"), "--quiet"])
    assert code in (1, 2) and words in capsys.readouterr().err


def test_from_refuses_what_does_not_apply(tmp_path, capsys):
    np.save(tmp_path / "e.npy", np.zeros((4, 2), np.float32))
    assert main(["embed", "--from", str(tmp_path / "e.npy"), "--encoder", "pixels"]) == 2
    assert "not with --from FILE" in capsys.readouterr().err
    assert main(["embed", "--dataset", f"folder:{tmp_path}", "--labels", "x.csv"]) == 2
    assert "--labels applies with --from" in capsys.readouterr().err

"""Every dataset loads real images, with thumbnails, subsets and imbalance; bad folders are explained."""
import numpy as np
import pytest
from PIL import Image

from engine.data import load_dataset


@pytest.mark.parametrize("name, channels, size", [("digits", 1, 8), ("fashion-mnist", 1, 28), ("shapes", 3, 32)])
def test_dataset_loads_with_thumbnails(name, channels, size):
    ds = load_dataset(name, train_size=300, test_size=100, seed=1)
    assert ds.train.images.dtype == np.uint8 and ds.train.images.shape[1:] == (channels, size, size)
    assert len(ds.train) == 300 and len(ds.test) == 100
    assert ds.labelled and ds.num_classes >= 3
    thumb = ds.thumbnail("test", 5)
    assert thumb.dtype == np.uint8 and thumb.shape[:2] == (size, size)
    assert thumb.max() > thumb.min()  # a real picture, not a blank
    # stratified: every class is present in the subset
    assert set(np.unique(ds.train.labels)) == set(range(ds.num_classes))


def test_digits_split_is_fixed_whatever_the_seed():
    a, b = load_dataset("digits", seed=0), load_dataset("digits", seed=5)
    assert (len(a.train), len(a.test)) == (1200, 597)
    assert np.array_equal(a.test.labels, b.test.labels)


def test_fashion_mnist_is_the_official_split():
    ds = load_dataset("fashion-mnist")
    assert (len(ds.train), len(ds.test)) == (60000, 10000)
    assert ds.class_names[9] == "Ankle boot"


def test_imbalance_makes_a_long_tail():
    ds = load_dataset("fashion-mnist", imbalance=0.1, seed=0)
    counts = ds.class_counts()
    assert counts[0] == 6000 and counts[-1] == 600
    assert np.all(np.diff(counts) <= 0)
    assert len(ds.test) == 10000  # only the training split is made long-tailed


def test_shapes_is_deterministic_and_carries_factors():
    a, b = load_dataset("shapes", seed=3), load_dataset("shapes", seed=3)
    assert np.array_equal(a.train.images, b.train.images)
    assert set(a.train.factors) == {"shape", "scale", "rotation", "x", "y", "hue"}
    assert np.array_equal(a.train.factors["shape"], a.train.labels)


def _write_images(folder, n, color=(200, 30, 30)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = np.zeros((20, 30, 3), np.uint8)
        img[5:15, i % 20: i % 20 + 8] = color
        Image.fromarray(img).save(folder / f"img{i}.png")


def test_folder_with_classes_skips_corrupt_files(tmp_path):
    _write_images(tmp_path / "cats", 6, (200, 30, 30))
    _write_images(tmp_path / "dogs", 6, (30, 30, 200))
    (tmp_path / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    ds = load_dataset(f"folder:{tmp_path}")
    assert ds.class_names == ["cats", "dogs"]
    assert len(ds.train) + len(ds.test) == 12
    assert ds.train.images.shape[1:] == (3, 64, 64)
    assert len(ds.skipped_files) == 1 and "broken.png" in ds.skipped_files[0]
    assert any("1 unreadable or corrupt" in n for n in ds.notes)


def test_flat_folder_is_unlabelled(tmp_path):
    _write_images(tmp_path, 5)
    ds = load_dataset(f"folder:{tmp_path}")
    assert not ds.labelled and ds.num_classes == 0
    assert any("unlabelled" in n for n in ds.notes)


def test_folder_errors_name_the_cause(tmp_path):
    with pytest.raises(ValueError, match="no readable image"):
        load_dataset(f"folder:{tmp_path}")
    _write_images(tmp_path / "only", 3)
    with pytest.raises(ValueError, match="only one class"):
        load_dataset(f"folder:{tmp_path}")
    with pytest.raises(ValueError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'missing'}")


def test_unknown_dataset_lists_the_choices():
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*digits"):
        load_dataset("nope")


def test_fashion_mnist_offline_and_absent_says_both_ways(tmp_path, monkeypatch):
    import torchvision.datasets

    import engine.data.torchvision_sets as tv

    monkeypatch.setattr(tv, "DEBIAN_FASHION", tmp_path / "nowhere")

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("fashion-mnist", data_root=tmp_path)
    assert "connect to the internet" in str(err.value) and "apt-get install dataset-fashion-mnist" in str(err.value)


@pytest.mark.parametrize("kwargs, match", [({"train_size": 0}, "--train-size"), ({"imbalance": 2.0}, "--imbalance")])
def test_bad_subset_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset("digits", **kwargs)

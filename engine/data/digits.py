"""scikit-learn's 8x8 handwritten digits: the embedded default, no download needed."""
import numpy as np

from engine.data import DATASETS, ImageDataset, Split

TEST_FRACTION = 597 / 1797  # the fixed 1200 / 597 stratified split the targets are quoted on


@DATASETS.register("digits")
def load_digits(data_root=None, seed: int = 0) -> ImageDataset:
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    d = sk_digits()
    # pixel values are 0..16; stretch them to the full byte range
    images = np.round(d.images * (255 / 16)).astype(np.uint8)[:, None]
    labels = d.target.astype(np.int64)
    # the split is fixed (random_state 0) whatever the run's seed, so results compare across runs
    tr, te = train_test_split(np.arange(len(labels)), test_size=TEST_FRACTION, stratify=labels,
                              random_state=0)
    tr, te = np.sort(tr), np.sort(te)
    return ImageDataset("digits", Split(images[tr], labels[tr]), Split(images[te], labels[te]),
                        [str(i) for i in range(10)])

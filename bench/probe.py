"""The torch linear probe against scikit-learn's LogisticRegression on the same 60k x 512 features.

Features: the real Fashion-MNIST train/test images through a fixed random ReLU layer to 512
dimensions (a representation that is neither trivial nor perfect). Both fit multinomial logistic
regression with C = 1 on standardised features with L-BFGS: scikit-learn its default 100
iterations, ours its default 50 (in the preconditioned basis). Prints both accuracies,
both times and the speed ratio (target: within 1 point, >= 5x faster on the CPU).
"""
import time

import engine  # noqa: F401  (first: it sets OMP_WAIT_POLICY before anything loads torch)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from engine.data import load_dataset  # noqa: E402
from engine.metrics.probe import linear_probe  # noqa: E402


def features(images: np.ndarray, projection: torch.Tensor) -> np.ndarray:
    x = torch.from_numpy(images.reshape(len(images), -1)).float() / 255
    return torch.relu(x @ projection).numpy()


def main() -> None:
    data = load_dataset("fashion-mnist")
    gen = torch.Generator().manual_seed(0)
    projection = torch.randn(28 * 28, 512, generator=gen) / 28
    xtr, xte = features(data.train.images, projection), features(data.test.images, projection)
    ytr, yte = data.train.labels, data.test.labels
    print(f"features: train {xtr.shape}, test {xte.shape}, torch threads {torch.get_num_threads()}")

    start = time.perf_counter()
    ours = linear_probe(xtr, ytr, xte, yte, C=1.0)  # its default: 50 preconditioned L-BFGS iterations
    t_ours = time.perf_counter() - start

    start = time.perf_counter()
    scaler = StandardScaler().fit(xtr)
    model = LogisticRegression(C=1.0, max_iter=100).fit(scaler.transform(xtr), ytr)
    ref = model.score(scaler.transform(xte), yte)
    t_ref = time.perf_counter() - start

    print(f"torch probe   accuracy {ours:.4f}  {t_ours:6.2f} s")
    print(f"scikit-learn  accuracy {ref:.4f}  {t_ref:6.2f} s")
    print(f"accuracy difference {abs(ours - ref) * 100:.2f} points (target <= 1)")
    print(f"speed ratio {t_ref / t_ours:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()

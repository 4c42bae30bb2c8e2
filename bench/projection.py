"""Benchmark: our torch UMAP (first map, warm aligned refresh) against umap-learn, on Fashion-MNIST.

Embeddings: PCA-128 of the 10k Fashion-MNIST test images, standing in for a network's embeddings.
A "later snapshot": the same embeddings after a small random linear drift plus noise (what a few
training steps do), so a refresh has something to follow.

Measured, all in this run on this machine:
- ours: first map (time, trustworthiness@10); refresh of unchanged embeddings (time, median
  displacement as a fraction of the layout's extent, trustworthiness); refresh of the later snapshot.
- umap-learn: cold default fit (numba compiled beforehand on 5000 points, time printed apart),
  warm start (``init=`` the previous layout, 50 epochs) on unchanged and on the later embeddings.
- ratios: umap-learn time / our time; trustworthiness differences.
- 70k x 128 (all of Fashion-MNIST): our first map and refresh times, the approximate kNN's recall
  against exact on 2000 sampled points.

    python bench/projection.py [--n 10000] [--skip-70k] [--skip-umap-learn]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import engine  # noqa: E402,F401  (first: it sets OMP_WAIT_POLICY before anything loads torch)

import numpy as np  # noqa: E402


def fashion_embeddings(n: int, dims: int = 128) -> np.ndarray:
    from sklearn.decomposition import PCA

    from engine.data import load_dataset

    ds = load_dataset("fashion-mnist")
    pixels = np.concatenate([ds.test.images, ds.train.images])[:n].reshape(n, -1).astype(np.float32) / 255
    pca = PCA(dims, random_state=0).fit(pixels[:: max(1, n // 10000)])
    return pca.transform(pixels).astype(np.float32)


def later_snapshot(e: np.ndarray, seed: int = 1) -> np.ndarray:
    """A small random linear drift (5 %) plus noise (5 % of the spread): a few training steps later."""
    rng = np.random.default_rng(seed)
    d = e.shape[1]
    drift = np.eye(d) + 0.05 * rng.standard_normal((d, d)) / np.sqrt(d)
    return (e @ drift + 0.05 * e.std() * rng.standard_normal(e.shape)).astype(np.float32)


def displacement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.median(np.linalg.norm(a - b, axis=1)) / np.ptp(a, axis=0).max())


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--skip-70k", action="store_true")
    parser.add_argument("--skip-umap-learn", action="store_true")
    args = parser.parse_args()

    import torch

    from engine.metrics.honesty import trustworthiness
    from engine.neighbours import knn
    from engine.projection import LiveProjection, approximate_knn

    def tw(e, y):
        return trustworthiness(e, y, k=10)

    e = fashion_embeddings(args.n)
    e2 = later_snapshot(e)
    print(f"embeddings {e.shape} (Fashion-MNIST PCA-128), torch threads {torch.get_num_threads()}")

    live = LiveProjection("umap", seed=0)
    y0, t_first = timed(lambda: live.update(e))
    y1, t_still = timed(lambda: live.update(e))
    y2, t_moved = timed(lambda: live.update(e2))
    ours = {"first": (t_first, tw(e, y0)), "still": (t_still, tw(e, y1), displacement(y0, y1)),
            "moved": (t_moved, tw(e2, y2), displacement(y1, y2))}
    print(f"ours   first map      {t_first:6.2f} s  T@10 {ours['first'][1]:.4f}")
    print(f"ours   refresh (same) {t_still:6.2f} s  T@10 {ours['still'][1]:.4f}  displacement "
          f"{100 * ours['still'][2]:.2f} % of extent")
    print(f"ours   refresh (later){t_moved:6.2f} s  T@10 {ours['moved'][1]:.4f}  displacement "
          f"{100 * ours['moved'][2]:.2f} %  ({live.projector.relocated} points relocated)")

    if not args.skip_umap_learn:
        import umap

        # Compile outside the timings: above 4096 points umap-learn also compiles its NN-descent.
        _, t_compile = timed(lambda: umap.UMAP(n_epochs=20).fit(e[:5000]))
        ref, t_cold = timed(lambda: umap.UMAP().fit_transform(e))
        ref_still, t_warm = timed(lambda: umap.UMAP(init=ref, n_epochs=50).fit_transform(e))
        ref_moved, t_warm2 = timed(lambda: umap.UMAP(init=ref, n_epochs=50).fit_transform(e2))
        tc, ts, tm = tw(e, ref), tw(e, ref_still), tw(e2, ref_moved)
        print(f"umap-learn compile + warm-up (5000 points) {t_compile:.1f} s, not counted below")
        print(f"umap-learn cold  {t_cold:6.2f} s  T@10 {tc:.4f}")
        print(f"umap-learn warm (same)  {t_warm:6.2f} s  T@10 {ts:.4f}  displacement "
              f"{100 * displacement(ref, ref_still):.2f} %")
        print(f"umap-learn warm (later) {t_warm2:6.2f} s  T@10 {tm:.4f}")
        print(f"ratios: refresh vs umap-learn warm {t_warm / t_still:.1f}x faster (same), "
              f"{t_warm2 / t_moved:.1f}x (later); vs cold {t_cold / t_still:.1f}x; "
              f"first map vs cold {t_cold / t_first:.1f}x")
        print(f"trustworthiness: ours first {ours['first'][1]:.4f} - umap-learn cold {tc:.4f} = "
              f"{ours['first'][1] - tc:+.4f}; ours refresh (later) {ours['moved'][1]:.4f} - umap-learn warm "
              f"(later) {tm:.4f} = {ours['moved'][1] - tm:+.4f}")

    if not args.skip_70k:
        big = fashion_embeddings(70000)
        live = LiveProjection("umap", seed=0)
        y0, t_first = timed(lambda: live.update(big))
        y1, t_still = timed(lambda: live.update(big))
        print(f"70k: first map {t_first:.2f} s, refresh (same) {t_still:.2f} s, displacement "
              f"{100 * displacement(y0, y1):.2f} %")
        x = torch.as_tensor(big) - torch.as_tensor(big).mean(0)
        (_, approx, _), t_knn = timed(lambda: approximate_knn(x, 15, generator=torch.Generator().manual_seed(0)))
        sample = np.random.default_rng(0).choice(len(big), 2000, replace=False)
        _, exact = knn(big[sample], big, 15, metric="euclidean")
        recall = np.mean([len(set(a) & set(b)) / 15 for a, b in zip(exact, approx[sample].numpy())])
        print(f"70k approximate kNN (k-means cells, cold): {t_knn:.2f} s, recall@15 vs exact {recall:.3f}")


if __name__ == "__main__":
    main()

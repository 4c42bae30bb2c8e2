"""Benchmark: one kNN query against 70k x 128 embeddings (the window's neighbours panel), and an
all-points kNN of 5k points (the metrics), against scikit-learn's brute-force NearestNeighbors.

Embeddings: PCA-128 of the 70k Fashion-MNIST images (or random normal vectors with --random).
Times are medians over repeated queries of different points; results must be identical (same
indices; scikit-learn gets float64 input, in which it ranks exactly, as we do).

    python bench/neighbours.py [--random] [--queries 50]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import engine  # noqa: E402,F401  (first: it sets OMP_WAIT_POLICY before anything loads torch)

import numpy as np  # noqa: E402


def embeddings(random: bool) -> np.ndarray:
    if random:
        return np.random.default_rng(0).standard_normal((70000, 128)).astype(np.float32)
    from sklearn.decomposition import PCA

    from engine.data import load_dataset

    ds = load_dataset("fashion-mnist")
    pixels = np.concatenate([ds.train.images, ds.test.images]).reshape(70000, -1).astype(np.float32) / 255
    pca = PCA(128, random_state=0).fit(pixels[::7])
    return pca.transform(pixels).astype(np.float32)


def median_ms(fn, rows) -> tuple[float, list]:
    fn(rows[0])  # warm-up (first-call allocations)
    times, results = [], []
    for r in rows:
        start = time.perf_counter()
        results.append(fn(r))
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", action="store_true", help="random normal vectors instead of Fashion-MNIST PCA")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()

    import torch
    from sklearn.neighbors import NearestNeighbors

    from engine.neighbours import NeighbourIndex, knn, nearest

    base = embeddings(args.random)
    base64 = base.astype(np.float64)
    rows = np.random.default_rng(1).choice(len(base), args.queries, replace=False).tolist()
    print(f"base {base.shape}, k = {args.k}, {args.queries} queries, torch threads {torch.get_num_threads()}")
    for metric in ("cosine", "euclidean"):
        nn = NearestNeighbors(n_neighbors=args.k, algorithm="brute", metric=metric).fit(base64)
        t_sk, res_sk = median_ms(lambda r: nn.kneighbors(base64[r:r + 1], args.k + 1)[1][0, 1:], rows)
        index = NeighbourIndex(base, metric)
        t_ix, res_ix = median_ms(lambda r: index.query(r, args.k)[1], rows)
        t_one, res_one = median_ms(lambda r: nearest(r, base, args.k, metric)[1], rows)
        same = all(np.array_equal(a, b) for a, b in zip(res_sk, res_ix)) and \
            all(np.array_equal(a, b) for a, b in zip(res_sk, res_one))
        print(f"{metric:9s} one query: NeighbourIndex.query {t_ix:6.2f} ms | nearest() {t_one:6.2f} ms | "
              f"sklearn brute {t_sk:6.2f} ms | speed-up {t_sk / t_ix:5.1f}x (index), {t_sk / t_one:4.1f}x "
              f"(nearest) | identical: {same}")

    sub = base[:5000]
    for metric in ("cosine", "euclidean"):
        start = time.perf_counter()
        _, ours = knn(sub, sub, args.k, metric=metric, exclude_self=True)
        t_ours = time.perf_counter() - start
        start = time.perf_counter()
        theirs = NearestNeighbors(n_neighbors=args.k, algorithm="brute", metric=metric).fit(
            sub.astype(np.float64)).kneighbors(return_distance=False)
        t_sk = time.perf_counter() - start
        print(f"{metric:9s} all-points kNN of 5000: ours {t_ours:.3f} s | sklearn brute {t_sk:.3f} s | "
              f"speed-up {t_sk / t_ours:.1f}x | identical: {np.array_equal(ours, theirs)}")


if __name__ == "__main__":
    main()

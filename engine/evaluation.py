"""The evaluation of a run's representation: probe and kNN accuracy, retrieval, the method's own
figures, the diagnostics (collapse, triplets, clusters, properties, the map) and the references every
result is read against (a random initialisation of the same encoder, the raw pixels).

During training the quick protocol runs on fixed subsets (the same rows at every evaluation, so the
map can animate); at the end (``final``) the probe is fitted on the whole train split and scored on the
whole test split.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine import references as reference_cache
from engine.budget import TimeBudget
from engine.config import TrainConfig


class TrainingError(Exception):
    """A failure with a message a person can act on (the cause and the fix)."""


@dataclass
class EvaluationResult:
    metrics: dict[str, Any]
    embeddings: np.ndarray  # (n, D) of the fixed evaluation subset
    arrays: dict[str, np.ndarray]  # what the snapshot saves: embeddings, indices, labels, coords, per point
    diagnostics_seconds: float  # the map and the indicators (the same at the end)
    references_seconds: float  # the random-init and pixel probes (step 0 and the end only)


class Evaluator:
    """Evaluates one run's method at any step. ``train_images`` are the run's training images as the
    job holds them (uint8, on the device); the test images stay on the CPU, embedded in batches."""

    def __init__(self, config: TrainConfig, data, method, device, encoder_params: dict[str, Any],
                 train_images):
        import torch

        self.config, self.data, self.method, self.device = config, data, method, device
        self.encoder_params = encoder_params
        self.train_images = train_images
        self.test_images = torch.from_numpy(data.test.images)
        if torch.device(device).type == "cuda":  # embedded in batches: pinned, the copies do not block
            self.test_images = self.test_images.pin_memory()
        self.eval_rows = fixed_subset(data.test.labels, config.eval_size, config.seed)
        self.probe_rows = fixed_subset(data.train.labels, config.probe_train_size, config.seed + 1)
        self.diagnostics = _make_diagnostics(config, method.info, device, method) if config.diagnostics else None
        # (estimated seconds, minutes of the limit) when a time limit cannot fit them (TimeBudget), else None
        self.skip_final_references: tuple[float, float] | None = None
        self._data_digest: str | None = None
        self._keys: dict[tuple[str, bool], str] = {}  # the cache keys: fixed for the run, so made once
        self.references_measured = False  # whether the last references() measured any (else: all cached)

    @property
    def final_scale(self) -> float:
        """How many times more images the final evaluation's probes see than those on the way."""
        return (len(self.data.train) + len(self.data.test)) / (len(self.probe_rows) + len(self.eval_rows))

    def evaluate(self, step: int, final: bool) -> EvaluationResult:
        import torch

        from engine.encoders import embed

        cfg, data, dev = self.config, self.data, self.device
        encoder = self.method.representation()  # the encoder behind the input it trains on
        diagnostics_seconds, references_seconds = 0.0, 0.0
        eval_x = embed(encoder, self.test_images[self.eval_rows], device=dev)
        metrics: dict[str, Any] = {}
        check_finite(eval_x, step)
        if data.labelled:
            train_imgs, train_y, test_imgs, test_y = self.probe_data(final)
            train_x = embed(encoder, train_imgs, device=dev)
            # the quick protocol scores on the map's points, already embedded
            test_x = embed(encoder, test_imgs, device=dev) if final else eval_x
            check_finite(train_x, step)
            metrics.update(label_scores(train_x, train_y, test_x, test_y, k=cfg.knn_k,
                                        retrieval_metric=self.method.retrieval_metric, device=dev))
            # the method's own figures, e.g. triplet shares, class-centre angles
            metrics.update(self.method.evaluation_stats(
                eval_x, torch.as_tensor(data.test.labels[self.eval_rows], device=eval_x.device)))
            if step == 0 or final:
                references_start = time.perf_counter()
                metrics.update(self.references(final))
                # read from the cache they cost nothing: the time budget then knows nothing of them
                references_seconds = (time.perf_counter() - references_start) if self.references_measured else 0.0
        eval_np = eval_x.float().cpu().numpy()
        coords = None
        if self.diagnostics is not None:
            diagnostics_start = time.perf_counter()
            factors = None
            if data.test.factors is not None:
                factors = {k: v[self.eval_rows] for k, v in data.test.factors.items()}
            extra, coords = self.diagnostics.evaluate(encoder, self.test_images[self.eval_rows],
                                                      data.test.labels[self.eval_rows], eval_np, factors, step)
            metrics.update(extra)
            diagnostics_seconds = time.perf_counter() - diagnostics_start
        arrays = snapshot_arrays(eval_np, self.eval_rows, data.test.labels[self.eval_rows], coords, self.diagnostics)
        return EvaluationResult(metrics, eval_np, arrays, diagnostics_seconds, references_seconds)

    def probe_data(self, final: bool):
        """(train images, train labels, test images, test labels) the probe uses: the whole splits at
        the end, the fixed probe and map subsets during training (quick enough for every evaluation)."""
        import torch

        data = self.data
        if final:
            return self.train_images, data.train.labels, self.test_images, data.test.labels
        probe_rows = torch.as_tensor(self.probe_rows, device=self.device)
        return (self.train_images[probe_rows], data.train.labels[self.probe_rows],
                self.test_images[self.eval_rows], data.test.labels[self.eval_rows])

    def references(self, final: bool) -> dict[str, Any]:
        """The figures every result is read against: a random initialisation of the same encoder and
        the raw pixels. At step 0 they use the quick protocol, at the end the full one; each is read
        from the cache of earlier runs with the same inputs (engine/references.py) or measured and
        cached; ``skip_final_references`` (a time limit they do not fit) leaves the end's out, with a
        note. ``references_measured`` tells whether any was measured (not all read from the cache)."""
        out: dict[str, Any] = {}
        missing = []
        self.references_measured = False
        for kind, names, measure in (("random_init", RANDOM_INIT_NAMES, self._random_init_references),
                                     ("pixels", PIXELS_NAMES, self._pixels_reference)):
            cached = reference_cache.read(self._key(kind, final), names)
            if cached is not None:
                out |= cached
            elif final and self.skip_final_references is not None:
                missing += names
            else:
                measured = measure(final)
                reference_cache.write(self._key(kind, final), measured)
                out |= measured
                self.references_measured = True
        if missing:
            out["references_note"] = self._references_note(*self.skip_final_references)
        return out

    @staticmethod
    def _references_note(estimate: float, minutes: float) -> str:
        cost = (f"would take about {estimate:.0f} s, over {100 * TimeBudget.MAX_REFERENCES_SHARE:.0f} % of the "
                f"{minutes:g}-minute limit" if estimate else "have no estimate (the run measured none at step 0: it "
                "was resumed, or read them from the cache)")
        longer = (f"with --time-limit {math.ceil(estimate / TimeBudget.MAX_REFERENCES_SHARE / 60)} or more, "
                  if estimate else "")
        return (f"the references on the whole splits (random init, raw pixels) did not fit the time limit: they "
                f"{cost}. The step-0 figures in metrics.jsonl are on the subsets. One run of the same command "
                f"{longer}or with --no-time-limit (--epochs 1 is enough) measures them, and later runs read "
                f"them from {reference_cache.cache_folder()}")

    @property
    def final_references_cached(self) -> bool:
        """Whether the end's references are in the cache (then the end costs only the run's own probe)."""
        return (reference_cache.read(self._key("random_init", True), RANDOM_INIT_NAMES) is not None
                and reference_cache.read(self._key("pixels", True), PIXELS_NAMES) is not None)

    def _data_key(self, final: bool) -> dict[str, Any]:
        import torch

        from engine.metrics import probe

        if self._data_digest is None:  # hashing 55 MB of Fashion-MNIST: about 0.1 s, once
            d = self.data
            self._data_digest = reference_cache.data_digest(d.train.images, d.train.labels, d.test.images,
                                                            d.test.labels)
        # the quick protocol's probe and map rows are fixed subsets: part of what it measures
        quick = {} if final else {"quick": reference_cache.data_digest(self.probe_rows, self.eval_rows)}
        return {"data": self._data_digest, **quick, "view": self.method.input_view,
                "probe": [probe.TOLERANCE, probe.MAX_ITER], "device": torch.device(self.device).type}

    def _key(self, kind: str, final: bool) -> str:
        """The cache key of reference ``kind`` ("pixels" or "random_init") for the quick or the final
        protocol: it depends only on the run's data, encoder and protocol, so it is made once."""
        import torch

        if (kind, final) not in self._keys:
            cfg, data = self.config, self.data
            parts = {"grid": _pixel_grid(data.image_size)} if kind == "pixels" else {
                "encoder": cfg.encoder, "params": self._random_init_params(), "seed": cfg.seed,
                "channels": data.channels, "image_size": list(data.image_size), "embedding_dim": cfg.embedding_dim,
                "knn_k": cfg.knn_k, "torch": torch.__version__}
            self._keys[kind, final] = reference_cache.entry_key(kind=kind, **parts, **self._data_key(final))
        return self._keys[kind, final]

    def _random_init_params(self) -> dict[str, Any]:
        params = dict(self.encoder_params)
        if "random_init" in params:  # a pretrained backbone: its baseline is the same net, untrained
            params["random_init"] = True
        return params

    def _random_init_references(self, final: bool) -> dict[str, float]:
        import torch

        from engine.encoders import InputView, build_encoder, embed
        from engine.metrics.probe import knn_accuracy, linear_probe

        cfg, data, dev = self.config, self.data, self.device
        train_imgs, train_y, test_imgs, test_y = self.probe_data(final)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            random_encoder = build_encoder(cfg.encoder, data.channels, data.image_size, cfg.embedding_dim,
                                           **self._random_init_params()).to(dev)
        # the references see what the method's encoder sees (colorization: the grey images)
        random_encoder = InputView(random_encoder, self.method.encoder_input)
        tr, te = embed(random_encoder, train_imgs, device=dev), embed(random_encoder, test_imgs, device=dev)
        return {"baseline_linear_probe_acc": linear_probe(tr, train_y, te, test_y, device=dev),
                "baseline_knn_acc": knn_accuracy(tr, train_y, te, test_y, k=cfg.knn_k, device=dev)}

    def _pixels_reference(self, final: bool) -> dict[str, float]:
        import torch

        from engine.metrics.probe import linear_probe

        train_imgs, train_y, test_imgs, test_y = self.probe_data(final)
        view = self.method.encoder_input
        pixels = lambda imgs: torch.nn.functional.adaptive_avg_pool2d(  # noqa: E731
            view(imgs.float().div(255)), _pixel_grid(self.data.image_size)).flatten(1)
        return {"pixels_linear_probe_acc": linear_probe(pixels(train_imgs.cpu()), train_y,
                                                        pixels(test_imgs.cpu()), test_y, device=self.device)}


RANDOM_INIT_NAMES = ("baseline_linear_probe_acc", "baseline_knn_acc")
PIXELS_NAMES = ("pixels_linear_probe_acc",)


def label_scores(train_x, train_y, test_x, test_y, k: int, retrieval_metric: str = "euclidean",
                 device="cpu") -> dict[str, Any]:
    """The figures scored against the labels at every evaluation: the linear probe and the kNN fitted on
    (train_x, train_y) and scored on the test rows, and retrieval among the test rows."""
    import torch

    from engine.metrics.probe import knn_accuracy, linear_probe
    from engine.metrics.retrieval import retrieval_metrics

    scores = {"linear_probe_acc": linear_probe(train_x, train_y, test_x, test_y, device=device),
              "knn_acc": knn_accuracy(train_x, train_y, test_x, test_y, k=k, device=device)}
    test_np = test_x.float().cpu().numpy() if torch.is_tensor(test_x) else np.asarray(test_x)
    retrieval = retrieval_metrics(test_np, np.asarray(test_y), metric=retrieval_metric)
    # "nmi" is the diagnostics' k-means NMI on the map's points; retrieval's is on the test rows
    retrieval["retrieval_nmi"] = retrieval.pop("nmi", None)
    return scores | retrieval


def snapshot_arrays(embeddings: np.ndarray, indices: np.ndarray, labels: np.ndarray, coords, diagnostics) -> dict:
    """What a snapshot .npz holds: the map's embeddings, rows and labels, its 2D coordinates (when the
    diagnostics made them) and the diagnostics' per-point results the map colours with."""
    arrays = {"embeddings": embeddings, "indices": indices, "labels": labels}
    if coords is not None:
        arrays["coords"] = coords
    if diagnostics is not None:
        arrays.update(diagnostics.arrays)
        if "kmeans_clusters" in arrays:
            arrays["clusters"] = arrays["kmeans_clusters"]
    return arrays


def _pixel_grid(size: tuple[int, int]) -> tuple[int, int]:
    """Raw pixels for the reference probe, pooled to at most 32x32 so large images stay tractable."""
    return min(size[0], 32), min(size[1], 32)


def fixed_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    from engine.data import stratified_subset

    return stratified_subset(labels, size, np.random.default_rng(seed))


def check_finite(x, step: int) -> None:
    import torch

    if not torch.isfinite(x).all():
        raise TrainingError(f"the embeddings contain NaN or infinite values at step {step}: the model "
                            "diverged; try a lower learning rate")


def _make_diagnostics(cfg: TrainConfig, info, device, method):
    from engine.metrics.diagnostics import Diagnostics

    # triplet categories with the method's own definition, invariance under the method's own views
    return Diagnostics(num_classes=info.num_classes, labelled=info.labelled, projection=cfg.projection,
                       device=device, seed=cfg.seed, triplets=method.triplet_definition(method.hparams),
                       augment=method.evaluation_views())


COLLECTION_MAP_POINTS = 2000  # a collection's collapse, triplet, cluster and map indicators: on this many rows
COLLECTION_PROBE_POINTS = 10000  # its probe, kNN and retrieval: fitted on half of this many labelled rows


def evaluate_collection(embeddings: np.ndarray, labels: np.ndarray, num_classes: int, coords: np.ndarray | None = None,
                        seed: int = 0, k: int = 10, map_points: int = COLLECTION_MAP_POINTS,
                        probe_points: int = COLLECTION_PROBE_POINTS) -> dict[str, Any]:
    """The trainer's figures for a collection (an embedded folder, embeddings made elsewhere), by the
    same code, on fixed stratified subsets so 100k rows cost what a training run's evaluation does:
    ``label_scores`` on up to ``probe_points`` labelled rows (a stratified half fits, the other half
    is scored), and the diagnostics (collapse verdict and indicators, triplet categories, clusters) on
    ``map_points`` rows. The map's honesty (trustworthiness, neighbour overlap) is that of ``coords``,
    the map the window shows, on those rows; without it, left out. Smoothness and invariance need an
    encoder and are left out with a note. ``embeddings`` may be memory-mapped: only the subsets are read."""
    from engine.data import stratified_subset
    from engine.metrics import honesty
    from engine.metrics.diagnostics import Diagnostics

    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, dtype=np.int64)
    metrics: dict[str, Any] = {}
    known = np.flatnonzero(labels >= 0)
    if len(np.unique(labels[known])) >= 2 and len(known) >= 4:
        rows = known[stratified_subset(labels[known], min(probe_points, len(known)), rng)]
        z, y = np.asarray(embeddings[rows], dtype=np.float32), labels[rows]
        fit = np.zeros(len(rows), dtype=bool)
        fit[stratified_subset(y, len(rows) // 2, rng)] = True
        metrics.update(label_scores(z[fit], y[fit], z[~fit], y[~fit], k=min(k, int(fit.sum()))))
        metrics["probe_points"] = int(len(rows))
    rows = stratified_subset(labels, min(map_points, len(labels)), rng)
    z, y = np.asarray(embeddings[rows], dtype=np.float32), labels[rows]
    # encoder None: the images are not looked at (only counted) and there are no views to measure
    diagnostics = Diagnostics(num_classes=max(1, num_classes), labelled=bool((y >= 0).any()), projection="pca",
                              seed=seed, augment=None, k=k)
    extra, _ = diagnostics.evaluate(None, np.empty((len(rows), 0)), y, z, None, 0)
    # the diagnostics scored a PCA of the subset drawn for them; the honest figures are the shown map's
    extra.pop("trustworthiness", None)
    extra.pop("neighbour_overlap", None)
    if coords is not None:
        xy = np.asarray(coords[rows], dtype=np.float32)
        kk = max(1, min(k, (len(rows) - 1) // 2))
        extra["trustworthiness"] = honesty.trustworthiness(z, xy, k=kk)
        extra["neighbour_overlap"] = float(np.mean(honesty.neighbour_overlap(z, xy, k=kk)))
    metrics.update(extra)
    metrics["evaluation_points"] = int(len(rows))
    return metrics

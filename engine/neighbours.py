"""Exact k nearest neighbours in embedding space, in torch on the training device, chunked for memory.

Entry points:

- ``knn(queries, base, k)`` — every query row against every base row (all-points kNN for the metrics,
  the kNN accuracy and the map's kNN graph).
- ``NeighbourIndex(base).query(i_or_vector, k)`` — one point at a time against a base prepared once
  (the window's neighbours panel: one matrix-vector product per query).
- ``nearest(query, base, k)`` — the same for a single query without keeping an index.
- ``centred_rows(array, normalized)`` — the prepared rows a ``NeighbourIndex`` ranks with, one per
  read-only array: the triplet categories of a click (``engine.metrics.triplets.anchor_categories``)
  read the same rows and the same matrix-vector product, so a click on a 70k x 1280 map makes one
  pass over its embeddings, not two, and holds one prepared copy of them, not two.

All give the same neighbours as scikit-learn's brute-force ``NearestNeighbors`` on float64 input,
ties broken by the lower index. How the search stays exact and fast: candidates are ranked in
float32 — for ``knn`` by one matrix product per chunk, ``|b|²/2 - q·b`` (the order of ``‖q - b‖²``), on
vectors centred on the base's mean (for cosine on unit vectors, since ``‖u - v‖² = 2 - 2 cos`` ranks
like the cosine distance); for ``NeighbourIndex`` by the same difference, one matrix-vector product per query. Centring matters: embeddings
that share a large offset (a freshly initialised network's) make float32's dot-product trick lose
every digit that orders the neighbours. A few more than ``k`` candidates are kept and re-measured in
float64 (centred rows, or unit rows for cosine ``1 - u·v``), then re-ordered.
"""
from __future__ import annotations

import threading
import warnings

import numpy as np
import torch

METRICS = ("cosine", "euclidean")


def _read_only(x) -> bool:
    """A read-only numpy array (a snapshot's, a collection's memory map): it cannot change, so what is
    prepared from it may be kept."""
    return isinstance(x, np.ndarray) and not x.flags.writeable


def _as_tensor(x, device) -> torch.Tensor:
    if _read_only(x):  # a read-only snapshot: only ever read here
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            t = torch.as_tensor(x)
    else:
        t = torch.as_tensor(x)
    return t.to(device=device or t.device, dtype=torch.float32)


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r} is not valid; allowed: {', '.join(METRICS)}")


def _ranking_space(b: torch.Tensor, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(base rows to rank with, the centre to subtract from queries).

    A ranked row is [-(b - c), |b - c|² / 2], a query row [q - c, 1]: their dot product is
    |b - c|² / 2 - (q - c)·(b - c), which orders like ‖q - b‖², in one matrix product per chunk.
    """
    u = torch.nn.functional.normalize(b, dim=1) if metric == "cosine" else b
    centre = u.mean(0)  # any point near the data removes the shared offset: float32 is enough
    centred = u - centre
    return torch.cat([-centred, (centred * centred).sum(1, keepdim=True) / 2], 1), centre


def _to_ranking(q: torch.Tensor, metric: str, centre: torch.Tensor) -> torch.Tensor:
    u = torch.nn.functional.normalize(q, dim=-1) if metric == "cosine" else q
    return torch.cat([u - centre, torch.ones_like(u[:, :1])], 1)


def _extra(k: int) -> int:
    """Spare candidates kept from the float32 ranking before the float64 re-measure: on centred
    vectors float32 misorders only distances within ~1e-7 of each other, a handful at most."""
    return max(4, k // 4)


def _space64(x: torch.Tensor, metric: str, centre: torch.Tensor | None) -> torch.Tensor:
    """Rows in float64 for the exact re-measure: unit rows for cosine (a zero row stays zero, whose
    cosine similarity scikit-learn takes as 0), rows minus ``centre`` for euclidean."""
    x = x.double()
    if metric == "cosine":
        return torch.nn.functional.normalize(x, dim=-1)
    return x if centre is None else x - centre


def _refine(q64: torch.Tensor, bc64: torch.Tensor, bsq: torch.Tensor | None, cand: torch.Tensor, k: int,
            metric: str, self_index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest of candidates ``cand`` (m, c), re-measured in float64.

    ``q64`` (m, d) and ``bc64`` (m, c, d) are queries and candidate rows from ``_space64``; ``bsq``
    (m, c) the candidates' squared norms (euclidean). Ties go to the lower base index.
    """
    dot = torch.bmm(bc64, q64[:, :, None])[:, :, 0]
    if metric == "euclidean":
        d = (bsq + (q64 * q64).sum(1, keepdim=True) - 2 * dot).clamp_min_(0).sqrt_()
    else:
        d = 1 - dot
    if self_index is not None:
        d = d.masked_fill(cand == self_index[:, None], float("inf"))
    cand, by_index = cand.sort(dim=1)
    d = d.gather(1, by_index)
    order = torch.sort(d, dim=1, stable=True).indices[:, :k]
    return d.gather(1, order), cand.gather(1, order)


@torch.no_grad()
def knn(queries, base, k: int, metric: str = "cosine", exclude_self: bool = False,
        chunk_size: int = 4096, device: str | torch.device | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows of ``base`` for each row of ``queries``.

    Returns (distances float32, indices int64), each (n_queries, k), nearest first. Cosine distance
    is 1 - cos; euclidean is ‖q - b‖. ``exclude_self`` drops each query's own row when ``queries`` is
    ``base`` (all-points kNN; row i of ``queries`` is row i of ``base``).
    """
    _check_metric(metric)
    q, b = _as_tensor(queries, device), _as_tensor(base, device)
    if b.device != q.device:
        b = b.to(q.device)
    if q.ndim != 2 or b.ndim != 2 or q.shape[1] != b.shape[1]:
        raise ValueError(f"queries {tuple(q.shape)} and base {tuple(b.shape)}: both must be 2-D "
                         "with the same number of columns")
    available = len(b) - (1 if exclude_self else 0)
    if k < 1 or k > available:
        raise ValueError(f"k = {k} neighbours asked but only {available} other points exist; "
                         f"allowed: 1 to {available}")
    if exclude_self and len(q) != len(b):
        raise ValueError(f"exclude_self needs queries to be base; got {len(q)} queries, {len(b)} base rows")
    n_cand = min(k + _extra(k) + (1 if exclude_self else 0), len(b))
    ranked, centre = _ranking_space(b, metric)
    # float64 copy of the base for the re-measure, centred (euclidean) so |q|² + |b|² - 2 q·b keeps
    # its digits; rows are gathered from it per candidate.
    centre64 = b.mean(0, dtype=torch.float64) if metric == "euclidean" else None
    b64 = _space64(b, metric, centre64)
    bsq64 = (b64 * b64).sum(1)
    block = max(1, (1 << 22) // (n_cand * b.shape[1]))  # gathered float64 rows stay near 32 MB
    # One buffer for the gathered rows, reused by every block: allocating ~32 MB afresh per block
    # fragments glibc's heap (small tensors land between the freed blocks), and a 5000 x 1280
    # retrieval's kNN grew the heap to 12 GB that way (3x slower from the page faults).
    gathered = torch.empty((block * n_cand, b.shape[1]), dtype=torch.float64, device=b64.device)
    dists, idx = [], []
    for start in range(0, len(q), chunk_size):
        qc = q[start:start + chunk_size]
        # |q|² is constant per row: it does not change the order.
        d = _to_ranking(qc, metric, centre) @ ranked.T
        self_index = None
        if exclude_self:
            self_index = torch.arange(start, start + len(qc), device=q.device)
            d[torch.arange(len(qc), device=q.device), self_index] = float("inf")
        cand = torch.topk(d, n_cand, dim=1, largest=False).indices
        q64 = _space64(qc, metric, centre64)
        for s in range(0, len(qc), block):
            cb = cand[s:s + block]
            rows = torch.index_select(b64, 0, cb.reshape(-1), out=gathered[:cb.numel()]).view(*cb.shape, -1)
            dc, ic = _refine(q64[s:s + block], rows, bsq64[cb], cb, k, metric,
                             None if self_index is None else self_index[s:s + block])
            dists.append(dc)
            idx.append(ic)
    return torch.cat(dists).float().cpu().numpy(), torch.cat(idx).cpu().numpy()


class CentredRows:
    """Rows prepared for one query at a time: unit rows (``normalized``) or the rows as they are,
    minus their mean ``centre``, with half their squared norms. ``ranking(row)`` is
    ``|b|²/2 - b·q`` over every prepared row b, for q the prepared row ``row``: the order of
    ``‖q - b‖²``, which is ``2 ranking + |q|²``. The last row's ranking is kept (read it, never write
    it): the neighbours of a click and its triplet categories ask for the same one."""

    def __init__(self, rows: torch.Tensor, normalized: bool):
        u = torch.nn.functional.normalize(rows, dim=1) if normalized else rows
        self.centre = u.mean(0)
        self.rows = u - self.centre
        self.half_sq = (self.rows * self.rows).sum(1).mul_(0.5)
        self._last: tuple[int, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def ranking_of(self, centred_query: torch.Tensor) -> torch.Tensor:
        return torch.addmv(self.half_sq, self.rows, centred_query, alpha=-1)

    def ranking(self, row: int) -> torch.Tensor:
        last = self._last  # one read: another thread may replace it meanwhile
        if last is not None and last[0] == row:
            return last[1]
        ranking = self.ranking_of(self.rows[row])
        self._last = (row, ranking)
        return ranking


_SHARED: list[tuple] = []  # (array, normalized, device, CentredRows) of the last read-only arrays, newest first
_SHARED_KEPT = 2  # a click's snapshot, and the one before (the map's other view, a run beside)
_SHARED_LOCK = threading.Lock()  # the window prepares them in a worker as a large run opens


def centred_rows(embeddings, normalized: bool, device: str | torch.device | None = None) -> CentredRows:
    """The ``CentredRows`` of ``embeddings``: for a read-only numpy array (a snapshot's, a collection's
    memory map: they cannot change) the same object every time it is asked, kept for the last
    ``_SHARED_KEPT`` arrays; for anything else made anew."""
    base = _as_tensor(embeddings, device)
    if base.ndim != 2 or len(base) < 2:
        raise ValueError(f"embeddings have shape {tuple(base.shape)}: need a 2-D array of at least 2 rows")
    if not _read_only(embeddings):
        return CentredRows(base, normalized)
    key = (bool(normalized), str(base.device))
    with _SHARED_LOCK:
        for entry in _SHARED:
            if entry[0] is embeddings and entry[1:3] == key:
                return entry[3]
    rows = CentredRows(base, normalized)  # outside the lock: seconds for a million rows
    with _SHARED_LOCK:
        _SHARED.insert(0, (embeddings, *key, rows))
        del _SHARED[_SHARED_KEPT:]
    return rows


class NeighbourIndex:
    """A base set prepared once for many single queries (the window clicks point after point).

    Keeps, on ``device``, the base rows as ranked (unit rows for cosine) minus their mean, and half
    their squared norms (``centred_rows``: shared by every index and the triplet categories of one
    read-only array): one query is then one matrix-vector product over the base,
    ``|b - c|²/2 - (q - c)·(b - c)`` (the order of ``‖q - b‖²``, the same ranking as ``knn``'s), a
    top-k and a float64 re-measure of a few rows. Centring keeps float32's digits where the rows
    share a large offset (a collapsed or freshly initialised network's).
    """

    def __init__(self, base, metric: str = "cosine", device: str | torch.device | None = None,
                 unit_rows: bool = True):
        """``unit_rows`` (cosine): rank in the centred space above (a copy of the base, built once:
        for many queries); ``False`` ranks by q·b / |b| instead (no copy: cheaper to build, for a
        single query; float32 then resolves cosine distances only down to ~1e-7 before the float64
        re-measure)."""
        _check_metric(metric)
        self.metric = metric
        self.base = _as_tensor(base, device)
        if self.base.ndim != 2 or len(self.base) < 2:
            raise ValueError(f"base has shape {tuple(self.base.shape)}: need a 2-D array of at least 2 rows")
        self._centred = unit_rows or metric != "cosine"
        if self._centred:
            self._rows = (centred_rows(base, metric == "cosine", self.base.device) if _read_only(base)
                          else CentredRows(self.base, metric == "cosine"))
        else:
            self._inv_norms = 1.0 / self.base.norm(dim=1).clamp_min(1e-30)

    def __len__(self) -> int:
        return len(self.base)

    @torch.no_grad()
    def query(self, query, k: int, exclude_self: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest rows to ``query``: an int row index of the base, or a vector (d,).

        A row index excludes that row itself unless ``exclude_self=False``; a vector excludes
        nothing. Returns (distances float32 (k,), indices int64 (k,)), nearest first.
        """
        if isinstance(query, (int, np.integer)):
            row = int(query)
            if not 0 <= row < len(self.base):
                raise ValueError(f"query index {row} is out of range; allowed: 0 to {len(self.base) - 1}")
            vector = self.base[row]
            self_index = row if exclude_self is None or exclude_self else None
        else:
            vector = _as_tensor(query, self.base.device).reshape(-1)
            if vector.shape[0] != self.base.shape[1]:
                raise ValueError(f"query vector has {vector.shape[0]} values; the base has "
                                 f"{self.base.shape[1]} columns")
            self_index = None
        available = len(self.base) - (self_index is not None)
        if k < 1 or k > available:
            raise ValueError(f"k = {k} neighbours asked but only {available} other points exist; "
                             f"allowed: 1 to {available}")
        target = torch.nn.functional.normalize(vector, dim=0) if self.metric == "cosine" else vector
        if self._centred and isinstance(query, (int, np.integer)):
            d = self._rows.ranking(row).clone()  # shared with the triplet categories of the same click
        elif self._centred:
            d = self._rows.ranking_of(target - self._rows.centre)
        else:
            d = -(self.base @ target) * self._inv_norms
        if self_index is not None:
            d[self_index] = float("inf")
        n_cand = min(k + _extra(k) + (self_index is not None), len(self.base))
        cand = torch.topk(d, n_cand, largest=False).indices[None]
        si = None if self_index is None else torch.tensor([self_index], device=d.device)
        # A few rows: centre on the query itself, so the float64 re-measure is a direct ‖b - q‖.
        centre = vector.double() if self.metric == "euclidean" else None
        bc64 = _space64(self.base[cand], self.metric, centre)
        q64 = _space64(vector[None], self.metric, centre)
        dc, ic = _refine(q64, bc64, (bc64 * bc64).sum(-1), cand, k, self.metric, si)
        return dc[0].float().cpu().numpy(), ic[0].cpu().numpy()


def nearest(query, base, k: int, metric: str = "cosine",
            device: str | torch.device | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest rows of ``base`` to one point: an int row index of ``base`` (that row itself is
    left out) or a vector (d,). Returns (distances float32 (k,), indices int64 (k,)), nearest first.

    For many queries against the same base, build a ``NeighbourIndex`` once and call ``.query``.
    """
    return NeighbourIndex(base, metric, device, unit_rows=False).query(query, k)

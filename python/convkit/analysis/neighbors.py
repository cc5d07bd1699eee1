"""k nearest neighbours in any vector space (raw pixels, or features of a layer), and retrieval
precision@k over a labelled set.

Distances are Euclidean (``metric='euclidean'``) or cosine (``metric='cosine'``: 1 - cos, i.e.
Euclidean ranking of L2-normalized rows), computed by blocks of queries as |q|^2 + |d|^2 - 2 q.d,
so a 10,000 x 10,000 search needs only a block of distances in memory. The products q.d are taken
in float32 when both inputs are float32 (twice as fast; rankings differ only between near-ties)
and in float64 otherwise; the rest is float64.
Ties are broken by the lower database index, so results are deterministic.
"""
from __future__ import annotations

import numpy as np

from . import _util as U

_METRICS = ("euclidean", "cosine")


def _vectors(a, fn, name):
    a = U.as_images(a, fn, name, ndim=np.ndim(a) if np.ndim(a) >= 2 else 2)
    return a.reshape(a.shape[0], -1)


def _prep(a, metric, dtype):
    if metric == "cosine":
        a64 = a.astype(np.float64)
        norm = np.linalg.norm(a64, axis=1, keepdims=True)
        a = a64 / np.where(norm > 0, norm, 1.0)
    return a.astype(dtype, copy=False)


def _block_topk(q, d, k, exclude, out_idx, out_dist, row0):
    d2 = np.einsum("ij,ij->i", d, d, dtype=np.float64)
    q2 = np.einsum("ij,ij->i", q, q, dtype=np.float64)
    dist = q2[:, None] + d2[None, :] - 2.0 * (q @ d.T).astype(np.float64)
    np.maximum(dist, 0.0, out=dist)
    if exclude is not None:
        ok = exclude >= 0
        dist[np.nonzero(ok)[0], exclude[ok]] = np.inf
    part = np.argpartition(dist, k - 1, axis=1)[:, :k] if k < dist.shape[1] else np.tile(
        np.arange(dist.shape[1]), (dist.shape[0], 1))
    pd = np.take_along_axis(dist, part, axis=1)
    order = np.lexsort((part, pd), axis=1)  # by distance, then by index
    out_idx[row0:row0 + q.shape[0]] = np.take_along_axis(part, order, axis=1)
    out_dist[row0:row0 + q.shape[0]] = np.sqrt(np.take_along_axis(pd, order, axis=1))


def nearest_neighbors(queries, database, k: int = 5, *, metric: str = "euclidean", query_indices=None,
                      block: int = 512):
    """Indices [Q, k] and distances [Q, k] of the k nearest database rows for every query row.

    queries [Q, ...], database [M, ...] (images are flattened). query_indices [Q]: the database
    position of each query (or -1), which is then never returned as its own neighbour.
    For metric='cosine' the distances returned are Euclidean distances of the normalized rows.
    """
    fn = "nearest_neighbors"
    if metric not in _METRICS:
        raise ValueError(f"{fn}: metric must be one of {_METRICS}, got {metric!r}")
    q = _vectors(queries, fn, "queries")
    d = _vectors(database, fn, "database")
    dtype = np.float32 if q.dtype == np.float32 and d.dtype == np.float32 else np.float64
    q, d = _prep(q, metric, dtype), _prep(d, metric, dtype)
    if q.shape[1] != d.shape[1]:
        raise ValueError(f"{fn}: queries have {q.shape[1]} values per row but database rows have {d.shape[1]}")
    exclude = None
    if query_indices is not None:
        exclude = U.as_labels(query_indices, q.shape[0], fn, "query_indices")
        if exclude.max() >= d.shape[0] or exclude.min() < -1:
            raise ValueError(f"{fn}: query_indices must be in [-1, {d.shape[0] - 1}]")
    avail = d.shape[0] - (1 if exclude is not None else 0)
    k = U.as_int(k, fn, "k", 1, max(1, avail))
    block = U.as_int(block, fn, "block", 1)
    idx = np.empty((q.shape[0], k), dtype=np.int64)
    dist = np.empty((q.shape[0], k), dtype=np.float64)
    for a, b in U.batches(q.shape[0], block):
        _block_topk(q[a:b], d, k, None if exclude is None else exclude[a:b], idx, dist, a)
    return idx, dist


def precision_at_k(vectors, labels, k: int = 10, *, metric: str = "euclidean", queries=None,
                   block: int = 512) -> float:
    """Mean over queries of the fraction of its k nearest neighbours (itself excluded) sharing its label.

    vectors [N, ...] (pixels or features), labels [N]. queries: indices of the rows used as queries
    (default: all of them, leave-one-out over the whole set).
    """
    fn = "precision_at_k"
    v = _vectors(vectors, fn, "vectors")
    y = U.as_labels(labels, v.shape[0], fn)
    if v.shape[0] < 2:
        raise ValueError(f"{fn}: need at least 2 labelled rows, got {v.shape[0]}")
    qi = np.arange(v.shape[0]) if queries is None else U.as_labels(queries, np.size(queries), fn, "queries")
    if qi.size == 0 or qi.min() < 0 or qi.max() >= v.shape[0]:
        raise ValueError(f"{fn}: queries must be non-empty indices into the {v.shape[0]} rows")
    idx, _ = nearest_neighbors(v[qi], v, k, metric=metric, query_indices=qi, block=block)
    return float(np.mean(y[idx] == y[qi][:, None]))


def knn_accuracy(vectors, labels, k: int = 5, *, metric: str = "euclidean") -> float:
    """Leave-one-out k-nearest-neighbour classification accuracy (majority vote; a tie goes to the
    tied class whose nearest member is closest). Used to score 2-D embeddings."""
    fn = "knn_accuracy"
    v = _vectors(vectors, fn, "vectors")
    y = U.as_labels(labels, v.shape[0], fn)
    idx, _ = nearest_neighbors(v, v, k, metric=metric, query_indices=np.arange(v.shape[0]))
    ny = y[idx]
    classes = np.unique(y)
    votes = (ny[:, :, None] == classes[None, None, :]).sum(axis=1)  # [N, classes]
    # first position (0 = nearest) at which each class appears; k if never
    first = np.where(ny[:, :, None] == classes[None, None, :], np.arange(ny.shape[1])[None, :, None],
                     ny.shape[1]).min(axis=1)
    key = votes * (ny.shape[1] + 1) - first  # more votes first, then the earliest appearance
    pred = classes[key.argmax(axis=1)]
    return float(np.mean(pred == y))

"""Dimensionality reduction of features: PCA (written here with numpy's SVD) and t-SNE (from a
well-kept library: openTSNE when installed, else scikit-learn; an optional extra)."""
from __future__ import annotations

import numpy as np

from . import _util as U


class PCA:
    """Principal component analysis by the SVD of the centred data.

    X - mean = U S V^T;  components_ = first rows of V^T (unit vectors, orthogonal);
    explained_variance_[i] = S[i]^2 / (n - 1) (the variance of the data along component i);
    explained_variance_ratio_ = that over the total variance. Each component's sign is fixed so
    that its largest-magnitude entry is positive (results do not depend on the LAPACK build).
    """

    def __init__(self, n_components: int = 2):
        self.n_components = U.as_int(n_components, "PCA", "n_components", 1)

    def fit(self, x) -> "PCA":
        fn = "PCA.fit"
        a = U.as_images(x, fn, "x", ndim=max(2, np.ndim(x)))
        a = a.reshape(a.shape[0], -1).astype(np.float64)
        n, d = a.shape
        if n < 2:
            raise ValueError(f"{fn}: need at least 2 rows, got {n}")
        k = self.n_components
        if k > min(n, d):
            raise ValueError(f"{fn}: n_components={k} exceeds min(rows, columns) = {min(n, d)}")
        self.mean_ = a.mean(axis=0)
        _, s, vt = np.linalg.svd(a - self.mean_, full_matrices=False)
        signs = np.sign(vt[np.arange(vt.shape[0]), np.abs(vt).argmax(axis=1)])
        signs[signs == 0] = 1.0
        vt *= signs[:, None]
        var = s ** 2 / (n - 1)
        total = var.sum()
        self.components_ = vt[:k]
        self.singular_values_ = s[:k]
        self.explained_variance_ = var[:k]
        self.explained_variance_ratio_ = var[:k] / total if total > 0 else np.zeros(k)
        self.n_features_ = d
        return self

    def transform(self, x) -> np.ndarray:
        fn = "PCA.transform"
        if not hasattr(self, "components_"):
            raise RuntimeError(f"{fn}: call fit first")
        a = U.as_images(x, fn, "x", ndim=max(2, np.ndim(x)))
        a = a.reshape(a.shape[0], -1).astype(np.float64)
        if a.shape[1] != self.n_features_:
            raise ValueError(f"{fn}: x has {a.shape[1]} values per row, the PCA was fitted on {self.n_features_}")
        return (a - self.mean_) @ self.components_.T

    def fit_transform(self, x) -> np.ndarray:
        return self.fit(x).transform(x)

    def inverse_transform(self, z) -> np.ndarray:
        return np.asarray(z, dtype=np.float64) @ self.components_ + self.mean_


def pca(x, n_components: int = 2):
    """(embedding [N, n_components], fitted PCA) of the rows of x (images are flattened)."""
    p = PCA(n_components)
    return p.fit_transform(x), p


TSNE_MISSING = ("t-SNE needs openTSNE or scikit-learn, and neither is installed. Install one: "
                "pip install 'convkit[tsne]' (openTSNE) or pip install scikit-learn")


def tsne_backend(backend: str = "auto") -> str:
    """The t-SNE library to use: 'opentsne' or 'sklearn' (ImportError with how to install when none)."""
    if backend not in ("auto", "opentsne", "sklearn"):
        raise ValueError(f"tsne: backend must be 'auto', 'opentsne' or 'sklearn', got {backend!r}")
    if backend in ("auto", "opentsne"):
        try:
            import openTSNE  # noqa: F401
            return "opentsne"
        except ImportError:
            if backend == "opentsne":
                raise ImportError("tsne: backend='opentsne' but openTSNE is not installed: "
                                  "pip install 'convkit[tsne]'") from None
    try:
        import sklearn.manifold  # noqa: F401
        return "sklearn"
    except ImportError:
        if backend == "sklearn":
            raise ImportError("tsne: backend='sklearn' but scikit-learn is not installed: "
                              "pip install scikit-learn") from None
        raise ImportError(TSNE_MISSING) from None


def tsne(x, n_components: int = 2, *, perplexity: float = 30.0, pca_dims: int | None = 50, seed: int = 0,
         backend: str = "auto", n_jobs: int = 1, max_iter: int = 1000) -> np.ndarray:
    """t-SNE embedding [N, n_components] of the rows of x (first reduced to `pca_dims` by PCA when
    they have more columns, as is customary; None skips that). Deterministic for a given seed.
    max_iter: optimization steps (scikit-learn needs at least 250)."""
    fn = "tsne"
    a = U.as_images(x, fn, "x", ndim=max(2, np.ndim(x)))
    a = a.reshape(a.shape[0], -1).astype(np.float64)
    n = a.shape[0]
    n_components = U.as_int(n_components, fn, "n_components", 1, 3)
    max_iter = U.as_int(max_iter, fn, "max_iter", 250)
    perplexity = U.as_float(perplexity, fn, "perplexity", lo=1.0)
    if n < 4:
        raise ValueError(f"{fn}: need at least 4 rows, got {n}")
    perplexity = min(perplexity, (n - 1) / 3.0)  # both libraries require perplexity < n / 3
    which = tsne_backend(backend)
    if pca_dims is not None and a.shape[1] > pca_dims and n > pca_dims:
        a = PCA(pca_dims).fit_transform(a)
    if which == "opentsne":
        import openTSNE
        emb = openTSNE.TSNE(n_components=n_components, perplexity=perplexity, random_state=seed,
                            n_jobs=n_jobs, n_iter=max_iter, verbose=False).fit(a)
        return np.asarray(emb, dtype=np.float64)
    import inspect

    from sklearn.manifold import TSNE
    iters = "max_iter" if "max_iter" in inspect.signature(TSNE).parameters else "n_iter"  # renamed in 1.5
    tsne_ = TSNE(n_components=n_components, perplexity=perplexity, random_state=seed, init="pca",
                 n_jobs=n_jobs, **{iters: max_iter})
    # scikit-learn's Barnes-Hut gradient runs on every OpenMP thread whatever n_jobs says; on a busy 2-core
    # machine that made 200 points take 30-45 s instead of about 1 s (measured). Hold OpenMP to n_jobs.
    with _openmp_threads(n_jobs):
        return tsne_.fit_transform(a).astype(np.float64)


def _openmp_threads(n: int):
    """A context capping the OpenMP pools of the libraries already loaded (threadpoolctl, which
    scikit-learn depends on) at n threads; n <= 0 or no threadpoolctl leaves them alone."""
    import contextlib
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(n, user_api="openmp") if n and n > 0 else contextlib.nullcontext()

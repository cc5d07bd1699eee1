"""Plain float64 references for the analysis tools (the specification; loops, written for clarity)."""
import numpy as np


def softmax_row(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def occlusion(f, x, target, window, stride, baseline, cover_edges=True):
    """Occlusion map by the definition: for every image and every window position, copy the image,
    paint the window with the baseline, run f on that ONE image, record p_t(orig) - p_t(occluded);
    each pixel gets the mean of the drops of the windows that cover it.

    f: [1, C, H, W] -> logits [1, K]; baseline: a scalar or an array shaped like x."""
    x = np.asarray(x, np.float64)
    n, c, h, w = x.shape
    wh, ww = window
    sh, sw = stride
    out = np.zeros((n, h, w))
    for i in range(n):
        p0 = softmax_row(f(x[i:i + 1])[0])[target[i]]
        ys = list(range(0, h - wh + 1, sh))
        xs = list(range(0, w - ww + 1, sw))
        if cover_edges and ys[-1] != h - wh:
            ys.append(h - wh)
        if cover_edges and xs[-1] != w - ww:
            xs.append(w - ww)
        total = np.zeros((h, w))
        count = np.zeros((h, w))
        for y0 in ys:
            for x0 in xs:
                xo = x[i].copy()
                for ch in range(c):
                    for yy in range(y0, y0 + wh):
                        for xx in range(x0, x0 + ww):
                            xo[ch, yy, xx] = baseline if np.isscalar(baseline) else baseline[i, ch, yy, xx]
                p = softmax_row(f(xo[None])[0])[target[i]]
                for yy in range(y0, y0 + wh):
                    for xx in range(x0, x0 + ww):
                        total[yy, xx] += p0 - p
                        count[yy, xx] += 1
        for yy in range(h):
            for xx in range(w):
                out[i, yy, xx] = total[yy, xx] / count[yy, xx] if count[yy, xx] else 0.0
    return out


def saliency_fd(f, x, target, eps=1e-6):
    """max over channels of |d logit_t / d x| by central differences, one pixel at a time."""
    x = np.asarray(x, np.float64)
    n, c, h, w = x.shape
    out = np.zeros((n, h, w))
    for i in range(n):
        for yy in range(h):
            for xx in range(w):
                best = 0.0
                for ch in range(c):
                    xp = x[i:i + 1].copy()
                    xm = x[i:i + 1].copy()
                    xp[0, ch, yy, xx] += eps
                    xm[0, ch, yy, xx] -= eps
                    g = (f(xp)[0, target[i]] - f(xm)[0, target[i]]) / (2 * eps)
                    best = max(best, abs(g))
                out[i, yy, xx] = best
    return out


def precision_at_k(v, labels, k):
    """Leave-one-out: for each row, sort all other rows by Euclidean distance (ties: lower index)
    and count label matches among the first k."""
    v = np.asarray(v, np.float64).reshape(len(v), -1)
    hits = 0
    for i in range(len(v)):
        d = [(float(np.sum((v[i] - v[j]) ** 2)), j) for j in range(len(v)) if j != i]
        d.sort()
        hits += sum(labels[j] == labels[i] for _, j in d[:k])
    return hits / (len(v) * k)


def pca(x, k):
    """PCA from the eigendecomposition of the covariance matrix (a different route than the SVD)."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    xc = x - x.mean(axis=0)
    cov = xc.T @ xc / (len(x) - 1)
    vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    return vals[:k], vals[:k] / vals.sum(), vecs[:, :k].T


def spearman(a, b):
    """Spearman correlation: Pearson correlation of average ranks."""
    def ranks(v):
        v = np.asarray(v, np.float64).ravel()
        r = np.empty(len(v))
        order = sorted(range(len(v)), key=lambda i: v[i])
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for t in range(i, j + 1):
                r[order[t]] = (i + j) / 2
            i = j + 1
        return r
    ra, rb = ranks(a), ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    den = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
    return float((ra * rb).sum() / den) if den > 0 else 0.0


class TinyNet:
    """A plain numpy network with convkit's forward/backward protocol, for testing the tools before
    (and independently of) convkit.nn: logits = W2 tanh(W1 flatten(x) + b1) + b2.

    forward caches its input; backward(dy, param_grads=False) returns dx (d<logits, dy>/dx)."""

    def __init__(self, c, h, w, k=3, hidden=16, seed=0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        d = c * h * w
        self.w1 = (rng.standard_normal((hidden, d)) / np.sqrt(d)).astype(dtype)
        self.b1 = (0.1 * rng.standard_normal(hidden)).astype(dtype)
        self.w2 = (rng.standard_normal((k, hidden)) / np.sqrt(hidden)).astype(dtype)
        self.b2 = (0.1 * rng.standard_normal(k)).astype(dtype)
        self.training = True
        self.calls = 0
        self.cache = None

    def forward(self, x):
        x = np.asarray(x)
        self.calls += 1
        a = x.reshape(len(x), -1) @ self.w1.T + self.b1
        hdn = np.tanh(a)
        self.cache = (x.shape, hdn)
        return hdn @ self.w2.T + self.b2

    __call__ = forward

    def backward(self, dy, param_grads=True):
        shape, hdn = self.cache
        da = (dy @ self.w2) * (1 - hdn ** 2)
        return (da @ self.w1).reshape(shape)

    def eval(self):
        self.training = False
        return self

    def train(self, mode=True):
        self.training = mode
        return self

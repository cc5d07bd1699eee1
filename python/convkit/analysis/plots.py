"""Pictures: image and filter grids, overlays of maps on images, neighbour strips, embedding
scatters and thumbnail maps. PNGs are written with matplotlib's Agg canvas (no display, no global
pyplot state); array-returning helpers (tile_grid, filter_grid, overlay, thumbnail_map) need only numpy.
"""
from __future__ import annotations

import os

import numpy as np

from . import _util as U


# ---- arrays ---------------------------------------------------------------------------------------

def _minmax(a: np.ndarray, axes) -> np.ndarray:
    lo = a.min(axis=axes, keepdims=True)
    hi = a.max(axis=axes, keepdims=True)
    span = hi - lo
    return np.where(span > 0, (a - lo) / np.where(span > 0, span, 1.0), 0.5)


def to_display(images, normalize: str = "image") -> np.ndarray:
    """Images [N, C, H, W] (C = 1 or 3) as RGB floats [N, H, W, 3] in [0, 1].

    normalize: 'image' (each image min-max scaled, the default), 'global' (one scale for all) or
    'none' (values clipped to [0, 1])."""
    fn = "to_display"
    x = U.as_images(images, fn, "images").astype(np.float64)
    if x.shape[1] not in (1, 3):
        raise ValueError(f"{fn}: images must have 1 or 3 channels to be drawn, got {x.shape[1]}")
    if normalize == "image":
        x = _minmax(x, (1, 2, 3))
    elif normalize == "global":
        x = _minmax(x, (0, 1, 2, 3))
    elif normalize == "none":
        x = np.clip(x, 0.0, 1.0)
    else:
        raise ValueError(f"{fn}: normalize must be 'image', 'global' or 'none', got {normalize!r}")
    x = x.transpose(0, 2, 3, 1)
    return np.repeat(x, 3, axis=3) if x.shape[3] == 1 else x


def tile_grid(tiles, ncols: int | None = None, pad: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """Tiles [N, h, w] or [N, h, w, 3] laid out row by row in a grid with `pad` pixels between them."""
    t = np.asarray(tiles, dtype=np.float64)
    if t.ndim not in (3, 4) or t.shape[0] == 0:
        raise ValueError(f"tile_grid: tiles must have shape [N, h, w] or [N, h, w, 3], got {list(t.shape)}")
    n, h, w = t.shape[:3]
    ncols = int(np.ceil(np.sqrt(n))) if ncols is None else max(1, min(int(ncols), n))
    nrows = int(np.ceil(n / ncols))
    shape = (nrows * h + (nrows + 1) * pad, ncols * w + (ncols + 1) * pad) + t.shape[3:]
    grid = np.full(shape, pad_value, dtype=np.float64)
    for i in range(n):
        r, c = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y:y + h, x:x + w] = t[i]
    return grid


def filter_grid(weight, normalize: str = "filter", ncols: int | None = None, pad: int = 1,
                rgb: bool | None = None) -> np.ndarray:
    """Conv weights [OC, IC, KH, KW] as one image in [0, 1].

    IC == 3 (and rgb not False): one RGB tile per filter (the lecture's AlexNet conv1 picture).
    IC == 1: one grey tile per filter. Otherwise one row per filter and one column per input
    channel (grey tiles). normalize: 'filter' (min-max over each filter's weights: all its channels
    share one scale, so their relative strength shows), 'tile' (each tile on its own) or 'global'.
    """
    fn = "filter_grid"
    w = U.as_images(weight, fn, "weight").astype(np.float64)
    if normalize not in ("filter", "tile", "global"):
        raise ValueError(f"{fn}: normalize must be 'filter', 'tile' or 'global', got {normalize!r}")
    oc, ic = w.shape[:2]
    if normalize == "filter":
        w = _minmax(w, (1, 2, 3))
    elif normalize == "global":
        w = _minmax(w, (0, 1, 2, 3))
    else:
        w = _minmax(w, (2, 3))
    if ic == 3 and rgb is not False:
        return tile_grid(w.transpose(0, 2, 3, 1), ncols, pad)
    if rgb:
        raise ValueError(f"{fn}: rgb=True needs 3 input channels, the weights have {ic}")
    if ic == 1:
        return tile_grid(w[:, 0], ncols, pad)
    return tile_grid(w.reshape(oc * ic, *w.shape[2:]), ic, pad)


def colorize(maps, cmap: str = "jet") -> np.ndarray:
    """Maps [N, H, W] (each min-max scaled) through a matplotlib colormap: RGB [N, H, W, 3]."""
    import matplotlib

    m = U.as_images(maps, "colorize", "maps", ndim=3).astype(np.float64)
    return matplotlib.colormaps[cmap](_minmax(m, (1, 2)))[..., :3]


def overlay(images, maps, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Maps [N, H, W] coloured and blended over images [N, C, H, W]: RGB [N, H, W, 3] in [0, 1]."""
    fn = "overlay"
    img = to_display(images)
    m = U.as_images(maps, fn, "maps", ndim=3)
    if m.shape != img.shape[:3]:
        raise ValueError(f"{fn}: maps must have shape [N, H, W] = {list(img.shape[:3])} to match the images, "
                         f"got {list(m.shape)}")
    alpha = U.as_float(alpha, fn, "alpha", 0.0, 1.0)
    return (1 - alpha) * img + alpha * colorize(m, cmap)


def thumbnail_map(embedding, images, grid: int = 24, thumb: int | None = None) -> np.ndarray:
    """A picture of the 2-D embedding: the plane cut into grid x grid cells, each cell showing the
    image whose point lies nearest the cell's centre among those in it. Returns RGB [S, S, 3]."""
    fn = "thumbnail_map"
    e = np.asarray(embedding, dtype=np.float64)
    imgs = to_display(images)
    if e.ndim != 2 or e.shape[1] != 2 or e.shape[0] != imgs.shape[0]:
        raise ValueError(f"{fn}: embedding must have shape [N, 2] with N = {imgs.shape[0]}, got {list(e.shape)}")
    grid = U.as_int(grid, fn, "grid", 1)
    h, w = imgs.shape[1:3]
    if thumb is not None and (thumb != h or thumb != w):
        ys = (np.arange(thumb) * h // thumb)
        xs = (np.arange(thumb) * w // thumb)
        imgs = imgs[:, ys][:, :, xs]
        h = w = thumb
    u = _minmax(e, (0,)) * (grid - 1e-9)
    cell = np.floor(u).astype(np.int64)
    centre_dist = np.sum((u - cell - 0.5) ** 2, axis=1)
    out = np.ones((grid * h, grid * w, 3))
    best = {}
    for i in np.argsort(centre_dist, kind="stable"):
        key = (int(cell[i, 1]), int(cell[i, 0]))
        if key not in best:
            best[key] = i
    for (r, c), i in best.items():
        rr = grid - 1 - r  # y grows upwards in the plot
        out[rr * h:(rr + 1) * h, c * w:(c + 1) * w] = imgs[i]
    return out


# ---- figures --------------------------------------------------------------------------------------

def _figure(w, h):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save(fig, path) -> str:
    path = os.fspath(path)
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def save_image(array, path, title: str = "", scale: float | None = None, cmap: str = "gray") -> str:
    """An [H, W] or [H, W, 3] array in [0, 1] as a PNG with an optional title. scale: inches per
    pixel (default: the longer side about 8 inches, at most a quarter inch per pixel)."""
    a = np.asarray(array)
    h, w = a.shape[:2]
    if scale is None:
        scale = min(0.25, 8.0 / max(h, w))
    fig = _figure(max(3.0, min(14.0, w * scale)), max(2.0, min(14.0, h * scale)) + (0.4 if title else 0))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(a, cmap=cmap if a.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=11)
    return save(fig, path)


def plot_images_row(fig, gs_row, imgs, titles, colors=None):
    for j, im in enumerate(imgs):
        ax = fig.add_subplot(gs_row[j])
        ax.imshow(im, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None and titles[j]:
            ax.set_title(titles[j], fontsize=8, loc="left" if titles[j].endswith("space") else "center")
        if colors is not None and colors[j] is not None:
            for s in ax.spines.values():
                s.set_edgecolor(colors[j])
                s.set_linewidth(2.5)


def plot_neighbors(images, queries, pixel_idx, feature_idx, path, labels=None, class_names=None,
                   title: str = "Nearest neighbours: pixel space (left) vs feature space (right)") -> str:
    """For each query index: the query, its k nearest in pixel space, and its k nearest in feature
    space (frames green where the label matches the query's, red where not)."""
    imgs = to_display(images)
    q = np.asarray(queries, dtype=np.int64)
    pi, fi = np.asarray(pixel_idx), np.asarray(feature_idx)
    k = pi.shape[1]
    name = (lambda c: class_names[c] if class_names is not None else str(c))
    # columns: query | gap | k pixel-space neighbours | gap | k feature-space neighbours
    ratios = [1, 0.35] + [1] * k + [0.35] + [1] * k
    fig = _figure(1.0 * (2 * k + 2), 1.2 * len(q) + 0.7)
    gs = fig.add_gridspec(len(q), len(ratios), width_ratios=ratios, wspace=0.08, hspace=0.4)
    lab = None if labels is None else np.asarray(labels)
    for r, qi in enumerate(q):
        cells = [gs[r, 0]] + [gs[r, 2 + j] for j in range(k)] + [gs[r, 3 + k + j] for j in range(k)]
        ims = [imgs[qi]] + [imgs[j] for j in pi[r]] + [imgs[j] for j in fi[r]]
        titles = [""] * (2 * k + 1)
        cols = None
        if lab is not None:
            titles[0] = f"query: {name(lab[qi])}"
            cols = [None] + ["#1a9850" if lab[j] == lab[qi] else "#d73027" for j in list(pi[r]) + list(fi[r])]
        if r == 0:
            titles[1] = "pixel space"
            titles[1 + k] = "feature space"
        plot_images_row(fig, cells, ims, titles, cols)
    fig.suptitle(title, fontsize=11)
    return save(fig, path)


def plot_embedding(embedding, labels, path, class_names=None, title: str = "", score: str = "") -> str:
    """A 2-D scatter coloured by class with a legend naming the classes."""
    import matplotlib

    e = np.asarray(embedding, dtype=np.float64)
    y = np.asarray(labels)
    fig = _figure(7.5, 6.0)
    ax = fig.add_subplot(1, 1, 1)
    cmap = matplotlib.colormaps["tab10" if len(np.unique(y)) <= 10 else "tab20"]
    for i, c in enumerate(np.unique(y)):
        m = y == c
        ax.scatter(e[m, 0], e[m, 1], s=6, color=cmap(i % cmap.N), alpha=0.8,
                   label=class_names[c] if class_names is not None else str(c))
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, markerscale=2.5, frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title + (f"\n{score}" if score else ""), fontsize=10)
    return save(fig, path)


def plot_attributions(images, maps: dict, path, titles=None, alpha: float = 0.5, cmap: str = "jet") -> str:
    """One row per image: the image, then each named map [N, H, W] overlaid on it (and shown alone)."""
    imgs = to_display(images)
    n = imgs.shape[0]
    names = list(maps)
    fig = _figure(1.6 * (1 + 2 * len(names)), 1.8 * n + 0.4)
    gs = fig.add_gridspec(n, 1 + 2 * len(names), wspace=0.05, hspace=0.45)
    layers = {nm: (overlay(images, maps[nm], alpha, cmap), colorize(maps[nm], cmap)) for nm in names}
    for r in range(n):
        ims = [imgs[r]]
        tt = [titles[r] if titles is not None else ""]
        for nm in names:
            ims += [layers[nm][0][r], layers[nm][1][r]]
            tt += [f"{nm} overlay" if r == 0 else "", f"{nm}" if r == 0 else ""]
        plot_images_row(fig, [gs[r, j] for j in range(len(ims))], ims, tt)
    return save(fig, path)


def plot_maps(maps, path, title: str = "", ncols: int | None = None, cmap: str = "viridis") -> str:
    """Maps [C, h, w] (e.g. one image's activation maps) in a grid, each scaled on its own."""
    m = np.asarray(maps, dtype=np.float64)
    grid = tile_grid(colorize(m, cmap), ncols, pad=1)
    return save_image(grid, path, title)

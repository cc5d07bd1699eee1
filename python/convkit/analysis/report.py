"""`convkit analyze`: every analysis tool on a network and a labelled image set, as PNGs and a short
report (markdown and/or JSON) with the numbers that show the tools tell the truth.

Default: the shipped Fashion-MNIST LeNet-5 on the Fashion-MNIST test set when it is installed (Debian's
dataset-fashion-mnist, $CONVKIT_DATA or --data-path), else on the sample images shipped with convkit.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from . import embed, features, filters, neighbors, plots, sanity
from .occlusion import occlusion as occlusion_map  # the package rebinds the module names to the functions
from .saliency import saliency as saliency_map
from . import _util as U


def load_default_data(source: str = "auto", path=None):
    """(images float32 [N, 1, 28, 28] in [0, 1], labels [N], class names, description).

    source: 'auto' (the Fashion-MNIST test set if found, else the shipped samples), 'fashion-mnist'
    (error when it is not found) or 'samples'."""
    from .. import data as D

    if source not in ("auto", "fashion-mnist", "samples"):
        raise ValueError(f"analyze: data must be 'auto', 'fashion-mnist' or 'samples', got {source!r}")
    if source in ("auto", "fashion-mnist"):
        try:
            ds = D.load_fashion_mnist(path)
            return D.to_float(ds.x_test), ds.y_test, tuple(ds.classes), f"Fashion-MNIST test set ({ds.source})"
        except (FileNotFoundError, D.DataError):
            if source == "fashion-mnist":
                raise
    imgs, labels = D.load_samples()
    desc = "the Fashion-MNIST sample images shipped with convkit"
    return D.to_float(imgs), labels, tuple(D.FASHION_MNIST_CLASSES), desc


def _timed(times, name):
    class _T:
        def __enter__(self):
            self.t = time.perf_counter()

        def __exit__(self, *a):
            times[name] = round(time.perf_counter() - self.t, 2)
    return _T()


def analyze(out, model=None, images=None, labels=None, class_names=None, *, quick: bool = False, device="cpu",
            data: str = "auto", data_path=None, fmt: str = "md", run_tsne: bool = True, seed: int = 0,
            progress=None) -> dict:
    """Run the whole toolbox and write PNGs plus report.md / report.json into `out`. Returns the numbers."""
    if fmt not in ("md", "json", "both"):
        raise ValueError(f"analyze: format must be 'md', 'json' or 'both', got {fmt!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    times: dict = {}
    t_start = time.perf_counter()
    if model is None:
        from ..models import lenet5_fashion_mnist
        model = lenet5_fashion_mnist()
        model_desc = "the shipped Fashion-MNIST LeNet-5"
    else:
        model_desc = getattr(model, "arch", type(model).__name__)
    if device != "cpu":
        model = model.to(device)
    if images is None:
        images, labels, class_names, data_desc = load_default_data(data, data_path)
    else:
        images = U.as_images(images, "analyze", "images")
        if labels is None:
            raise ValueError("analyze: labels are needed with images (retrieval precision and kNN use them)")
        labels = U.as_labels(labels, images.shape[0], "analyze")
        data_desc = f"{images.shape[0]} given images"
    images = np.ascontiguousarray(images, dtype=U.model_dtype(model, np.float32))
    names = list(class_names) if class_names is not None else [str(c) for c in range(int(labels.max()) + 1)]
    n_all = images.shape[0]
    n_ret = min(n_all, 1000 if quick else 10_000)
    n_emb = min(n_all, 300 if quick else 2000)
    n_att = min(n_all, 6 if quick else 8)
    n_sanity = min(n_all, 16 if quick else 64)
    pngs, num = {}, {"model": model_desc, "data": data_desc, "device": device, "quick": bool(quick)}

    # accuracy on the retrieval subset (a sanity number for the reader)
    ret = np.sort(rng.choice(n_all, n_ret, replace=False)) if n_ret < n_all else np.arange(n_all)
    x_ret, y_ret = images[ret], labels[ret]

    with _timed(times, "filters"):
        convs = filters.conv_layers(model)
        pngs["filters_conv1"] = filters.plot_filters(model, out / "filters_conv1.png", convs[0])
        if len(convs) > 1:
            pngs["filters_conv2"] = filters.plot_filters(model, out / "filters_conv2.png", convs[1])
        order = features.layer_names(model)
        for ln in convs[:2]:
            nxt = order[order.index(ln) + 1] if order.index(ln) + 1 < len(order) else None
            if nxt is not None and type(features.get_layer(model, nxt)).__name__ == "ReLU":
                ln = nxt  # show what the next layer sees: the maps after the ReLU
            pngs[f"activations_{ln}"] = filters.plot_activation_maps(model, x_ret[0], ln, out / f"activations_{ln}.png",
                                                                     device=device)

    with _timed(times, "features"):
        layer = features.penultimate_layer(model)
        feats = features.extract_features(model, x_ret, layer, device=device, progress=progress)
        with U.eval_mode(model), U.no_grad_if_module(model):
            logits = np.concatenate([U.logits_of(model, x_ret[a:b], U.model_device(model, device), "analyze")
                                     for a, b in U.batches(n_ret, 500)])
        num["accuracy"] = float(np.mean(logits.argmax(1) == y_ret))
        num["feature_layer"] = layer
        num["feature_dim"] = int(feats.shape[1])

    with _timed(times, "neighbours"):
        k = 10
        pix = x_ret.reshape(n_ret, -1)
        num["precision_at_10"] = {"pixels": neighbors.precision_at_k(pix, y_ret, k),
                                  "features": neighbors.precision_at_k(feats, y_ret, k), "n": int(n_ret)}
        q = rng.choice(n_ret, 6, replace=False)
        pi, _ = neighbors.nearest_neighbors(pix[q], pix, 6, query_indices=q)
        fi, _ = neighbors.nearest_neighbors(feats[q], feats, 6, query_indices=q)
        pngs["neighbors"] = plots.plot_neighbors(x_ret, q, pi, fi, out / "neighbors.png", y_ret, names)

    with _timed(times, "embeddings"):
        emb_idx = np.sort(rng.choice(n_ret, min(n_emb, n_ret), replace=False))
        fe, pe, ye = feats[emb_idx], pix[emb_idx], y_ret[emb_idx]
        pf, pca_f = embed.pca(fe, 2)
        pp, pca_p = embed.pca(pe, 2)
        emb = {"n": int(len(emb_idx)),
               "pca_explained_variance_ratio": {"features": pca_f.explained_variance_ratio_.tolist(),
                                                "pixels": pca_p.explained_variance_ratio_.tolist()},
               "knn5_accuracy_2d": {"pca_features": neighbors.knn_accuracy(pf, ye, 5),
                                    "pca_pixels": neighbors.knn_accuracy(pp, ye, 5)}}
        sc = emb["knn5_accuracy_2d"]
        pngs["pca_features"] = plots.plot_embedding(pf, ye, out / "pca_features.png", names, f"PCA of {layer} features",
                                                    f"2-D 5-NN accuracy {sc['pca_features']:.3f} "
                                                    f"(pixels: {sc['pca_pixels']:.3f})")
        if run_tsne:
            try:
                tf = embed.tsne(fe, seed=seed)
                tp = embed.tsne(pe, seed=seed)
            except ImportError as e:
                emb["tsne"] = f"skipped: {e}"
            else:
                sc["tsne_features"] = neighbors.knn_accuracy(tf, ye, 5)
                sc["tsne_pixels"] = neighbors.knn_accuracy(tp, ye, 5)
                pngs["tsne_features"] = plots.plot_embedding(
                    tf, ye, out / "tsne_features.png", names, f"t-SNE of {layer} features",
                    f"2-D 5-NN accuracy {sc['tsne_features']:.3f}")
                pngs["tsne_pixels"] = plots.plot_embedding(
                    tp, ye, out / "tsne_pixels.png", names, "t-SNE of raw pixels",
                    f"2-D 5-NN accuracy {sc['tsne_pixels']:.3f}")
                pngs["tsne_thumbnails"] = plots.save_image(plots.thumbnail_map(tf, x_ret[emb_idx], grid=24),
                                                           out / "tsne_thumbnails.png",
                                                           f"t-SNE of {layer} features as a map of the images")
        num["embedding"] = emb

    with _timed(times, "attribution"):
        att = rng.choice(n_ret, n_att, replace=False)
        xa = x_ret[att]
        win = max(2, min(xa.shape[2], xa.shape[3]) // 4)
        occ = occlusion_map(model, xa, None, window=win, stride=max(1, win // 4), baseline="blur", device=device,
                            progress=progress)
        sal = saliency_map(model, xa, None, device=device)
        pred = logits[att].argmax(1)
        titles = [f"{names[y_ret[i]]}\n(pred {names[p]})" for i, p in zip(att, pred)]
        pngs["attributions"] = plots.plot_attributions(xa, {"occlusion": occ, "saliency": sal},
                                                       out / "attributions.png", titles)
        num["occlusion"] = {"window": win, "stride": max(1, win // 4), "baseline": "blur", "output": "prob"}

    with _timed(times, "sanity"):
        si = rng.choice(n_ret, n_sanity, replace=False)
        xs = x_ret[si]
        w, st = num["occlusion"]["window"], num["occlusion"]["stride"]
        occ_s = occlusion_map(model, xs, None, window=w, stride=st, baseline="blur", device=device)
        sal_s = saliency_map(model, xs, None, device=device)
        # saliency is pixel-sharp, occlusion sees windows: compare at the occlusion map's resolution
        agree = sanity.map_similarity(sanity.window_smooth(sal_s, w, st), occ_s)
        agree_raw = sanity.map_similarity(sal_s, occ_s)
        rnd = sanity.randomize_weights(model, seed=seed)
        target = logits[si].argmax(1)
        sal_r = saliency_map(rnd, xs, target, device=device)
        occ_r = occlusion_map(rnd, xs, target, window=w, stride=st, baseline="blur", device=device)
        num["sanity"] = {
            "n": int(n_sanity),
            "saliency_vs_occlusion_rank_correlation": agree["rank_correlation"],
            "saliency_vs_occlusion_chance": agree["chance"],
            "saliency_unsmoothed_vs_occlusion_rank_correlation": agree_raw["rank_correlation"],
            "saliency_unsmoothed_vs_occlusion_chance": agree_raw["chance"],
            "randomization_saliency_rank_correlation": float(sanity.rank_correlation(sal_s, sal_r).mean()),
            "randomization_occlusion_rank_correlation": float(sanity.rank_correlation(occ_s, occ_r).mean()),
        }
        pngs["randomization"] = plots.plot_attributions(
            xs[:4], {"saliency": sal_s[:4], "saliency (random weights)": sal_r[:4]}, out / "randomization.png",
            [names[y_ret[i]] for i in si[:4]])

    num["seconds"] = times
    num["seconds_total"] = round(time.perf_counter() - t_start, 2)
    num["images"] = {k: os.path.basename(v) for k, v in pngs.items()}
    if fmt in ("json", "both"):
        (out / "report.json").write_text(json.dumps(num, indent=2))
    if fmt in ("md", "both"):
        (out / "report.md").write_text(markdown(num))
    return num


def markdown(num: dict) -> str:
    p, e, s = num["precision_at_10"], num["embedding"], num["sanity"]
    sc = e["knn5_accuracy_2d"]
    lines = [
        "# convkit analyze", "",
        f"Model: {num['model']} (accuracy {num['accuracy']:.4f} on the {p['n']} images used); data: {num['data']}.",
        f"Features: layer `{num['feature_layer']}` ({num['feature_dim']} values per image).", "",
        "## Retrieval", "",
        "| space | precision@10 |", "| --- | --- |",
        f"| pixels | {p['pixels']:.4f} |", f"| features | {p['features']:.4f} |", "",
        "![nearest neighbours](" + num["images"]["neighbors"] + ")", "",
        f"## Embeddings ({e['n']} images)", "",
        "| map | 5-NN accuracy in 2-D |", "| --- | --- |",
    ]
    for key, label in (("pca_pixels", "PCA of pixels"), ("pca_features", "PCA of features"),
                       ("tsne_pixels", "t-SNE of pixels"), ("tsne_features", "t-SNE of features")):
        if key in sc:
            lines.append(f"| {label} | {sc[key]:.4f} |")
    ev = e["pca_explained_variance_ratio"]
    lines += ["", f"PCA explained variance ratio (first two components): features "
                  f"{ev['features'][0]:.3f}, {ev['features'][1]:.3f}; "
                  f"pixels {ev['pixels'][0]:.3f}, {ev['pixels'][1]:.3f}."]
    if "tsne" in e:
        lines.append(f"t-SNE {e['tsne']}")
    lines += [""] + [f"![{k}]({v})" for k, v in num["images"].items() if k.startswith(("pca", "tsne"))]
    lines += ["", "## Filters and activations", ""]
    lines += [f"![{k}]({v})" for k, v in num["images"].items() if k.startswith(("filters", "activations"))]
    o = num["occlusion"]
    lines += ["", "## Occlusion and saliency", "",
              f"Occlusion: {o['window']}x{o['window']} window, stride {o['stride']}, baseline {o['baseline']} "
              f"(the window replaced by a Gaussian blur of the image), drop of the predicted class probability. "
              f"Saliency: max over channels of |d logit / d pixel|.", "",
              "![attributions](" + num["images"]["attributions"] + ")", "",
              f"## Sanity checks ({s['n']} images)", "",
              "| check | mean Spearman rank correlation |", "| --- | --- |",
              f"| saliency (window-smoothed) vs occlusion, same image | "
              f"{s['saliency_vs_occlusion_rank_correlation']:.3f} |",
              f"| saliency (window-smoothed) vs occlusion, other images (chance) | "
              f"{s['saliency_vs_occlusion_chance']:.3f} |",
              f"| saliency (pixel-sharp) vs occlusion, same image | "
              f"{s['saliency_unsmoothed_vs_occlusion_rank_correlation']:.3f} |",
              f"| saliency (pixel-sharp) vs occlusion, other images (chance) | "
              f"{s['saliency_unsmoothed_vs_occlusion_chance']:.3f} |",
              f"| saliency, trained vs random weights | {s['randomization_saliency_rank_correlation']:.3f} |",
              f"| occlusion, trained vs random weights | {s['randomization_occlusion_rank_correlation']:.3f} |", "",
              "![randomization](" + num["images"]["randomization"] + ")", "",
              f"Time: {num['seconds_total']} s ({', '.join(f'{k} {v} s' for k, v in num['seconds'].items())}).", ""]
    return "\n".join(lines)


def _cmd_analyze(args) -> int:
    out = Path(args.out)
    num = analyze(out, quick=args.quick, device=args.device, data=args.data, data_path=args.data_path,
                  fmt=args.format, run_tsne=not args.no_tsne, seed=args.seed)
    p = num["precision_at_10"]
    s = num["sanity"]
    print(f"convkit analyze: {num['model']} on {num['data']}")
    print(f"  precision@10: pixels {p['pixels']:.4f}, features {p['features']:.4f} ({p['n']} images)")
    for k, v in num["embedding"]["knn5_accuracy_2d"].items():
        print(f"  2-D 5-NN accuracy, {k}: {v:.4f}")
    print(f"  saliency vs occlusion rank correlation {s['saliency_vs_occlusion_rank_correlation']:.3f} "
          f"(chance {s['saliency_vs_occlusion_chance']:.3f}); trained vs random weights: saliency "
          f"{s['randomization_saliency_rank_correlation']:.3f}, "
          f"occlusion {s['randomization_occlusion_rank_correlation']:.3f}")
    reports = [n for n in ("report.md", "report.json") if (out / n).exists()]
    print(f"  wrote {len(num['images'])} PNGs and {', '.join(reports)} to {out} in {num['seconds_total']} s")
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("analyze", help="filters, features, neighbours, PCA/t-SNE, occlusion and saliency maps "
                                       "of the shipped Fashion-MNIST LeNet-5, as PNGs and a report")
    p.add_argument("--out", default="convkit-analysis", help="output folder (default: ./convkit-analysis)")
    p.add_argument("--format", choices=("md", "json", "both"), default="both", help="report format (default both)")
    p.add_argument("--quick", action="store_true", help="fewer images (about 10x faster)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--data", choices=("auto", "fashion-mnist", "samples"), default="auto",
                   help="auto: the Fashion-MNIST test set when installed, else the shipped sample images")
    p.add_argument("--data-path", default=None, help="folder holding the Fashion-MNIST IDX files")
    p.add_argument("--no-tsne", action="store_true", help="skip t-SNE (PCA only)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_analyze)

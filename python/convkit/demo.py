"""`convkit demo`: the whole lecture in one command, as one HTML report (plus the same numbers as JSON).

    convkit demo                        # ./convkit-demo/index.html, a few minutes on a laptop CPU
    convkit demo --quick                # smaller everything, well under a minute
    convkit demo --out DIR --device cuda --data embedded --train

Sections, in the lecture's order: (1) AlexNet's parameters and FLOPs and the weight-count examples,
(2) first-layer filters, (3) nearest neighbours in pixel and feature space, (4) PCA and t-SNE maps,
(5) occlusion and saliency maps, (6) fooling images, (7) FGSM, (8) a patch attack, (9) style transfer.

Data: the shipped Fashion-MNIST LeNet-5 (python/convkit/_assets) on the Fashion-MNIST test set when it is
installed (--data auto), on the 500 shipped sample images (--data embedded), or on the IDX files in a folder
(--data PATH). --train first trains a fresh LeNet-5 for one epoch (needs the training set) and uses it instead.

This module only composes: every picture and number comes from convkit.summary, convkit.analysis,
convkit.attacks and convkit.style. The report is written into a hidden temporary folder next to --out and
renamed into place at the end, so a failure never leaves a half-written report; an --out that exists and is
not empty is refused unless --force (which replaces it, again only once the new report is complete).
"""
from __future__ import annotations

import html
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class DemoError(Exception):
    """A problem the user can fix (bad argument, missing data or GPU): printed as one line."""


# Sizes of every part: --quick aims at ~30 s on an idle 2-core machine, the full run at ~2-3 minutes.
QUICK = dict(n_ret=500, n_query=5, n_emb=200, tsne_pixels=False, tsne_iter=500, thumbnails=False, n_att=4,
             n_fool=2, fool_steps=100, n_fgsm=500, fgsm_eps=0.1, sweep_eps=(0.03, 0.1), sweep_attacks=("fgsm",),
             n_patch=8, patch_size=8, patch_steps=50, style_size=64, style_iterations=25, style_scales=(3, 5, 7, 11),
             style_filters=16, train_images=12000, train_lr=3e-3, train_batch=32)
FULL = dict(n_ret=2000, n_query=6, n_emb=1000, tsne_pixels=True, tsne_iter=1000, thumbnails=True, n_att=6,
            n_fool=5, fool_steps=100, n_fgsm=2000, fgsm_eps=0.1, sweep_eps=(0.0, 0.01, 0.03, 0.05, 0.1, 0.2),
            sweep_attacks=("fgsm", "pgd"), n_patch=32, patch_size=8, patch_steps=100, style_size=96,
            style_iterations=60, style_scales=(3, 5, 7, 11, 15), style_filters=24, train_images=60000,
            train_lr=2e-3, train_batch=64)
STYLE_CONTENT, STYLE_STYLE = "skimage:chelsea", "skimage:brick"


@dataclass
class Section:
    key: str
    title: str
    text: str = ""                                 # a paragraph of HTML (already escaped where needed)
    figures: list = field(default_factory=list)    # (file name, caption)
    numbers: dict = field(default_factory=dict)    # what goes into report.json
    table: str = ""                                # optional HTML table / <pre>
    seconds: float = 0.0


@dataclass
class Context:
    out: Path
    cfg: dict
    device: str
    seed: int
    model: object = None
    model_desc: str = ""
    x: np.ndarray = None          # images float32 [N, 1, 28, 28] in [0, 1]
    y: np.ndarray = None          # labels int64 [N]
    names: list = None
    data_desc: str = ""
    cache: dict = field(default_factory=dict)  # shared between sections (features, logits, ...)

    def path(self, name: str) -> str:
        return str(self.out / name)

    def attack_model(self):
        from .attacks import AttackModel
        if "am" not in self.cache:
            self.cache["am"] = AttackModel(self.model, bounds=(0.0, 1.0), batch_size=500)
        return self.cache["am"]

    def correct(self, n: int) -> np.ndarray:
        """Indices of the first n images the model classifies correctly (attacks start from those)."""
        pred = self.cache["logits"].argmax(1)
        idx = self.cache["ret"][pred == self.cache["y_ret"]]
        return idx[:n]


def _e(s) -> str:
    return html.escape(str(s))


# ---- the sections ---------------------------------------------------------------------------------

def sec_summary(ctx: Context) -> Section:
    from . import models
    from .nn import Conv2d
    from .summary import summary

    s = summary(models.alexnet(), (3, 227, 227))
    one = Conv2d(3, 1, 7, bias=False).num_parameters()
    five = Conv2d(3, 5, 7, bias=False).num_parameters()
    five_b = Conv2d(3, 5, 7).num_parameters()
    rows = ["<tr><th>layer</th><th>type</th><th>output</th><th>params</th><th>MACs</th><th>FLOPs (2 x MACs)</th>"
            "<th>lecture params</th><th>lecture MACs</th></tr>"]
    for r in s.rows:
        if not r.params and not r.macs:
            continue
        lec = (s.lecture or {}).get(r.name, ("", 0, "", 0))
        rows.append(f"<tr><td>{_e(r.name)}</td><td>{_e(r.kind)}</td><td>{'x'.join(map(str, r.output_shape[1:]))}"
                    f"</td><td>{r.params:,}</td><td>{r.macs:,}</td><td>{2 * r.macs / 1e6:,.0f}M</td>"
                    f"<td>{_e(lec[0])}</td><td>{_e(lec[2])}</td></tr>")
    rows.append(f"<tr class='total'><td>total</td><td></td><td></td><td>{s.total_params:,}</td>"
                f"<td>{s.total_macs:,}</td><td>{2 * s.total_macs / 1e9:.2f}G</td><td></td><td></td></tr>")
    notes = "".join(f"<li>{_e(n)}</li>" for n in s.notes)
    text = (f"AlexNet (convkit.models.alexnet, the lecture's two-group layout) on one 227x227x3 image, counted "
            f"from the layer shapes by <code>convkit.summary</code>. Weight-count examples: one 7x7 filter on a "
            f"3-channel input has 7x7x3 = <b>{one}</b> weights; a layer of 5 such neurons has 5x147 = "
            f"<b>{five}</b> ({five_b} with their biases).")
    return Section("summary", "1. AlexNet: parameters and FLOPs", text, [],
                   {"alexnet_total_params": s.total_params, "alexnet_total_macs": s.total_macs,
                    "alexnet_total_flops": 2 * s.total_macs, "weights_7x7x3_filter": one,
                    "weights_5_neurons": five, "weights_5_neurons_with_bias": five_b,
                    "layers": {r.name: {"params": r.params, "macs": r.macs} for r in s.rows if r.params}},
                   f"<table>{''.join(rows)}</table><ul class='notes'>{notes}</ul>")


def sec_filters(ctx: Context) -> Section:
    from .analysis import filters, features

    convs = filters.conv_layers(ctx.model)
    figs = []
    for ln in convs[:2]:
        w = filters.layer_weight(ctx.model, ln)
        figs.append((os.path.basename(filters.plot_filters(ctx.model, ctx.path(f"filters_{ln}.png"), ln)),
                     f"{ln}: {w.shape[0]} filters of {w.shape[1]}x{w.shape[2]}x{w.shape[3]}"))
    order = features.layer_names(ctx.model)
    nxt = order[order.index(convs[0]) + 1]
    figs.append((os.path.basename(filters.plot_activation_maps(ctx.model, ctx.x[0], nxt,
                                                               ctx.path(f"activations_{nxt}.png"),
                                                               device=ctx.device)),
                 f"what {nxt} sees: the first image's activation maps after {convs[0]}"))
    return Section("filters", "2. First-layer filters", f"The learned filters of {_e(ctx.model_desc)}.", figs,
                   {"layers": convs[:2]})


def sec_neighbors(ctx: Context) -> Section:
    from .analysis import features, neighbors, plots
    from .analysis import _util as U

    m, c = ctx.model, ctx.cfg
    rng = np.random.default_rng(ctx.seed)
    n = ctx.x.shape[0]
    ret = np.sort(rng.choice(n, c["n_ret"], replace=False)) if c["n_ret"] < n else np.arange(n)
    x_ret, y_ret = ctx.x[ret], ctx.y[ret]
    layer = features.penultimate_layer(m)
    feats = features.extract_features(m, x_ret, layer, device=ctx.device)
    with U.eval_mode(m), U.no_grad_if_module(m):
        logits = np.concatenate([U.logits_of(m, x_ret[a:b], ctx.device, "demo") for a, b in U.batches(len(ret), 500)])
    ctx.cache.update(ret=ret, x_ret=x_ret, y_ret=y_ret, feats=feats, logits=logits, layer=layer)
    acc = float(np.mean(logits.argmax(1) == y_ret))
    pix = x_ret.reshape(len(ret), -1)
    p_pix, p_feat = neighbors.precision_at_k(pix, y_ret, 10), neighbors.precision_at_k(feats, y_ret, 10)
    q = rng.choice(len(ret), c["n_query"], replace=False)
    pi, _ = neighbors.nearest_neighbors(pix[q], pix, 6, query_indices=q)
    fi, _ = neighbors.nearest_neighbors(feats[q], feats, 6, query_indices=q)
    f = plots.plot_neighbors(x_ret, q, pi, fi, ctx.path("neighbors.png"), y_ret, ctx.names)
    text = (f"The lecture's FC7 is LeNet-5's penultimate layer here: <code>{_e(layer)}</code> ({feats.shape[1]} "
            f"values per image). Accuracy of the model on these {len(ret)} images: <b>{acc:.3f}</b>. "
            f"Precision@10 (share of the 10 nearest neighbours with the query's class): raw pixels "
            f"<b>{p_pix:.3f}</b>, features <b>{p_feat:.3f}</b>.")
    return Section("neighbors", "3. Nearest neighbours: pixels vs FC7 features", text,
                   [(os.path.basename(f), "each row: a query, its 6 nearest neighbours by pixels (left) and by "
                                          "features (right); green frame = same class")],
                   {"accuracy": acc, "n": int(len(ret)), "feature_layer": layer, "feature_dim": int(feats.shape[1]),
                    "precision_at_10": {"pixels": p_pix, "features": p_feat}})


def sec_embeddings(ctx: Context) -> Section:
    from .analysis import embed, neighbors, plots

    c, k = ctx.cfg, ctx.cache
    rng = np.random.default_rng(ctx.seed + 1)
    n = len(k["ret"])
    idx = np.sort(rng.choice(n, min(c["n_emb"], n), replace=False))
    fe, pe, ye = k["feats"][idx], k["x_ret"][idx].reshape(len(idx), -1), k["y_ret"][idx]
    pf, _ = embed.pca(fe, 2)
    pp, _ = embed.pca(pe, 2)
    acc = {"pca_features": neighbors.knn_accuracy(pf, ye, 5), "pca_pixels": neighbors.knn_accuracy(pp, ye, 5)}
    figs = [(os.path.basename(plots.plot_embedding(pf, ye, ctx.path("pca_features.png"), ctx.names,
                                                   f"PCA of {k['layer']} features",
                                                   f"2-D 5-NN accuracy {acc['pca_features']:.3f}")),
             "PCA of the features"),
            (os.path.basename(plots.plot_embedding(pp, ye, ctx.path("pca_pixels.png"), ctx.names,
                                                   "PCA of raw pixels", f"2-D 5-NN accuracy {acc['pca_pixels']:.3f}")),
             "PCA of the pixels")]
    tf = embed.tsne(fe, seed=ctx.seed, max_iter=c["tsne_iter"])  # one OpenMP thread (n_jobs=1)
    acc["tsne_features"] = neighbors.knn_accuracy(tf, ye, 5)
    figs.append((os.path.basename(plots.plot_embedding(tf, ye, ctx.path("tsne_features.png"), ctx.names,
                                                       f"t-SNE of {k['layer']} features",
                                                       f"2-D 5-NN accuracy {acc['tsne_features']:.3f}")),
                 "t-SNE of the features"))
    if c["tsne_pixels"]:
        tp = embed.tsne(pe, seed=ctx.seed, max_iter=c["tsne_iter"])
        acc["tsne_pixels"] = neighbors.knn_accuracy(tp, ye, 5)
        figs.append((os.path.basename(plots.plot_embedding(tp, ye, ctx.path("tsne_pixels.png"), ctx.names,
                                                           "t-SNE of raw pixels",
                                                           f"2-D 5-NN accuracy {acc['tsne_pixels']:.3f}")),
                     "t-SNE of the pixels"))
    if c["thumbnails"]:
        figs.append((os.path.basename(plots.save_image(plots.thumbnail_map(tf, k["x_ret"][idx], grid=24),
                                                       ctx.path("tsne_thumbnails.png"),
                                                       "t-SNE of the features as a map of the images")),
                     "the t-SNE map drawn with the images themselves"))
    label = {"pca": "PCA", "tsne": "t-SNE"}
    rows = "".join(f"<tr><td>{label[key.split('_')[0]]} of {key.split('_')[1]}</td><td>{v:.3f}</td></tr>"
                   for key, v in acc.items())
    text = (f"{len(idx)} images mapped to 2-D. How well a map keeps the classes apart: the accuracy of a 5-nearest-"
            f"neighbour classifier in the 2-D map (leave-one-out).")
    return Section("embeddings", "4. PCA and t-SNE maps", text, figs,
                   {"n": int(len(idx)), "knn5_accuracy_2d": acc},
                   f"<table><tr><th>map</th><th>5-NN accuracy</th></tr>{rows}</table>")


def sec_attribution(ctx: Context) -> Section:
    from .analysis import occlusion, plots, saliency

    k = ctx.cache
    att = np.random.default_rng(ctx.seed + 2).choice(len(k["ret"]), ctx.cfg["n_att"], replace=False)
    xa = k["x_ret"][att]
    win, stride = 7, 1
    occ = occlusion(ctx.model, xa, None, window=win, stride=stride, baseline="blur", device=ctx.device)
    sal = saliency(ctx.model, xa, None, device=ctx.device)
    pred = k["logits"][att].argmax(1)
    titles = [f"{ctx.names[k['y_ret'][i]]}\n(pred {ctx.names[p]})" for i, p in zip(att, pred)]
    f = plots.plot_attributions(xa, {"occlusion": occ, "saliency": sal}, ctx.path("attributions.png"), titles)
    text = (f"Occlusion: the drop in the predicted class's probability when a {win}x{win} window (stride {stride}) "
            f"is blurred out. Saliency: |d score / d pixel| from one backward pass through convkit's kernels.")
    return Section("attribution", "5. Occlusion and saliency maps", text,
                   [(os.path.basename(f), "image, occlusion overlay and map, saliency overlay and map")],
                   {"n": int(len(att)), "occlusion_window": win, "occlusion_stride": stride})


def sec_fooling(ctx: Context) -> Section:
    from .attacks import every_target, fooling_images, plots

    c = ctx.cfg
    idx = ctx.correct(c["n_fool"])
    x, lab, tgt = every_target(ctx.x[idx], ctx.y[idx], len(ctx.names))
    x_adv, res = fooling_images(ctx.attack_model(), x, tgt, steps=c["fool_steps"], step_size=0.2, labels=lab)
    per = len(ctx.names) - 1
    rows = [per * i + (i % per) for i in range(min(3, len(idx)))]
    f1 = plots.plot_adversarial(x, x_adv, res, ctx.path("fooling.png"), class_names=ctx.names, indices=rows,
                                title="fooling images: gradient ascent on the target's score")
    titles = [f"-> {ctx.names[t]}\n{cf:.2f}" for t, cf in zip(res.target[:per], res.adv_conf[:per])]
    f2 = plots.plot_images(x_adv[:per], ctx.path("fooling_all_targets.png"), titles, ncols=per,
                           suptitle=f"one {ctx.names[lab[0]]} pushed to every other class (predicted class, conf)")
    text = (f"{len(idx)} correctly classified images, each pushed toward every other class ({len(res)} targeted "
            f"attacks, at most {c['fool_steps']} normalized steps of 0.2 in L2): success rate "
            f"<b>{res.success_rate:.3f}</b>, mean L2 change {float(np.mean(res.l2)):.2f}, mean "
            f"{float(np.mean(res.iterations)):.1f} steps.")
    return Section("fooling", "6. Fooling images", text,
                   [(os.path.basename(f1), "original, fooled image, difference, 10x difference"),
                    (os.path.basename(f2), "the same image, fooled into each of the other classes")],
                   {"success_rate": res.success_rate, "n": len(res), "l2_mean": float(np.mean(res.l2)),
                    "iterations_mean": float(np.mean(res.iterations))})


def sec_fgsm(ctx: Context) -> Section:
    from .attacks import fgsm, plots, robustness_sweep
    from .attacks.cli import _pick

    c, k = ctx.cfg, ctx.cache
    n = min(c["n_fgsm"], len(k["ret"]))
    x, lab = k["x_ret"][:n], k["y_ret"][:n]
    am = ctx.attack_model()
    x_adv, res = fgsm(am, x, lab, eps=c["fgsm_eps"])
    f1 = plots.plot_adversarial(x, x_adv, res, ctx.path("fgsm.png"), class_names=ctx.names, indices=_pick(res, 4))
    sw = robustness_sweep(am, x, lab, c["sweep_eps"], attacks=c["sweep_attacks"], seed=ctx.seed)
    f2 = plots.plot_robustness(sw, ctx.path("robustness.png"), title=f"robust accuracy on {sw.n} images")
    head = "".join(f"<th>{_e(a.upper())} accuracy</th>" for a in sw.accuracy)
    body = "".join(f"<tr><td>{e:g}</td>" + "".join(f"<td>{sw.accuracy[a][i]:.3f}</td>" for a in sw.accuracy)
                   + "</tr>" for i, e in enumerate(sw.eps))
    text = (f"x<sub>adv</sub> = clip(x + eps sign(grad<sub>x</sub> loss)), eps = {c['fgsm_eps']:g} (pixels in "
            f"[0, 1]), on {n} images: success rate <b>{res.success_rate:.3f}</b> (on the correctly classified: "
            f"{res.success_rate_on_correct:.3f}); accuracy {res.clean_accuracy:.3f} clean -> "
            f"<b>{res.robust_accuracy:.3f}</b> adversarial.")
    return Section("fgsm", "7. FGSM", text,
                   [(os.path.basename(f1), "original (prediction, confidence), adversarial, difference, "
                                           "10x difference"),
                    (os.path.basename(f2), "accuracy against eps")],
                   {"eps": c["fgsm_eps"], "n": n, "success_rate": res.success_rate,
                    "success_rate_on_correct": res.success_rate_on_correct, "clean_accuracy": res.clean_accuracy,
                    "robust_accuracy": res.robust_accuracy,
                    "sweep": {"eps": sw.eps, "accuracy": sw.accuracy}},
                   f"<table><tr><th>eps</th>{head}</tr>{body}</table>")


def sec_patch(ctx: Context) -> Section:
    from .attacks import patch_attack, plots
    from .attacks.cli import _pick

    c = ctx.cfg
    idx = ctx.correct(c["n_patch"])
    x, lab = ctx.x[idx], ctx.y[idx]
    x_adv, res = patch_attack(ctx.attack_model(), x, lab, size=c["patch_size"], steps=c["patch_steps"],
                              step_size=0.05, seed=ctx.seed)
    f = plots.plot_adversarial(x, x_adv, res, ctx.path("patch.png"), class_names=ctx.names, indices=_pick(res, 3))
    s = c["patch_size"]
    text = (f"Only a {s}x{s} patch at a random place may change (any value in [0, 1]); {len(idx)} correctly "
            f"classified images, {c['patch_steps']} signed-gradient steps: success rate "
            f"<b>{res.success_rate:.3f}</b>.")
    return Section("patch", "8. A patch attack", text,
                   [(os.path.basename(f), "original, patched image, difference, 10x difference")],
                   {"size": s, "n": len(res), "success_rate": res.success_rate})


def sec_style(ctx: Context) -> Section:
    from .style import RandomFilterNet, lecture_figure

    c = ctx.cfg
    bb = RandomFilterNet(sizes=c["style_scales"], filters=c["style_filters"], seed=ctx.seed, device=ctx.device)
    r = lecture_figure(ctx.path("style.png"), content=STYLE_CONTENT, style=STYLE_STYLE, size=c["style_size"],
                       backbone=bb, iterations=c["style_iterations"], seed=ctx.seed, progress=False)
    runs = []
    for label, res, num in zip(("more weight to content", "more weight to style"), r["results"],
                               r["numbers"]["runs"]):
        runs.append({"label": label, "alpha": num["alpha"], "beta": num["beta"],
                     "style_loss_start": res.start["style"], "style_loss_end": res.final["style"],
                     "content_loss_start": res.start["content"], "content_loss_end": res.final["content"],
                     "iterations": res.iterations, "seconds": res.seconds})
    rows = "".join(f"<tr><td>{_e(u['label'])}</td><td>{u['alpha'] / u['beta']:.0e}</td>"
                   f"<td>{u['style_loss_start']:.3g} -> {u['style_loss_end']:.3g}</td>"
                   f"<td>{u['content_loss_start']:.3g} -> {u['content_loss_end']:.3g}</td></tr>" for u in runs)
    h, w = r["numbers"]["size"]
    text = (f"Gatys-style transfer on convkit's kernels: content {STYLE_CONTENT.split(':')[1]}, style "
            f"{STYLE_STYLE.split(':')[1]} (scikit-image's photos), {w}x{h} pixels, {c['style_iterations']} L-BFGS "
            f"iterations from the content image, on {_e(repr(bb))} (seeded random filters at several scales: "
            f"needs no pretrained weights).")
    return Section("style", "9. Style transfer", text,
                   [("style.png", "content, style, more weight to content, more weight to style")],
                   {"size": [h, w], "runs": runs, "mean_abs_difference": r["numbers"]["mean_abs_difference"]},
                   "<table><tr><th>run</th><th>alpha/beta</th><th>style loss</th><th>content loss</th></tr>"
                   f"{rows}</table>")


SECTIONS = [sec_summary, sec_filters, sec_neighbors, sec_embeddings, sec_attribution, sec_fooling, sec_fgsm,
            sec_patch, sec_style]
SECTION_KEYS = ["summary", "filters", "neighbors", "embeddings", "attribution", "fooling", "fgsm", "patch", "style"]


# ---- setup: device, model, data ---------------------------------------------------------------------

def check_device(device: str) -> None:
    if device not in ("cpu", "cuda"):
        raise DemoError(f"--device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda":
        from .device import cuda_available, cuda_unavailable_reason
        if not cuda_available():
            raise DemoError(f"--device cuda: no usable CUDA device ({cuda_unavailable_reason()}); "
                            f"run with --device cpu")


def load_data(data: str):
    """(images float32 [N, 1, 28, 28], labels, class names, description) for --data auto|embedded|PATH."""
    from .analysis.report import load_default_data
    from .data import DataError

    if data in ("auto", "embedded"):
        return load_default_data("auto" if data == "auto" else "samples")
    if not os.path.isdir(data):
        raise DemoError(f"--data must be 'auto', 'embedded' or a folder with the Fashion-MNIST IDX files; "
                        f"{data!r} is not a folder")
    try:
        return load_default_data("fashion-mnist", data)
    except (FileNotFoundError, DataError) as e:
        raise DemoError(f"--data {data}: {e}") from None


def train_model(ctx: Context, data: str, progress) -> Section:
    """One epoch of LeNet-5 from scratch on (part of) the Fashion-MNIST training set."""
    from . import models
    from .data import DataError, Dataset, load_fashion_mnist
    from .train import TrainConfig, fit

    try:
        ds = load_fashion_mnist(None if data in ("auto", "embedded") else data)
    except (FileNotFoundError, DataError) as e:
        raise DemoError(f"--train needs the Fashion-MNIST training set: {e}") from None
    n = min(ctx.cfg["train_images"], len(ds.y_train))
    sub = Dataset(ds.x_train[:n], ds.y_train[:n], ds.x_test, ds.y_test, ds.classes, ds.source)
    kwargs = dict(getattr(models.lenet5_fashion_mnist(), "meta", {}).get("model_kwargs", {}))
    model = models.lenet5(**kwargs, seed=ctx.seed)
    c = ctx.cfg
    cfg = TrainConfig(epochs=1, lr=c["train_lr"], batch_size=c["train_batch"], seed=ctx.seed, model_kwargs=kwargs,
                      device=ctx.device)
    if ctx.device != "cpu":
        model.to(ctx.device)
    hist = fit(model, sub, cfg, out=None, progress=bool(progress))
    ctx.model, ctx.model_desc = model.eval(), f"a LeNet-5 trained just now (1 epoch on {n} images)"
    text = (f"A fresh LeNet-5 trained for one epoch (Adam, lr {cfg.lr:g}, batch {cfg.batch_size}, cosine schedule) "
            f"on {n} Fashion-MNIST training "
            f"images in {hist.seconds:.1f} s: test accuracy <b>{hist.test_accuracy:.4f}</b> on the 10,000 test "
            f"images. The sections below use it instead of the shipped network.")
    return Section("train", "0. Training", text, [], {"images": n, "epochs": 1, "test_accuracy": hist.test_accuracy,
                                                        "seconds": hist.seconds})


# ---- output -----------------------------------------------------------------------------------------

_CSS = """body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:1.5em auto;
padding:0 1em;color:#222;line-height:1.45}h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;
margin-top:2em}.meta{color:#666}figure{display:inline-block;margin:.5em 1.5% .5em 0;vertical-align:top;max-width:48%}
figure.wide{max-width:100%}figure img{max-width:100%;max-height:560px;border:1px solid #eee}
figcaption{font-size:.9em;color:#555;max-width:40em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}td,th{border:1px solid #ddd;padding:.25em .6em;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}tr.total{font-weight:bold}
.glance{float:right;margin:0 0 1em 1.5em}.notes{font-size:.88em;color:#555}.time{color:#888;font-size:.85em}
code{background:#f4f4f4;padding:0 .2em}"""

# Records, after the page has loaded, which images failed to render and any script or resource error, in a
# hidden element (read by the headless-browser test through chromium --dump-dom).
_CHECK_JS = """window.__errors=[];window.addEventListener('error',function(e){var t=e.target;
window.__errors.push(t&&t.tagName?('resource: '+(t.src||t.href)):String(e.message));},true);
window.addEventListener('load',function(){var b=[],im=document.images;for(var i=0;i<im.length;i++){
if(!im[i].complete||im[i].naturalWidth===0)b.push(im[i].getAttribute('src'));}var m=document.createElement('div');
m.id='render-check';m.hidden=true;m.setAttribute('data-images',String(im.length));
m.setAttribute('data-broken',JSON.stringify(b));m.setAttribute('data-errors',JSON.stringify(window.__errors));
document.body.appendChild(m);});"""


_WIDE = {"neighbors.png", "fooling_all_targets.png", "style.png"}  # shown at full width, the rest two per row


def _glance(report: dict) -> str:
    """The headline numbers as one small table at the top of the page."""
    h = report["headline"]
    p = h["precision_at_10"]
    st = {r["label"]: r for r in h["style"]}
    rows = [("accuracy of the network", f"{h['accuracy']:.3f}"),
            ("precision@10, pixels vs features", f"{p['pixels']:.3f} vs {p['features']:.3f}"),
            ("2-D 5-NN accuracy on the t-SNE map",
             ", ".join(f"{k} {v:.3f}" for k, v in h["tsne_knn5_accuracy"].items())),
            ("fooling images: success (targeted)", f"{h['fooling_success_rate']:.3f}"),
            ("FGSM: success / accuracy left", f"{h['fgsm_success_rate']:.3f} / {h['fgsm_robust_accuracy']:.3f}"),
            ("patch attack: success", f"{h['patch_success_rate']:.3f}"),
            ("style loss, more weight to style", "{:.3g} -> {:.3g}".format(
                st["more weight to style"]["style_loss_start"], st["more weight to style"]["style_loss_end"]))]
    body = "".join(f"<tr><td>{_e(a)}</td><td>{_e(b)}</td></tr>" for a, b in rows)
    return f"<table class='glance'><tr><th>at a glance</th><th></th></tr>{body}</table>"


def render_html(report: dict, sections: list) -> str:
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             f"<title>convkit demo</title><style>{_CSS}</style><script>{_CHECK_JS}</script></head><body>",
             "<h1>convkit demo: the lecture in one command</h1>",
             f"<p class='meta'>{_e(report['model'])} on {_e(report['data'])}; device {_e(report['device'])}"
             f"{' (--quick)' if report['quick'] else ''}; convkit {_e(report['convkit_version'])}; "
             f"{report['seconds_total']:.1f} s in all. Numbers: <a href='report.json'>report.json</a>.</p>",
             _glance(report),
             "<nav><ol>" + "".join(f"<li><a href='#{s.key}'>{_e(s.title.split('. ', 1)[-1])}</a></li>"
                                   for s in sections) + "</ol></nav>"]
    for s in sections:
        parts.append(f"<section id='{s.key}'><h2>{_e(s.title)}</h2><p>{s.text}</p>{s.table}")
        for f, cap in s.figures:
            cls = " class='wide'" if f in _WIDE else ""
            parts.append(f"<figure{cls}><img src='{_e(f)}' alt='{_e(cap)}'><figcaption>{_e(cap)}</figcaption>"
                         f"</figure>")
        parts.append(f"<p class='time'>{s.seconds:.1f} s</p></section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _json_ready(v):
    if isinstance(v, dict):
        return {str(k): _json_ready(u) for k, u in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_ready(u) for u in v]
    if isinstance(v, np.ndarray):
        return _json_ready(v.tolist())
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        return v.item()
    return v


def _prepare_out(out: Path, force: bool):
    """Check --out; return (temporary folder next to it, parent folders this call created)."""
    if out.exists() and not out.is_dir():
        raise DemoError(f"--out {out} is a file; give a folder (it is created)")
    if out.is_dir() and out.resolve() in (Path.cwd().resolve(), *Path.cwd().resolve().parents):
        raise DemoError(f"--out {out} is the current folder or one above it; give a new folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise DemoError(f"--out {out} exists and is not empty; choose another folder or pass --force to replace it")
    parent = out.absolute().parent
    created = []
    p = parent
    while not p.exists():
        created.append(p)
        p = p.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DemoError(f"--out {out}: cannot create {parent} ({e.strerror})") from None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=parent))
    except OSError as e:
        _remove_created(created)
        raise DemoError(f"--out {out}: cannot write in {parent} ({e.strerror})") from None
    return tmp, created


def _remove_created(created) -> None:
    for p in created:  # innermost first
        try:
            p.rmdir()
        except OSError:
            pass


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished report into place (replacing an old --out only now, when the new one is complete)."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.absolute().parent))
        os.replace(out, old / "x")
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---- the run ----------------------------------------------------------------------------------------

def run_demo(out, *, device: str = "cpu", quick: bool = False, data: str = "auto", train: bool = False,
             force: bool = False, seed: int = 0, progress=None) -> dict:
    """Run every section and write OUT/index.html, OUT/report.json and the PNGs. Returns report.json's dict.

    progress: True / False, or None for a progress bar only on a terminal."""
    t_start = time.perf_counter()
    check_device(device)
    out = Path(out)
    cfg = dict(QUICK if quick else FULL)
    try:
        import matplotlib
        matplotlib.use("Agg")
        from tqdm.auto import tqdm
    except ImportError as e:
        raise DemoError(f"convkit demo needs matplotlib and tqdm ({e}); pip install 'convkit[tools]'") from None
    x, y, names, data_desc = load_data(data)
    tmp, created = _prepare_out(out, force)
    ok = False
    bar = None
    try:
        from . import __version__
        from .models import lenet5_fashion_mnist

        ctx = Context(out=tmp, cfg=cfg, device=device, seed=seed, x=np.ascontiguousarray(x, np.float32),
                      y=np.asarray(y, np.int64), names=list(names), data_desc=data_desc)
        ctx.model, ctx.model_desc = lenet5_fashion_mnist(), "the shipped Fashion-MNIST LeNet-5"
        if device != "cpu":
            ctx.model.to(device)
        steps = ([train_model] if train else []) + SECTIONS
        bar = tqdm(total=len(steps), desc="convkit demo", unit="section", disable=None if progress is None
                   else not progress, file=sys.stderr)
        sections = []
        for fn in steps:
            bar.set_postfix_str(fn.__name__.replace("sec_", "").replace("_model", ""), refresh=True)
            t0 = time.perf_counter()
            s = fn(ctx, data, progress) if fn is train_model else fn(ctx)
            s.seconds = time.perf_counter() - t0
            sections.append(s)
            bar.update(1)
        bar.close()
        bar = None
        secs = {s.key: s.numbers for s in sections}
        report = {
            "convkit_version": __version__, "device": device, "quick": bool(quick), "seed": seed,
            "model": ctx.model_desc, "data": data_desc,
            "headline": {
                "accuracy": secs["neighbors"]["accuracy"],
                "precision_at_10": secs["neighbors"]["precision_at_10"],
                "tsne_knn5_accuracy": {k[5:]: v for k, v in secs["embeddings"]["knn5_accuracy_2d"].items()
                                       if k.startswith("tsne_")},
                "fooling_success_rate": secs["fooling"]["success_rate"],
                "fgsm_success_rate": secs["fgsm"]["success_rate"],
                "fgsm_robust_accuracy": secs["fgsm"]["robust_accuracy"],
                "patch_success_rate": secs["patch"]["success_rate"],
                "style": [{k: r[k] for k in ("label", "style_loss_start", "style_loss_end", "content_loss_start",
                                             "content_loss_end")} for r in secs["style"]["runs"]],
            },
            "sections": secs,
            "images": {s.key: [f for f, _ in s.figures] for s in sections},
            "seconds": {s.key: round(s.seconds, 2) for s in sections},
        }
        report["seconds_total"] = round(time.perf_counter() - t_start, 2)
        report = _json_ready(report)
        (tmp / "index.html").write_text(render_html(report, sections), encoding="utf-8")
        (tmp / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
        _publish(tmp, out)
        ok = True
        return report
    finally:
        if bar is not None:
            bar.close()
        if not ok:
            shutil.rmtree(tmp, ignore_errors=True)
            _remove_created(created)


def _cmd_demo(args) -> int:
    try:
        r = run_demo(args.out, device=args.device, quick=args.quick, data=args.data, train=args.train,
                     force=args.force, seed=args.seed, progress=False if args.no_progress else None)
    except KeyboardInterrupt:
        print("convkit demo: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception as e:  # one line, no traceback, unless --debug
        if args.debug:  # the whole traceback (cli.main would reduce a re-raised error to one line again)
            import traceback
            traceback.print_exc()
            return 1
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        where = "" if isinstance(e, DemoError) else f"{type(e).__name__}: "
        print(f"convkit demo: error: {where}{msg} (nothing was written; --debug shows the traceback)",
              file=sys.stderr)
        return 1
    h = r["headline"]
    p = h["precision_at_10"]
    print(f"convkit demo: {r['model']} on {r['data']}, device {r['device']}")
    print(f"  accuracy {h['accuracy']:.3f}; precision@10 pixels {p['pixels']:.3f} vs features {p['features']:.3f}; "
          f"t-SNE 5-NN accuracy " + ", ".join(f"{k} {v:.3f}" for k, v in h["tsne_knn5_accuracy"].items()))
    print(f"  fooling success {h['fooling_success_rate']:.3f}; FGSM success {h['fgsm_success_rate']:.3f} "
          f"(robust accuracy {h['fgsm_robust_accuracy']:.3f}); patch success {h['patch_success_rate']:.3f}")
    print("  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in r["seconds"].items()))
    print(f"  report: {os.path.abspath(os.path.join(args.out, 'index.html'))}")
    print(f"  total time: {r['seconds_total']:.1f} s")
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("demo", help="the whole lecture on the shipped Fashion-MNIST LeNet-5, as one HTML report",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="convkit-demo", help="report folder (default ./convkit-demo); it must not exist "
                                                        "or be empty, unless --force")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--quick", action="store_true", help="smaller everything (under a minute on a laptop)")
    p.add_argument("--data", default="auto", metavar="auto|embedded|PATH",
                   help="auto: the Fashion-MNIST test set when installed, else the shipped samples; embedded: the "
                        "500 shipped samples; PATH: a folder with the Fashion-MNIST IDX files")
    p.add_argument("--train", action="store_true",
                   help="first train a fresh LeNet-5 for one epoch (needs the training set) and use it")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out (once the new report is complete)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show the traceback when something fails")
    p.set_defaults(func=_cmd_demo)

"""convkit.train: the training loop behind ``convkit train``.

``fit(model, dataset, ...)`` trains with mini-batch SGD or Adam on uint8 images (scaled to [0, 1]),
shows a progress bar, evaluates on the test split after every epoch (for the curves only: the final
model is the last epoch's, nothing is selected on the test set), writes a checkpoint per epoch,
the final weights, the history as JSON and a PNG of the curves, and returns the history.
Everything random (initialization, batch order, dropout, augmentation) follows `seed`.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import data as D
from . import io as cio
from . import models, nn, optim
from .device import asarray, to_numpy


@dataclass
class TrainConfig:
    model: str = "lenet5"
    dataset: str = "fashion-mnist"
    epochs: int = 15
    batch_size: int = 64
    optimizer: str = "adam"         # "adam", "adamw" or "sgd" (momentum 0.9, Nesterov)
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "cosine"        # "cosine" (per iteration, to 0 at the end), "step" (x0.1 at 1/2, 3/4) or "none"
    augment: bool = False           # random horizontal flips
    seed: int = 0
    model_kwargs: dict = field(default_factory=dict)
    device: str = "cpu"


@dataclass
class History:
    config: dict
    epochs: list = field(default_factory=list)  # one dict per epoch
    test_accuracy: float = float("nan")
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def evaluate(model: nn.Module, x_uint8: np.ndarray, y: np.ndarray, batch_size: int = 1000, device: str = "cpu",
             dtype=np.float32):
    """(mean cross-entropy, accuracy) of model on uint8 images, in eval mode, without gradients."""
    was = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    try:
        with nn.no_grad():
            for xb, yb in D.batches(x_uint8, y, batch_size, shuffle=False):
                logits = model(asarray(D.to_float(xb, dtype), device=device))
                loss, _ = nn.cross_entropy(logits, yb, reduction="sum")
                total_loss += loss
                correct += int((np.argmax(to_numpy(logits), axis=1) == yb).sum())
    finally:
        model.train(was)
    return total_loss / len(y), correct / len(y)


def _optimizer(cfg: TrainConfig, model):
    if cfg.optimizer == "sgd":
        return optim.SGD(model, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                         weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return optim.Adam(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return optim.AdamW(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer must be 'adam', 'adamw' or 'sgd', got {cfg.optimizer!r}")


def _schedule(cfg: TrainConfig, opt, total_steps: int):
    if cfg.schedule == "cosine":
        return optim.CosineAnnealingLR(opt, T_max=total_steps)
    if cfg.schedule == "step":
        return optim.LambdaLR(opt, lambda s: 0.1 ** ((s >= total_steps // 2) + (s >= 3 * total_steps // 4)))
    if cfg.schedule == "none":
        return None
    raise ValueError(f"schedule must be 'cosine', 'step' or 'none', got {cfg.schedule!r}")


def load_dataset(name: str, path=None, download: bool = False) -> D.Dataset:
    """'fashion-mnist', 'mnist' or 'digits' (scikit-learn's, scaled up to 28x28)."""
    if name == "fashion-mnist":
        return D.load_fashion_mnist(path, download=download)
    if name == "mnist":
        return D.load_mnist(path)
    if name == "digits":
        return D.load_digits(size=28)
    raise ValueError(f"dataset must be 'fashion-mnist', 'mnist' or 'digits', got {name!r}")


def fit(model: nn.Module, dataset: D.Dataset, cfg: TrainConfig, out=None, progress: bool = True,
        on_epoch=None) -> History:
    """Train model on dataset per cfg. out: a folder for checkpoint.npz (every epoch), model.npz,
    history.json and curves.png (None writes nothing). on_epoch(record) is called after each epoch."""
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {cfg.epochs} and {cfg.batch_size}")
    out = Path(out) if out is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed + 1)  # batch order and augmentation (the model used seed)
    opt = _optimizer(cfg, model)
    n = len(dataset.y_train)
    per_epoch = D.num_batches(n, cfg.batch_size)
    sched = _schedule(cfg, opt, cfg.epochs * per_epoch)
    hist = History(config=asdict(cfg))
    dtype = model.dtype
    bar = _tqdm(total=cfg.epochs * per_epoch, disable=not progress, unit="batch", desc=f"{cfg.model} training")
    t0 = time.perf_counter()
    model.train()
    try:
        for epoch in range(1, cfg.epochs + 1):
            te = time.perf_counter()
            loss_sum, correct, seen = 0.0, 0, 0
            for xb, yb in D.batches(dataset.x_train, dataset.y_train, cfg.batch_size, shuffle=True, rng=rng):
                if cfg.augment:
                    flip = rng.random(len(yb)) < 0.5
                    xb[flip] = xb[flip, ..., ::-1]
                x = asarray(D.to_float(xb, dtype), device=cfg.device)
                logits = model(x)
                loss, dlogits = nn.cross_entropy(logits, yb)
                if not math.isfinite(loss):
                    raise RuntimeError(f"training diverged at epoch {epoch} (loss {loss}); lower the learning rate")
                model.zero_grad()
                model.backward(dlogits, input_grad=False)
                opt.step()
                if sched is not None:
                    sched.step()
                loss_sum += loss * len(yb)
                correct += int((np.argmax(to_numpy(logits), axis=1) == yb).sum())
                seen += len(yb)
                bar.update(1)
                if bar.n % 50 == 0:
                    bar.set_postfix(epoch=epoch, loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")
            test_loss, test_acc = evaluate(model, dataset.x_test, dataset.y_test, device=cfg.device, dtype=dtype)
            rec = {"epoch": epoch, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
                   "test_loss": test_loss, "test_accuracy": test_acc, "lr": opt.lr,
                   "seconds": time.perf_counter() - te}
            hist.epochs.append(rec)
            bar.set_postfix(epoch=epoch, loss=f"{rec['train_loss']:.4f}", test_acc=f"{test_acc:.4f}")
            if out is not None:
                cio.save_npz(out / "checkpoint.npz", model, meta={"epoch": epoch, "config": asdict(cfg),
                                                                   "history": hist.epochs})
            if on_epoch is not None:
                on_epoch(rec)
    finally:
        bar.close()
    hist.seconds = time.perf_counter() - t0
    hist.test_accuracy = hist.epochs[-1]["test_accuracy"]
    if out is not None:
        meta = {"arch": cfg.model, "model_kwargs": cfg.model_kwargs, "dataset": cfg.dataset,
                "test_accuracy": hist.test_accuracy, "epochs": cfg.epochs, "seed": cfg.seed, "config": asdict(cfg),
                "input": "[N, 1, 28, 28] float in [0, 1] (uint8 / 255)"}
        cio.save_npz(out / "model.npz", model, meta=meta)
        cio.atomic_write_bytes(out / "history.json", json.dumps(hist.as_dict(), indent=1).encode())
        plot_history(hist, out / "curves.png")
    return hist


def _tqdm(**kw):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the progress bar is optional (extra "plots")
        class _NoBar:
            n = 0

            def update(self, k):
                self.n += k

            def set_postfix(self, **_):
                pass

            def close(self):
                pass
        return _NoBar()
    return tqdm(**kw)


def plot_history(hist: History, path) -> Path | None:
    """Loss and accuracy per epoch (train and test) as a PNG; None (with a warning) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        import warnings
        warnings.warn("matplotlib is not installed: no curves.png (pip install matplotlib)", stacklevel=2)
        return None
    ep = [r["epoch"] for r in hist.epochs]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(ep, [r["train_loss"] for r in hist.epochs], "o-", label="train")
    a1.plot(ep, [r["test_loss"] for r in hist.epochs], "s-", label="test")
    a1.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    a2.plot(ep, [100 * r["train_accuracy"] for r in hist.epochs], "o-", label="train")
    a2.plot(ep, [100 * r["test_accuracy"] for r in hist.epochs], "s-", label="test")
    a2.set(xlabel="epoch", ylabel="accuracy (%)", title=f"accuracy (final test {100 * hist.test_accuracy:.2f}%)")
    from matplotlib.ticker import MaxNLocator
    for a in (a1, a2):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.grid(alpha=0.3)
        a.legend()
    cfg = hist.config
    fig.suptitle(f"convkit {cfg['model']} on {cfg['dataset']}: {cfg['optimizer']} lr {cfg['lr']}, "
                 f"batch {cfg['batch_size']}, seed {cfg['seed']}")
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(path.name + ".part.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path


def train(model_name: str = "lenet5", dataset: str = "fashion-mnist", out=None, data_path=None,
          download: bool = False, progress: bool = True, on_epoch=None, **cfg_kwargs):
    """Build a zoo model, load the data set and fit; returns (model, history)."""
    cfg = TrainConfig(model=model_name, dataset=dataset, **cfg_kwargs)
    ds = load_dataset(dataset, data_path, download)
    if model_name != "lenet5":
        raise ValueError(f"training is set up for lenet5 (28x28 grey images); got {model_name!r}")
    model = models.lenet5(seed=cfg.seed, **cfg.model_kwargs).to(device=cfg.device)
    hist = fit(model, ds, cfg, out, progress, on_epoch)
    return model, hist


__all__ = ["History", "TrainConfig", "evaluate", "fit", "load_dataset", "plot_history", "train"]


def _mean_std(ds: D.Dataset) -> list:
    x = ds.x_train.astype(np.float64) / 255.0
    return [float(x.mean()), float(x.std())]


# ---- the `convkit train` command ------------------------------------------------------------------

def _cmd_train(args) -> int:
    import sys

    from . import set_num_threads

    if args.threads:
        set_num_threads(args.threads)
    kwargs = {}
    if args.width != 1.0:
        kwargs["width"] = args.width
    if args.dropout:
        kwargs["dropout"] = args.dropout
    if args.normalize:
        kwargs["normalize"] = [models.FASHION_MNIST_MEAN, models.FASHION_MNIST_STD] if args.dataset == "fashion-mnist" \
            else _mean_std(load_dataset(args.dataset, args.data))
    out = Path(args.out)

    try:
        from tqdm.auto import tqdm
        write = tqdm.write  # prints above an active progress bar
    except ImportError:
        write = print

    def report(r):
        write(f"epoch {r['epoch']:3d}  train loss {r['train_loss']:.4f}  train acc {100 * r['train_accuracy']:.2f}%  "
              f"test loss {r['test_loss']:.4f}  test acc {100 * r['test_accuracy']:.2f}%  lr {r['lr']:.2e}  "
              f"{r['seconds']:.1f} s", file=sys.stdout)

    _, hist = train(args.model, args.dataset, out=out, data_path=args.data, download=args.download,
                    progress=not args.no_progress, on_epoch=report,
                    epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                    weight_decay=args.weight_decay, schedule=args.schedule, augment=args.augment, seed=args.seed,
                    model_kwargs=kwargs, device=args.device)
    print(f"final test accuracy: {100 * hist.test_accuracy:.2f}% after {len(hist.epochs)} epochs "
          f"({hist.seconds:.0f} s); wrote {out / 'model.npz'}, {out / 'checkpoint.npz'}, {out / 'history.json'}, "
          f"{out / 'curves.png'}")
    return 0


def add_cli(sub) -> None:
    d = TrainConfig()
    p = sub.add_parser("train", help="train a network (LeNet-5) on Fashion-MNIST, MNIST or digits",
                       description="Train with a progress bar; per-epoch loss/accuracy; writes a checkpoint, the "
                                   "final weights, history.json and curves.png into --out.")
    p.add_argument("model", choices=["lenet5"], help="the network")
    p.add_argument("--dataset", default=d.dataset, choices=["fashion-mnist", "mnist", "digits"])
    p.add_argument("--data", default=None, help="folder holding the IDX files (default: $CONVKIT_DATA, then "
                                                "/usr/share/datasets/<dataset>)")
    p.add_argument("--download", action="store_true", help="download Fashion-MNIST if not found (SHA-256 checked)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--optimizer", default=d.optimizer, choices=["adam", "adamw", "sgd"])
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--schedule", default=d.schedule, choices=["cosine", "step", "none"])
    p.add_argument("--augment", action="store_true", help="random horizontal flips")
    p.add_argument("--width", type=float, default=1.0, help="scale LeNet-5's layer widths (wider variant)")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout after the hidden FC layers")
    p.add_argument("--normalize", action="store_true",
                   help="standardize inputs inside the network (a first Normalize layer with the training set's "
                        "mean and std; the network still takes [0, 1] pixels)")
    p.add_argument("--seed", type=int, default=d.seed, help="seeds initialization, batch order, dropout")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: all)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

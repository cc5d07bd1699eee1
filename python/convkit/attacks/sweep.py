"""Robust accuracy over a sweep of eps, for FGSM and PGD (L-inf by default)."""
from __future__ import annotations

from dataclasses import dataclass, field

from . import _checks as C
from .fgsm import fgsm
from .model import as_attack_model
from .pgd import pgd

DEFAULT_EPS = (0.0, 0.01, 0.03, 0.05, 0.1, 0.2, 0.3)


@dataclass
class SweepResult:
    eps: list                      # the eps values, ascending
    clean_accuracy: float
    accuracy: dict                 # attack name -> [accuracy at each eps]
    success_rate: dict             # attack name -> [success rate at each eps]
    n: int
    settings: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)   # attack name -> [wall seconds at each eps]

    def table(self) -> str:
        """A Markdown table: one row per eps, robust accuracy per attack."""
        names = list(self.accuracy)
        head = "| eps | " + " | ".join(f"{a} accuracy" for a in names) + " |"
        rule = "|---:|" + "---:|" * len(names)
        rows = [f"| {e:g} | " + " | ".join(f"{self.accuracy[a][i]:.4f}" for a in names) + " |"
                for i, e in enumerate(self.eps)]
        return "\n".join([head, rule] + rows)

    def to_dict(self) -> dict:
        return {"eps": list(self.eps), "clean_accuracy": self.clean_accuracy, "accuracy": self.accuracy,
                "success_rate": self.success_rate, "n": self.n, "settings": self.settings,
                "seconds": self.seconds}


def robustness_sweep(model, x, labels, eps=DEFAULT_EPS, *, attacks=("fgsm", "pgd"), norm: str = "linf",
                     pgd_steps: int = 10, pgd_step_size_factor: float = 2.5, random_start: bool = False,
                     seed: int = 0, early_stop: bool = True, progress: bool = False) -> SweepResult:
    """Accuracy of the model under each attack at each eps (untargeted, against the true labels).

    PGD uses step size pgd_step_size_factor * eps / pgd_steps. FGSM is always L-inf; with
    norm='l2' only PGD makes sense and attacks must be ('pgd',).
    """
    import time

    fn = "robustness_sweep"
    am = as_attack_model(model, fn)
    norm = C.norm_name(norm, fn)
    if isinstance(attacks, str):
        attacks = (attacks,)
    for a in attacks:
        if a not in ("fgsm", "pgd"):
            raise ValueError(f"{fn}: attacks must be drawn from ('fgsm', 'pgd'), got {a!r}")
    if norm == "l2" and "fgsm" in attacks:
        raise ValueError(f"{fn}: FGSM is an L-inf attack; use attacks=('pgd',) with norm='l2'")
    try:
        eps_list = sorted(C.number(e, fn, "eps", 0.0) for e in eps)
    except TypeError:
        raise TypeError(f"{fn}: eps must be a sequence of numbers, got {type(eps).__name__}") from None
    if not eps_list:
        raise ValueError(f"{fn}: eps is empty")
    x = am.check_images(x, fn)
    lab = C.classes(labels, fn, "labels", x.shape[0])
    acc = {a: [] for a in attacks}
    succ = {a: [] for a in attacks}
    secs = {a: [] for a in attacks}
    clean = None
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(eps_list) * len(attacks), desc="robustness sweep", leave=False)
        except ImportError:
            bar = None
    for e in eps_list:
        for a in attacks:
            t0 = time.perf_counter()
            if a == "fgsm":
                _, r = fgsm(am, x, lab, eps=e)
            else:
                _, r = pgd(am, x, lab, eps=e, norm=norm, steps=pgd_steps,
                           step_size=pgd_step_size_factor * e / pgd_steps, random_start=random_start, seed=seed,
                           early_stop=early_stop)
            secs[a].append(time.perf_counter() - t0)
            clean = r.clean_accuracy
            acc[a].append(r.robust_accuracy)
            succ[a].append(r.success_rate)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(eps=e, acc=f"{r.robust_accuracy:.3f}")
    if bar is not None:
        bar.close()
    settings = {"norm": norm, "pgd_steps": pgd_steps, "pgd_step_size": f"{pgd_step_size_factor} * eps / {pgd_steps}",
                "random_start": random_start, "seed": seed, "early_stop": early_stop, "bounds": list(am.bounds)}
    return SweepResult(eps_list, clean, acc, succ, int(x.shape[0]), settings, secs)

"""convkit.attacks: adversarial examples against any convkit network.

    from convkit.attacks import AttackModel, fgsm, pgd
    am = AttackModel(net, bounds=(0, 1))                     # mean=/std= for normalized networks
    x_adv, res = fgsm(am, x, labels, eps=0.1)                # untargeted
    x_adv, res = pgd(am, x, labels, eps=0.1, steps=10)       # L-inf PGD with a random start
    x_adv, res = fgsm(am, x, eps=0.1, targeted=True, target=3)
    print(res.summary())

Every attack returns (adversarial images, AttackResult); success is decided by re-predicting the
returned images. eps and step sizes are in pixel units (the AttackModel's bounds). Objectives are in
convkit.attacks.losses; pictures in convkit.attacks.plots; the eps sweep in convkit.attacks.sweep.
"""
from .fgsm import fgsm
from .fooling import class_visualization, every_target, fooling_images, gaussian_blur
from .losses import LOSSES, objective
from .model import AttackModel, probabilities
from .patch import apply_patch, evaluate_patch, patch_attack, random_locations, region_mask, universal_patch
from .pgd import pgd, project, random_point
from .result import AttackResult
from .sweep import DEFAULT_EPS, SweepResult, robustness_sweep

__all__ = ["AttackModel", "AttackResult", "DEFAULT_EPS", "LOSSES", "SweepResult", "apply_patch",
           "class_visualization", "evaluate_patch", "every_target", "fgsm", "fooling_images", "gaussian_blur",
           "objective", "patch_attack", "pgd", "probabilities", "project", "random_locations", "random_point",
           "region_mask", "robustness_sweep", "universal_patch"]


def __getattr__(name):  # the plotting module imports matplotlib: load it only when asked for
    if name == "plots":
        import importlib

        return importlib.import_module(".plots", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""convkit.models: the networks of the lecture, built from convkit.nn layers.

- ``lenet5()``: LeNet-5 for 28x28 one-channel images (Fashion-MNIST, MNIST).
- ``alexnet()``: AlexNet exactly as in the lecture's diagram (two-group convolutions, LRN).
- ``alexnet_torchvision()``: torchvision's single-tower AlexNet (no LRN, 64/192/384/256/256 filters).
- ``vgg19()``: VGG-19 in torchvision's layout (for style transfer; weights from a torch state dict).
- ``lenet5_fashion_mnist()``: the LeNet-5 trained by convkit on Fashion-MNIST that ships with the package.

Every builder takes ``seed`` (an int, a numpy Generator, or None for convkit.nn's default generator)
and ``dtype``. Layers have names (``model.names``); ``model.feature_layer`` names the layer whose
output is the penultimate feature vector ("FC7" in the lecture); ``model.input_shape`` is the
(C, H, W) the network expects; ``model.torch_keys`` (zoo models with a torchvision twin) maps
convkit parameter names to torchvision state-dict keys (see convkit.io.load_torch_state_dict).
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from .nn import (Conv2d, Dropout, Flatten, Linear, LocalResponseNorm, MaxPool2d, Normalize, ReLU, Sequential,
                 as_generator)

ASSETS = Path(__file__).resolve().parent / "_assets"
FASHION_MNIST_WEIGHTS = ASSETS / "lenet5_fashion_mnist.npz"


def _finish(model: Sequential, feature_layer: str, input_shape: tuple, name: str, torch_keys=None) -> Sequential:
    model.feature_layer = feature_layer
    model.input_shape = tuple(input_shape)
    model.arch = name
    model.torch_keys = torch_keys
    return model


FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530  # of the training images in [0, 1]


def lenet5(num_classes: int = 10, in_channels: int = 1, width: float = 1.0, dropout: float = 0.0,
           normalize=None, seed=0, dtype=np.float32) -> Sequential:
    """LeNet-5 (LeCun et al. 1998) for 28x28 inputs, with the usual modern deviations, all documented:

    conv1 5x5 pad 2 -> 6 maps (pad 2 turns 28x28 into the 32x32 the original expected), ReLU,
    2x2 max pool, conv2 5x5 -> 16 maps (the original's sparse C3 connection table is a full
    connection here), ReLU, 2x2 max pool, fc 400 -> 120 (the original's C5), ReLU, fc 120 -> 84
    (F6), ReLU, fc 84 -> num_classes (the original used RBF output units and tanh/average pooling).
    ``width`` scales every hidden layer (6, 16, 120, 84) for a wider variant; ``dropout`` > 0
    inserts dropout after the two hidden fully connected layers. ``normalize=(mean, std)`` puts a
    Normalize layer named "normalize" first, so the network takes [0, 1] pixels and standardizes
    them itself (the shipped model uses Fashion-MNIST's (0.2860, 0.3530); see the README for the
    recipe).
    """
    rng = as_generator(seed)
    c1, c2, f1, f2 = (max(1, int(round(v * width))) for v in (6, 16, 120, 84))
    layers = [("normalize", Normalize(*normalize))] if normalize is not None else []
    layers += [
        ("conv1", Conv2d(in_channels, c1, 5, padding=2, rng=rng, dtype=dtype)),
        ("relu1", ReLU()),
        ("pool1", MaxPool2d(2)),
        ("conv2", Conv2d(c1, c2, 5, rng=rng, dtype=dtype)),
        ("relu2", ReLU()),
        ("pool2", MaxPool2d(2)),
        ("flatten", Flatten()),
        ("fc1", Linear(c2 * 5 * 5, f1, rng=rng, dtype=dtype)),
        ("relu3", ReLU()),
    ]
    if dropout:
        layers.append(("drop3", Dropout(dropout, rng=rng)))
    layers += [("fc2", Linear(f1, f2, rng=rng, dtype=dtype)), ("relu4", ReLU())]
    if dropout:
        layers.append(("drop4", Dropout(dropout, rng=rng)))
    layers.append(("fc3", Linear(f2, num_classes, rng=rng, dtype=dtype)))
    return _finish(Sequential(OrderedDict(layers)), "relu4", (in_channels, 28, 28), "lenet5")


def alexnet(num_classes: int = 1000, dropout: float = 0.5, seed=0, dtype=np.float32) -> Sequential:
    """AlexNet as in the lecture's diagram (Krizhevsky et al. 2012, both GPU towers in one network):

    227x227x3 -> conv1 11x11 stride 4, 96 -> ReLU -> LRN -> max pool 3x3 stride 2 -> conv2 5x5 pad 2,
    256, groups 2 -> ReLU -> LRN -> pool -> conv3 3x3 pad 1, 384 -> ReLU -> conv4 3x3 pad 1, 384,
    groups 2 -> ReLU -> conv5 3x3 pad 1, 256, groups 2 -> ReLU -> pool -> FC 9216 -> 4096 -> ReLU ->
    dropout -> FC 4096 -> ReLU -> dropout -> FC num_classes.
    LRN as in the paper: size 5, alpha 1e-4, beta 0.75, k 2 (PyTorch's convention, alpha / size).
    """
    rng = as_generator(seed)
    kw = dict(rng=rng, dtype=dtype)

    def lrn():
        return LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)

    layers = OrderedDict([
        ("conv1", Conv2d(3, 96, 11, stride=4, **kw)), ("relu1", ReLU()), ("norm1", lrn()),
        ("pool1", MaxPool2d(3, 2)),
        ("conv2", Conv2d(96, 256, 5, padding=2, groups=2, **kw)), ("relu2", ReLU()), ("norm2", lrn()),
        ("pool2", MaxPool2d(3, 2)),
        ("conv3", Conv2d(256, 384, 3, padding=1, **kw)), ("relu3", ReLU()),
        ("conv4", Conv2d(384, 384, 3, padding=1, groups=2, **kw)), ("relu4", ReLU()),
        ("conv5", Conv2d(384, 256, 3, padding=1, groups=2, **kw)), ("relu5", ReLU()),
        ("pool5", MaxPool2d(3, 2)),
        ("flatten", Flatten()),
        ("fc6", Linear(256 * 6 * 6, 4096, **kw)), ("relu6", ReLU()), ("drop6", Dropout(dropout, rng=rng)),
        ("fc7", Linear(4096, 4096, **kw)), ("relu7", ReLU()), ("drop7", Dropout(dropout, rng=rng)),
        ("fc8", Linear(4096, num_classes, **kw)),
    ])
    return _finish(Sequential(layers), "relu7", (3, 227, 227), "alexnet")


def alexnet_torchvision(num_classes: int = 1000, dropout: float = 0.5, seed=0, dtype=np.float32) -> Sequential:
    """torchvision.models.alexnet's layout (the "one weird trick" single-tower AlexNet), 224x224x3 input:
    conv 11x11/4 pad 2 -> 64, pool 3/2, conv 5x5 pad 2 -> 192, pool, conv 3x3 -> 384, 256, 256, pool,
    then dropout/FC 9216 -> 4096, ReLU, dropout/FC 4096 -> 4096, ReLU, FC -> num_classes.

    Deviation: torchvision has an AdaptiveAvgPool2d((6, 6)) before the classifier; it is the
    identity for inputs whose last feature map is 6x6 (224x224, up to 231x231), the only sizes
    this model accepts (others fail at fc6 with a shape error).
    """
    rng = as_generator(seed)
    kw = dict(rng=rng, dtype=dtype)
    layers = OrderedDict([
        ("conv1", Conv2d(3, 64, 11, stride=4, padding=2, **kw)), ("relu1", ReLU()), ("pool1", MaxPool2d(3, 2)),
        ("conv2", Conv2d(64, 192, 5, padding=2, **kw)), ("relu2", ReLU()), ("pool2", MaxPool2d(3, 2)),
        ("conv3", Conv2d(192, 384, 3, padding=1, **kw)), ("relu3", ReLU()),
        ("conv4", Conv2d(384, 256, 3, padding=1, **kw)), ("relu4", ReLU()),
        ("conv5", Conv2d(256, 256, 3, padding=1, **kw)), ("relu5", ReLU()), ("pool5", MaxPool2d(3, 2)),
        ("flatten", Flatten()),
        ("drop6", Dropout(dropout, rng=rng)), ("fc6", Linear(256 * 6 * 6, 4096, **kw)), ("relu6", ReLU()),
        ("drop7", Dropout(dropout, rng=rng)), ("fc7", Linear(4096, 4096, **kw)), ("relu7", ReLU()),
        ("fc8", Linear(4096, num_classes, **kw)),
    ])
    keys = {}
    for name, idx in (("conv1", 0), ("conv2", 3), ("conv3", 6), ("conv4", 8), ("conv5", 10)):
        keys.update({f"{name}.weight": f"features.{idx}.weight", f"{name}.bias": f"features.{idx}.bias"})
    for name, idx in (("fc6", 1), ("fc7", 4), ("fc8", 6)):
        keys.update({f"{name}.weight": f"classifier.{idx}.weight", f"{name}.bias": f"classifier.{idx}.bias"})
    return _finish(Sequential(layers), "relu7", (3, 224, 224), "alexnet_torchvision", keys)


_VGG19_CFG = ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512))


def vgg19(classifier: bool = False, num_classes: int = 1000, dropout: float = 0.5, seed=0,
          dtype=np.float32) -> Sequential:
    """VGG-19 (configuration E) in torchvision's layout: 16 conv 3x3 pad 1 + ReLU layers named
    conv{block}_{i} / relu{block}_{i} (conv1_1 ... conv5_4, the names style transfer uses), a 2x2 max
    pool (pool1 ... pool5) after each block.

    classifier=False (the default) stops after pool5: style transfer needs only the features, and
    the classifier is 124M of the 144M parameters. classifier=True adds flatten, fc6 25088 -> 4096,
    relu6, drop6, fc7 4096 -> 4096, relu7, drop7, fc8 -> num_classes (torchvision's
    AdaptiveAvgPool2d((7, 7)) is the identity at 224x224, the input size this variant accepts).
    """
    rng = as_generator(seed)
    kw = dict(rng=rng, dtype=dtype)
    layers, keys = OrderedDict(), {}
    cin, tv = 3, 0  # tv: index in torchvision's `features` Sequential
    for b, widths in enumerate(_VGG19_CFG, start=1):
        for i, cout in enumerate(widths, start=1):
            layers[f"conv{b}_{i}"] = Conv2d(cin, cout, 3, padding=1, **kw)
            layers[f"relu{b}_{i}"] = ReLU()
            keys.update({f"conv{b}_{i}.weight": f"features.{tv}.weight", f"conv{b}_{i}.bias": f"features.{tv}.bias"})
            cin, tv = cout, tv + 2
        layers[f"pool{b}"] = MaxPool2d(2, 2)
        tv += 1
    feature_layer = "pool5"
    if classifier:
        layers["flatten"] = Flatten()
        for name, idx, fin, fout in (("fc6", 0, 512 * 7 * 7, 4096), ("fc7", 3, 4096, 4096),
                                     ("fc8", 6, 4096, num_classes)):
            layers[name] = Linear(fin, fout, **kw)
            keys.update({f"{name}.weight": f"classifier.{idx}.weight", f"{name}.bias": f"classifier.{idx}.bias"})
            if name != "fc8":
                layers[name.replace("fc", "relu")] = ReLU()
                layers[name.replace("fc", "drop")] = Dropout(dropout, rng=rng)
        feature_layer = "relu7"
    return _finish(Sequential(layers), feature_layer, (3, 224, 224), "vgg19", keys)


def lenet5_fashion_mnist(dtype=np.float32) -> Sequential:
    """The LeNet-5 trained by convkit on Fashion-MNIST that ships in convkit/_assets (eval mode).

    Inputs: [N, 1, 28, 28] images scaled to [0, 1] (convkit.data.to_float); outputs: 10 logits in
    the order of convkit.data.FASHION_MNIST_CLASSES. How it was made: see the README
    (``convkit train lenet5 ...``); the training settings are stored in the file.
    """
    from .io import load_npz

    if not FASHION_MNIST_WEIGHTS.exists():
        raise FileNotFoundError(f"the shipped Fashion-MNIST LeNet-5 is missing ({FASHION_MNIST_WEIGHTS}); "
                                f"reinstall convkit")
    state, meta = load_npz(FASHION_MNIST_WEIGHTS, return_meta=True)
    model = lenet5(**meta.get("model_kwargs", {}), seed=0, dtype=dtype)
    model.load_state_dict(state)
    model.meta = meta
    return model.eval()


pretrained_lenet5 = lenet5_fashion_mnist  # alias


MODELS = {"lenet5": lenet5, "alexnet": alexnet, "alexnet_torchvision": alexnet_torchvision, "vgg19": vgg19}


def get(name: str, **kwargs) -> Sequential:
    """A zoo model by name (one of MODELS)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name](**kwargs)


__all__ = ["MODELS", "alexnet", "alexnet_torchvision", "get", "lenet5", "lenet5_fashion_mnist", "pretrained_lenet5",
           "vgg19"]

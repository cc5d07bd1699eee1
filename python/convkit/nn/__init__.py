"""convkit.nn: layers, containers and losses with explicit forward/backward.

    model = convkit.nn.Sequential(OrderedDict([("conv1", Conv2d(1, 6, 5, padding=2)), ("relu1", ReLU()), ...]))
    y, acts = model.forward(x, capture=("fc7",))          # activations of named layers
    loss, dlogits = convkit.nn.cross_entropy(y, labels)
    dx = model.backward(dlogits)                          # p.grad accumulated, dx wrt the input
    dx, g = model.backward(None, grads_at={"conv4": d}, return_grads=("conv2",), param_grads=False)

Arrays are numpy on the CPU and convkit.DeviceArray on CUDA (``model.to("cuda")``); every
computation is a convkit.functional kernel.
"""
from .container import Sequential
from .layers import Conv2d, Dropout, Flatten, Linear, LocalResponseNorm, MaxPool2d, Normalize, ReLU
from .loss import CrossEntropyLoss, cross_entropy
from .module import Module, Parameter, as_generator, is_grad_enabled, manual_seed, no_grad

__all__ = ["Conv2d", "CrossEntropyLoss", "Dropout", "Flatten", "Linear", "LocalResponseNorm", "MaxPool2d",
           "Module", "Normalize", "Parameter", "ReLU", "Sequential", "as_generator", "cross_entropy", "is_grad_enabled",
           "manual_seed", "no_grad"]

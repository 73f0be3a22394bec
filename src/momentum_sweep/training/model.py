"""The network: an MLP with ReLU between layers (784-50-50-10 by default), as in the notebook.

``MLP`` is the model users load (`models/*/*/model.pt` is its state_dict) and the reference the
tests train with ``torch.optim.SGD``. For speed the trainer does not call it: the two step
implementations (``torch_step`` and ``native_step``) re-implement its forward and backward pass
on many models at once. `tests/test_torch_step.py` and `tests/test_native_step.py` keep both in
agreement with this module and ``torch.optim.SGD``.
"""

import torch
from torch import nn

from ..data.mnist import CLASSES, PIXELS


def layer_sizes(hidden):
    return [PIXELS, *hidden, CLASSES]


class MLP(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        sizes = layer_sizes(hidden)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))

    def forward(self, x):
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return self.layers[-1](x)


def initial_state(hidden, seed, scale=1.0):
    """The initial weights every arm of a replicate starts from: PyTorch's default init, every
    weight and bias times ``scale`` (train.init_scale; times 1.0 is exact, so 1.0 is the default
    init bit for bit)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return {name: value * scale for name, value in MLP(hidden).state_dict().items()}


def parameter_count(hidden) -> int:
    sizes = layer_sizes(hidden)
    return sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))

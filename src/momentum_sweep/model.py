"""The network: an MLP with ReLU between layers (784-50-50-10 by default), as in the notebook."""

import torch
from torch import nn

INPUTS = 28 * 28
CLASSES = 10


def layer_sizes(hidden):
    return [INPUTS, *hidden, CLASSES]


class MLP(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        sizes = layer_sizes(hidden)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))

    def forward(self, x):
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return self.layers[-1](x)


def initial_state(hidden, seed):
    """The one set of initial weights every momentum starts from (PyTorch's default init)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MLP(hidden).state_dict()

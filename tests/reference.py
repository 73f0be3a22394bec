"""The reference every step implementation is held to: MLP trained by torch.optim.SGD."""

import torch

from momentum_sweep.data.splits import Split, scaled
from momentum_sweep.training.model import MLP


def sgd(state, hidden, momentum, lr, split, order, batch_size):
    """A plain MLP from ``state``, trained by torch.optim.SGD on ``split`` in ``order``."""
    net = MLP(list(hidden))
    net.load_state_dict(state)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
    for batch in order.split(batch_size):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(scaled(split.images[batch])),
                                                 split.labels[batch])
        loss.backward()
        optimizer.step()
    return net.state_dict()


def subset(split, n) -> Split:
    return Split(split.images[:n], split.labels[:n])


def assert_states_close(actual, expected, rtol=1e-4, atol=1e-5):
    assert actual.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=rtol, atol=atol,
                                   msg=lambda m: f"{name}: {m}")


def assert_states_equal(actual, expected):
    assert actual.keys() == expected.keys()
    for name in expected:
        assert torch.equal(actual[name], expected[name]), name

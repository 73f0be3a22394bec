"""The reference every step implementation is held to: MLP trained by torch.optim.SGD."""

import math

import torch

from momentum_sweep.data.splits import Folds, Split, scaled
from momentum_sweep.training import arms, batches
from momentum_sweep.training.model import MLP, initial_state


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


UNIT_ROUNDOFF = 2.0 ** -24  # float32
LAMBDA = 6.0  # probabilistic bound: a sum exceeds it with probability below 2 exp(-18), ~3e-8


def step_tolerance(steps, layers, terms=785):
    """How far two float32 implementations of the same SGD steps may drift apart, relative to
    the largest change of a weight tensor over those steps.

    Each computed sum of n products (the longest: 784 pixels and a bias) differs from the exact
    one by at most lambda * sqrt(n) * u times the sum of the products' magnitudes, whatever the
    order of summation or the vector width, except with probability 2 exp(-lambda^2 / 2)
    (Higham and Mary, "A new approach to probabilistic rounding error analysis", SIAM J. Sci.
    Comput. 41, 2019). A step's update passes through 2 * layers + 1 such sums (forward,
    backward, weight gradient); two implementations may round in opposite directions (x2); and
    over a few steps their errors add up rather than grow (chaos needs hundreds of steps to
    amplify them), so the bound grows with the number of steps. The test holds each tensor's
    change from its start, not the weights, to this bound: the start is exact in both, and the
    change is what the arithmetic computes."""
    per_sum = LAMBDA * math.sqrt(terms) * UNIT_ROUNDOFF
    return steps * (2 * layers + 1) * 2 * per_sum


def assert_steps_agree(actual, expected, start, steps):
    """``actual`` and ``expected``, both trained from ``start`` for ``steps`` SGD steps, agree
    within float32's rounding (``step_tolerance``)."""
    assert actual.keys() == expected.keys() == start.keys()
    layers = sum(name.endswith(".weight") for name in start)
    tolerance = step_tolerance(steps, layers)
    for name in expected:
        change, reference = actual[name] - start[name], expected[name] - start[name]
        scale = reference.abs().max().item()
        assert scale > 0, f"{name}: the steps changed nothing"
        torch.testing.assert_close(change, reference, rtol=0, atol=tolerance * scale,
                                   msg=lambda m: f"{name} (tolerance {tolerance:.2g} of the "
                                                 f"largest change, {scale:.3g}): {m}")


def keys_for(arm_specs, replicates=(0,)):
    """Model keys, replicate by replicate; arm_specs: [(momentum, lr[, control])]."""
    return [arms.ModelKey(arms.Arm(*spec), r) for r in replicates for spec in arm_specs]


def sgd_of(key, hidden, seed, train, batch_size, epochs):
    """(start, result) for model ``key``: its replicate's initial weights, and torch.optim.SGD's
    result from them over ``epochs`` epochs of its replicate's batch order on ``train``."""
    start = initial_state(list(hidden), arms.replicate_seeds(seed, key.replicate)["init"])
    orders = batches.BatchOrders([key.replicate], seed, [torch.arange(len(train))])
    order = torch.cat([orders.next_epoch()[0] for _ in range(epochs)])
    return start, sgd(start, hidden, key.arm.sgd_momentum, key.arm.sgd_lr, train, order,
                      batch_size)


def subset(split, n) -> Split:
    return Split(split.images[:n], split.labels[:n])


def folds_of(splits, train=None) -> Folds:
    """A trainer's input from {"train", "val", "test"} splits: one fixed hold-out, ``train``
    (default: splits["train"]) to train on."""
    return Folds.of(splits["train"] if train is None else train, splits["val"], splits["test"])


def assert_states_equal(actual, expected):
    assert actual.keys() == expected.keys()
    for name in expected:
        assert torch.equal(actual[name], expected[name]), name


def identity_columns(arm, replicate) -> dict:
    """The identity columns of metrics/epochs.tsv for a model of ``arm`` in ``replicate`` (which
    validates on fold ``replicate``)."""
    return {"arm": arm.name, "momentum": arm.momentum, "control": int(arm.control),
            "lr": arm.lr, "effective_lr": arm.effective_lr, "replicate": replicate,
            "fold": replicate}

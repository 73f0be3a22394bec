"""The reference every step implementation is held to: MLP trained by torch.optim.SGD."""

import math

import torch

from momentum_sweep.data.splits import Folds, Split, load_folds, scaled
from momentum_sweep.vocabulary import arms
from momentum_sweep.training import batches
from momentum_sweep.training.model import MLP, initial_state
from momentum_sweep.vocabulary.schedule import Schedule


def sgd(state, hidden, momentum, lr, split, order, batch_size, nesterov=False):
    """A plain MLP from ``state``, trained by torch.optim.SGD on ``split`` in ``order``."""
    net = MLP(list(hidden))
    net.load_state_dict(state)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, nesterov=nesterov)
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


def keys_for(arm_specs, replicates=(0,), batch_size=20, nesterov=False):
    """Model keys, replicate by replicate; arm_specs: [(momentum, lr[, control])]."""
    return [arms.ModelKey(arms.Arm(spec[0], spec[1], batch_size, nesterov=nesterov,
                                   control=spec[2] if len(spec) > 2 else False), r)
            for r in replicates for spec in arm_specs]


def sgd_of(key, hidden, seed, train, batch_size, epochs, steps=None):
    """(start, result) for model ``key``: its replicate's initial weights, and torch.optim.SGD's
    result from them over ``epochs`` epochs (or their first ``steps``) of its replicate's batch
    order on ``train``."""
    start = initial_state(list(hidden), arms.replicate_seeds(seed, key.replicate)["init"])
    orders = batches.BatchOrders([key.replicate], seed, [torch.arange(len(train))])
    order = torch.cat([orders.next_epoch()[0] for _ in range(epochs)])
    if steps is not None:
        order = order[:steps * batch_size]
    return start, sgd(start, hidden, key.arm.sgd_momentum, key.arm.sgd_lr, train, order,
                      batch_size, key.arm.method["nesterov"])


def subset(split, n) -> Split:
    return Split(split.images[:n], split.labels[:n])


def folds_of(splits, train=None) -> Folds:
    """A trainer's input from {"train", "val", "test"} splits: one fixed hold-out (fold 0),
    ``train`` (default: splits["train"]) to train on."""
    train = splits["train"] if train is None else train
    pool = Split(torch.cat([splits["val"].images, train.images]),
                 torch.cat([splits["val"].labels, train.labels]))
    return Folds(pool, len(splits["val"]), 1, splits["test"])


def fitted(train_params, splits, train=None):
    """``train_params`` for a pass on ``folds_of(splits, train)``: its sizes those of the
    splits (the trainers read the schedule, the steps of an epoch, from the parameters)."""
    train = splits["train"] if train is None else train
    return train_params.model_copy(update={"max_train_images": len(splits["val"]) + len(train),
                                           "validation_size": len(splits["val"])})


def splits_of(train_params, flat_dir) -> dict:
    """train, val and test splits of a model validating on fold 0, on the CPU as uint8."""
    folds = load_folds(train_params, torch.device("cpu"), flat_dir)
    rows = folds.train_rows(0)
    return {"train": Split(folds.pool.images[rows], folds.pool.labels[rows]),
            "val": folds.validation(0), "test": folds.test}


def schedule_of(train_params, keys) -> Schedule:
    """The schedule of a pass of ``keys`` (one batch size)."""
    return Schedule.of(train_params, keys[0].arm.batch_size)


def epochs_of(trainer, epochs):
    """Train ``trainer`` for whole epochs; each epoch's Trained figures."""
    per_epoch = trainer.schedule.steps_per_epoch
    return [trainer.train_until(e * per_epoch) for e in range(1, epochs + 1)]


def assert_states_equal(actual, expected):
    assert actual.keys() == expected.keys()
    for name in expected:
        assert torch.equal(actual[name], expected[name]), name


def identity_columns(arm, replicate, budget_steps=1000, target=None) -> dict:
    """The identity columns of results/epochs.tsv for a model of ``arm`` in ``replicate`` (which
    validates on fold ``replicate``)."""
    from momentum_sweep.vocabulary.schema import identity

    return identity(arm, replicate, replicate, {"steps": budget_steps, "target": target})

"""The batched trainer: agrees with torch.optim.SGD, is independent of its batch of models."""

import math

import pytest
import torch

from momentum_sweep import data, model, trainer
from momentum_sweep.device import MemoryProbe
from momentum_sweep.params import TrainParams

from conftest import ROOT

MOMENTA = [0.0, 0.1, 0.2, 0.4, 0.5]


@pytest.fixture(scope="module")
def splits():
    flat = ROOT / "data" / "flat"
    if not (flat / "train.pt").exists():
        from momentum_sweep import download, flatten
        from momentum_sweep.params import DataParams

        raw = ROOT / "data" / "raw"
        download.download(DataParams(), raw_dir=raw, carried_dir=ROOT / "data" / "mnist")
        flatten.flatten(raw_dir=raw, flat_dir=flat)
    return data.load_splits(SMALL_TRAIN, torch.device("cpu"), flat_dir=flat)


SMALL_TRAIN = TrainParams(max_train_images=3000, validation_size=500, epochs=2, batch_size=20)


def train(momenta, splits, train_params=SMALL_TRAIN, hidden=(50, 50)):
    initial = model.initial_state(list(hidden), train_params.seed)
    *_, (stack, stats) = trainer.train_together(momenta, initial, list(hidden), train_params,
                                                splits, MemoryProbe(torch.device("cpu")))
    return stack, stats


@pytest.mark.parametrize("hidden", [(50, 50), (32,), (20, 30, 40)])
def test_steps_agree_with_torch_optim_sgd(splits, hidden):
    initial = model.initial_state(list(hidden), seed=3)
    stack = trainer.StackedMLPs(list(hidden), initial, MOMENTA, "cpu")
    images, labels = splits["train"].images[:600], splits["train"].labels[:600]
    inputs = trainer.with_ones(images)
    neg_onehot = -torch.nn.functional.one_hot(labels, 10).float()
    batches = [slice(s, s + 20) for s in range(0, 600, 20)]
    for b in batches:
        stack.step(inputs[b], neg_onehot[b], 0.1)
    for k, momentum in enumerate(MOMENTA):
        net = model.MLP(list(hidden))
        net.load_state_dict(initial)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=momentum)
        for b in batches:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(images[b]), labels[b]).backward()
            optimizer.step()
        for name, expected in net.state_dict().items():
            torch.testing.assert_close(stack.state_dict(k)[name], expected, rtol=1e-5, atol=1e-5)


def test_a_model_is_bit_identical_alone_or_in_any_batch(splits):
    together, _ = train(MOMENTA, splits)
    for k, momentum in [(3, 0.4), (0, 0.0)]:
        alone, _ = train([momentum], splits)
        for name, tensor in alone.state_dict(0).items():
            assert torch.equal(tensor, together.state_dict(k)[name]), (momentum, name)
    reordered, _ = train([0.5, 0.2], splits)
    for name, tensor in reordered.state_dict(1).items():
        assert torch.equal(tensor, together.state_dict(2)[name])


def test_every_model_starts_from_the_same_weights():
    initial = model.initial_state([50, 50], seed=1)
    stack = trainer.StackedMLPs([50, 50], initial, MOMENTA, "cpu")
    for k in range(len(MOMENTA)):
        for name, tensor in initial.items():
            assert torch.equal(stack.state_dict(k)[name], tensor)


def test_saved_model_reevaluates_to_the_recorded_accuracy(splits):
    stack, stats = train([0.0, 0.5], splits)
    for k in range(2):
        net = model.MLP([50, 50])
        net.load_state_dict(stack.state_dict(k))
        with torch.no_grad():
            predictions = net(splits["test"].images).argmax(1)
        accuracy = (predictions == splits["test"].labels).double().mean().item()
        assert abs(accuracy - stats.test_accuracy[k]) <= 1 / 10_000  # at most one image's flip
        assert 0.8 < accuracy < 1


def test_metrics_are_epoch_means_not_last_batch(splits):
    _, stats = train([0.0], splits)
    assert 0.75 < stats.train_accuracy[0] < 0.99  # the notebook's "accuracy" was 1.0
    assert 0.05 < stats.train_loss[0] < 1.0
    assert stats.train_seconds > 0 and stats.epoch_seconds >= stats.train_seconds


def test_a_diverged_model_leaves_the_others_untouched(splits):
    images, labels = splits["train"].images[:800], splits["train"].labels[:800]
    inputs = trainer.with_ones(images)
    neg_onehot = -torch.nn.functional.one_hot(labels, 10).float()
    initial = model.initial_state([50, 50], seed=1)
    pair = trainer.StackedMLPs([50, 50], initial, [0.0, 0.9], "cpu")
    alone = trainer.StackedMLPs([50, 50], initial, [0.0], "cpu")
    for step, start in enumerate(range(0, 800, 20)):
        if step == 10:
            pair.weights[1][1].fill_(float("nan"))  # model 1 blows up
        log_probs = pair.step(inputs[start:start + 20], neg_onehot[start:start + 20], 0.1)
        alone.step(inputs[start:start + 20], neg_onehot[start:start + 20], 0.1)
    assert log_probs[1].isnan().all() and log_probs[0].isfinite().all()
    for name, tensor in alone.state_dict(0).items():
        assert torch.equal(pair.state_dict(0)[name], tensor)


def test_huge_learning_rate_is_reported_as_non_finite_loss(splits):
    _, stats = train([0.0, 0.9], splits, SMALL_TRAIN.model_copy(update={"lr": 1e4, "epochs": 1}))
    assert not any(map(math.isfinite, stats.train_loss))


def test_saved_state_holds_only_this_model():
    initial = model.initial_state([50, 50], seed=1)
    stack = trainer.StackedMLPs([50, 50], initial, MOMENTA, "cpu")
    for tensor in stack.state_dict(2).values():
        assert tensor.untyped_storage().nbytes() == tensor.numel() * 4

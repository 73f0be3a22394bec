"""The PyTorch step agrees with torch.optim.SGD and is independent of its batch of models."""

import pytest
import torch

from momentum_sweep.training import model, trainer
from momentum_sweep.training.torch_step import TorchStep, neg_onehot, with_ones

from reference import (assert_states_equal, assert_steps_agree, epochs_of, folds_of, keys_for,
                       schedule_of, sgd, subset)

# (momentum, Nesterov's update, lr) per model, in two replicate groups that see different
# batches.
MODELS = [(0.0, False, 0.1), (0.5, False, 0.1), (0.9, True, 0.05), (0.0, False, 0.2),
          (0.4, True, 0.3)]
GROUPS = [(0, 3), (3, 5)]


@pytest.mark.parametrize("hidden", [(50, 50), (32,), (20, 30, 40)])
def test_steps_agree_with_torch_optim_sgd(small_splits, hidden):
    """20 steps: before chaos amplifies rounding (see step_tolerance); heavy-ball and Nesterov's
    update side by side in one pass."""
    train = subset(small_splits[1]["train"], 800)
    states = [model.initial_state(list(hidden), seed) for seed in (3, 4)]
    group_of = [g for g, (a, b) in enumerate(GROUPS) for _ in range(a, b)]
    step = TorchStep(list(hidden), [states[g] for g in group_of], [m for m, _, _ in MODELS],
                     [n for _, n, _ in MODELS], [lr for _, _, lr in MODELS], GROUPS, "cpu")
    orders = [torch.arange(400), torch.arange(400, 800)]  # group g's images, in order
    for start in range(0, 400, 20):
        batch = torch.stack([o[start:start + 20] for o in orders])               # [G, B]
        labels = train.labels[batch][torch.tensor(group_of)]                     # [K, B]
        step.step(with_ones(train.images[batch]), neg_onehot(labels))
    for k, (momentum, nesterov, lr) in enumerate(MODELS):
        expected = sgd(states[group_of[k]], hidden, momentum, lr, train, orders[group_of[k]], 20,
                       nesterov)
        assert_steps_agree(step.state_dict(k), expected, states[group_of[k]], steps=20)


def train_torch(keys, splits_and_params, epochs=2):
    train_params, splits = splits_and_params
    train_params = train_params.model_copy(update={"epochs": epochs})
    t = trainer.TorchTrainer(keys, [50, 50], train_params, schedule_of(train_params, keys),
                             folds_of(splits), torch.device("cpu"))
    epochs_of(t, epochs)
    return t


def test_a_model_is_bit_identical_alone_or_in_any_batch(small_splits):
    together = train_torch(keys_for([(m, 0.1) for m in (0.0, 0.2, 0.4)], replicates=(0, 1)),
                           small_splits)
    alone = train_torch(keys_for([(0.4, 0.1)], replicates=(1,)), small_splits)
    assert_states_equal(alone.state_dict(0), together.state_dict(5))
    reordered = train_torch(keys_for([(0.4, 0.1), (0.0, 0.1)], replicates=(0,)), small_splits)
    assert_states_equal(reordered.state_dict(1), together.state_dict(0))


def test_a_diverged_model_leaves_the_others_untouched(small_splits):
    train = subset(small_splits[1]["train"], 800)
    state = model.initial_state([50, 50], seed=1)
    pair = TorchStep([50, 50], [state, state], [0.0, 0.9], [False, True], [0.1, 0.1], [(0, 2)],
                     "cpu")
    alone = TorchStep([50, 50], [state], [0.0], [False], [0.1], [(0, 1)], "cpu")
    for step, start in enumerate(range(0, 800, 20)):
        if step == 10:
            pair.weights[1][1].fill_(float("nan"))  # model 1 blows up
        batch = torch.arange(start, start + 20).unsqueeze(0)
        labels = train.labels[batch]
        log_probs = pair.step(with_ones(train.images[batch]), neg_onehot(labels.expand(2, -1)))
        alone.step(with_ones(train.images[batch]), neg_onehot(labels))
    assert log_probs[1].isnan().all() and log_probs[0].isfinite().all()
    assert_states_equal(pair.state_dict(0), alone.state_dict(0))


def test_saved_state_holds_only_this_model():
    state = model.initial_state([50, 50], seed=1)
    step = TorchStep([50, 50], [state] * 3, [0.0, 0.1, 0.2], [False] * 3, [0.1] * 3, [(0, 3)],
                     "cpu")
    for tensor in step.state_dict(2).values():
        assert tensor.untyped_storage().nbytes() == tensor.numel() * 4


def test_training_figures_are_epoch_means_not_the_last_batch(small_splits):
    train_params, splits = small_splits
    keys = keys_for([(0.0, 0.1)])
    t = trainer.TorchTrainer(keys, [50, 50], train_params, schedule_of(train_params, keys),
                             folds_of(splits), torch.device("cpu"))
    [figures] = epochs_of(t, 1)
    loss, accuracy = figures.loss / figures.images, figures.correct / figures.images
    assert 0.3 < accuracy[0] < 0.99 and 0.05 < loss[0] < 2.3  # the notebook's "accuracy" was 1.0
    assert figures.step_losses.shape == (1, -(-len(splits["train"]) // 20))
    assert figures.images == len(splits["train"])
    assert figures.step_losses[0].sum() == pytest.approx(figures.loss[0], rel=1e-12)
    val_loss, val_accuracy = t.evaluate(splits["val"], [0])
    net = model.MLP([50, 50])
    net.load_state_dict(t.state_dict(0))
    predictions = net(splits["val"].images.float() / 255).argmax(1)
    assert val_accuracy[0] == (predictions == splits["val"].labels).double().mean().item()

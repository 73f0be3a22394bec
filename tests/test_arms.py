"""Arms, replicates and the paired structure of a pass."""

import pytest
import torch

from momentum_sweep.data.splits import split_indices
from momentum_sweep.training import arms, batches, model, trainer

from reference import assert_states_equal, assert_steps_agree, sgd_of, subset
from good_params import parsed


def test_arms_are_the_listed_momenta_then_a_control_for_each_nonzero_one():
    found = arms.arms(parsed())
    listed = [a for a in found if not a.control]
    controls = [a for a in found if a.control]
    assert [a.momentum for a in listed] == [0.0, 0.1, 0.2, 0.4, 0.5]
    assert all(a.lr == 0.1 and a.sgd_momentum == a.momentum for a in listed)
    assert [a.momentum for a in controls] == [0.1, 0.2, 0.4, 0.5]
    for control in controls:
        assert control.sgd_momentum == 0.0
        assert control.lr == pytest.approx(0.1 / (1 - control.momentum), rel=1e-15)
    assert [a.name for a in found][-1] == "control_0.5"
    assert all(not a.control for a in arms.arms(parsed(lr_control=False)))


def test_models_are_every_arm_in_every_replicate_replicate_by_replicate():
    keys = arms.models(parsed(replicates=3))
    assert len(keys) == 9 * 3
    assert [k.replicate for k in keys] == sorted(k.replicate for k in keys)
    assert keys[0].name == "momentum_0.0/replicate_0"


def test_replicates_differ_and_arms_of_a_replicate_share_their_start():
    seeds = [arms.replicate_seeds(1, r) for r in range(4)]
    assert len({s["init"] for s in seeds}) == 4 and len({s["order"] for s in seeds}) == 4
    starts = [model.initial_state([50, 50], s["init"]) for s in seeds[:2]]
    assert not torch.equal(starts[0]["layers.0.weight"], starts[1]["layers.0.weight"])
    orders = batches.BatchOrders([0, 1], 1, 1000).next_epoch()
    assert not torch.equal(orders[0], orders[1])


def test_the_validation_split_belongs_to_the_data_not_to_the_replicate():
    base = parsed().train
    for other in (parsed(replicates=20).train, parsed(lr_control=False).train):
        for a, b in zip(split_indices(base), split_indices(other)):
            assert torch.equal(a, b)


@pytest.mark.parametrize("implementation", ["torch", "native"])
def test_every_arm_of_a_replicate_trains_from_its_weights_on_its_batches(small_splits,
                                                                         implementation):
    """Momentum 0.4 and its control, in two replicates, each equal to torch.optim.SGD run from
    that replicate's initial weights over that replicate's batch order; the control at
    lr/(1 - 0.4) with momentum 0."""
    train_params, splits = small_splits
    train = subset(splits["train"], 400)  # 20 steps: see step_tolerance
    keys = [arms.ModelKey(arm, r) for r in (0, 1)
            for arm in (arms.Arm(0.4, 0.1), arms.Arm(0.4, 0.1 / 0.6, control=True))]
    t = trainer.make_trainer(implementation, keys, [50, 50], train_params,
                             {**splits, "train": train}, torch.device("cpu"))
    t.train_epoch()
    for k, key in enumerate(keys):
        start, expected = sgd_of(key, (50, 50), train_params.seed, train,
                                 train_params.batch_size, epochs=1)
        assert_steps_agree(t.state_dict(k), expected, start, steps=len(train) // 20)
    if implementation == "torch":  # same start: before training, every arm of a replicate
        fresh = trainer.make_trainer(implementation, keys, [50, 50], train_params,
                                     {**splits, "train": train}, torch.device("cpu"))
        assert_states_equal(fresh.state_dict(0), fresh.state_dict(1))

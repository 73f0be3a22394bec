"""Arms, replicates and the paired structure of a pass."""

import pytest
import torch

from momentum_sweep import params
from momentum_sweep.data import splits
from momentum_sweep.data.splits import split_indices
from momentum_sweep.training import arms, batches, model, train, trainer

from reference import assert_states_equal, assert_steps_agree, folds_of, sgd_of, subset
from good_params import parsed, with_change


def test_arms_are_the_listed_momenta_then_a_control_for_each_nonzero_one():
    found = arms.arms(parsed())
    listed = [a for a in found if not a.control]
    controls = [a for a in found if a.control]
    assert [a.momentum for a in listed] == [0.0, 0.1, 0.2, 0.4, 0.5]
    assert all(a.lr == a.sgd_lr == 0.1 and a.sgd_momentum == a.momentum for a in listed)
    assert [a.momentum for a in controls] == [0.1, 0.2, 0.4, 0.5]
    for control in controls:
        assert control.sgd_momentum == 0.0 and control.lr == 0.1
        assert control.sgd_lr == pytest.approx(0.1 / (1 - control.momentum), rel=1e-15)
        assert control.effective_lr == arms.Arm(control.momentum, 0.1).effective_lr
    assert [a.name for a in found][-1] == "control_0.5_lr_0.1"
    assert all(not a.control for a in arms.arms(parsed(lr_control=False)))


def test_a_grid_is_every_pair_and_a_control_that_is_a_grid_arm_is_not_trained_twice():
    p = params.parse(with_change("train.lr", [0.05, 0.1]) | {"momentum": [0.0, 0.5]})
    found = arms.arms(p)
    # the control of 0.5 at lr 0.05 is SGD at 0.1: the grid's momentum 0 at lr 0.1
    assert found == [arms.Arm(0.0, 0.05), arms.Arm(0.5, 0.05), arms.Arm(0.0, 0.1),
                     arms.Arm(0.5, 0.1), arms.Arm(0.5, 0.1, control=True)]
    compared = arms.pairs(found)
    assert compared["vs_zero"] == [(arms.Arm(0.5, 0.05), arms.Arm(0.0, 0.05)),
                                   (arms.Arm(0.5, 0.1), arms.Arm(0.0, 0.1))]
    assert compared["vs_control"] == [(arms.Arm(0.5, 0.05), arms.Arm(0.0, 0.1)),
                                      (arms.Arm(0.5, 0.1), arms.Arm(0.5, 0.1, control=True))]
    assert len({a.name for a in found}) == len(found)


def test_models_are_every_arm_in_every_replicate_replicate_by_replicate():
    keys = arms.models(parsed(replicates=3))
    assert len(keys) == 9 * 3
    assert [k.replicate for k in keys] == sorted(k.replicate for k in keys)
    assert keys[0].name == "momentum_0.0_lr_0.1/replicate_0"


def test_replicates_differ_and_arms_of_a_replicate_share_their_start():
    seeds = [arms.replicate_seeds(1, r) for r in range(4)]
    assert len({s["init"] for s in seeds}) == 4 and len({s["order"] for s in seeds}) == 4
    starts = [model.initial_state([50, 50], s["init"]) for s in seeds[:2]]
    assert not torch.equal(starts[0]["layers.0.weight"], starts[1]["layers.0.weight"])
    rows = torch.arange(1000)
    orders = batches.BatchOrders([0, 1], 1, [rows, rows]).next_epoch()
    assert not torch.equal(orders[0], orders[1])


def test_folds_are_disjoint_cover_the_used_images_and_belong_to_the_data():
    base = parsed(max_train_images=3000, validation_size=500).train
    assert base.folds == 6
    validations = [set(split_indices(base, f)[1].tolist()) for f in range(base.folds)]
    assert all(len(v) == 500 for v in validations)
    assert len(set().union(*validations)) == 3000            # disjoint, and they cover
    for f in range(base.folds):
        train, val = (set(i.tolist()) for i in split_indices(base, f))
        assert not train & val and len(train | val) == 3000
    for other in (parsed(max_train_images=3000, validation_size=500, replicates=20).train,
                  parsed(max_train_images=3000, validation_size=500, lr=[0.05, 0.1]).train):
        for f in range(base.folds):
            for a, b in zip(split_indices(base, f), split_indices(other, f)):
                assert torch.equal(a, b)


def test_every_arm_of_a_replicate_shares_its_fold_and_replicates_take_folds_in_turn(flat_dir):
    tp = parsed(max_train_images=1500, validation_size=500, replicates=4).train
    folds = splits.load_folds(tp, torch.device("cpu"), flat_dir=flat_dir)
    keys = arms.models(params.parse(with_change("train.replicates", 4)))
    layout = batches.Replicates.of(keys, [8], tp, folds)
    assert layout.folds == [0, 1, 2, 0]
    orders = layout.orders.next_epoch()                                      # [G, N]
    for g, fold in enumerate(layout.folds):
        trained_on = set(orders[g].tolist())
        held_out = set(range(fold * 500, (fold + 1) * 500))
        assert len(trained_on) == 1000 and not trained_on & held_out
    off = tp.model_copy(update={"cross_validation": False})
    assert batches.Replicates.of(keys, [8], off, splits.load_folds(off, "cpu", flat_dir)
                                 ).folds == [0, 0, 0, 0]


def test_without_cross_validation_each_replicate_sees_the_batches_it_always_has(flat_dir):
    """Fold 0 is the fixed hold-out every replicate used before folds existed: the same
    training images in the same order, so scalar-lr models come out byte for byte as before."""
    tp = parsed(max_train_images=3000, validation_size=500, cross_validation=False).train
    folds = splits.load_folds(tp, torch.device("cpu"), flat_dir=flat_dir)
    orders = batches.BatchOrders([0, 3], tp.seed, [folds.train_rows(0)] * 2).next_epoch()
    # the hold-out as it was: a permutation of MNIST by train.seed, its first validation_size
    # images held out, and each replicate's order a permutation of the rest
    used = torch.randperm(60_000, generator=torch.Generator().manual_seed(tp.seed))[:3000]
    for g, r in enumerate([0, 3]):
        order = torch.randperm(2500, generator=torch.Generator().manual_seed(
            arms.replicate_seeds(tp.seed, r)["order"]))
        assert torch.equal(used[orders[g]], used[500:][order])


@pytest.mark.parametrize("implementation", ["torch", "native"])
def test_every_arm_of_a_replicate_trains_from_its_weights_on_its_batches(small_splits,
                                                                         implementation):
    """Momentum 0.4 and its control, in two replicates, each equal to torch.optim.SGD run from
    that replicate's initial weights over that replicate's batch order; the control at
    lr/(1 - 0.4) with momentum 0."""
    train_params, splits = small_splits
    train = subset(splits["train"], 400)  # 20 steps: see step_tolerance
    keys = [arms.ModelKey(arm, r) for r in (0, 1)
            for arm in (arms.Arm(0.4, 0.1), arms.Arm(0.4, 0.1, control=True))]
    t = trainer.make_trainer(implementation, keys, [50, 50], train_params,
                             folds_of(splits, train), torch.device("cpu"))
    t.train_epoch()
    for k, key in enumerate(keys):
        start, expected = sgd_of(key, (50, 50), train_params.seed, train,
                                 train_params.batch_size, epochs=1)
        assert_steps_agree(t.state_dict(k), expected, start, steps=len(train) // 20)
    if implementation == "torch":  # same start: before training, every arm of a replicate
        fresh = trainer.make_trainer(implementation, keys, [50, 50], train_params,
                                     folds_of(splits, train), torch.device("cpu"))
        assert_states_equal(fresh.state_dict(0), fresh.state_dict(1))


@pytest.mark.parametrize("implementation", ["native", "torch"])
def test_models_are_trained_in_passes_of_whole_replicates_whose_memory_is_bounded(implementation):
    """400 models of a 4-lr grid: several passes, each of whole replicates and within
    PASS_BYTES, together every model once in order; the default 45 models: one pass."""
    p = params.parse(with_change("train.lr", [0.025, 0.05, 0.1, 0.2])
                     | {"momentum": [0.0, 0.1, 0.2, 0.4, 0.5]})
    p = p.model_copy(update={"train": p.train.model_copy(update={"replicates": 20,
                                                                 "lr_control": False})})
    keys = arms.models(p)
    planned = train.passes(keys, implementation, p)
    assert len(keys) == 400 and len(planned) > 1
    assert [k for keys_of_pass in planned for k in keys_of_pass] == keys
    for keys_of_pass in planned:
        replicates = {k.replicate for k in keys_of_pass}
        assert len(keys_of_pass) == 20 * len(replicates)                  # whole replicates
        assert train.pass_bytes(implementation, keys_of_pass, p.model.hidden,
                                p.train) <= train.PASS_BYTES
    assert len(train.passes(arms.models(parsed()), implementation, parsed())) == 1

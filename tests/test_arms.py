"""Arms, replicates and the paired structure of a pass: the grid of batch sizes, lrs, momenta
and updates, the controls, and what every arm of a replicate shares."""

import pytest
import torch

from momentum_sweep import params
from momentum_sweep.data import splits
from momentum_sweep.data.splits import split_indices
from momentum_sweep.vocabulary import arms
from momentum_sweep.training import batches, model, train, trainer
from momentum_sweep.vocabulary.arms import Arm

from reference import (assert_states_equal, assert_steps_agree, epochs_of, fitted, folds_of,
                       schedule_of, sgd_of, subset)
from good_params import parsed, with_change


def grid_params(**train_settings):
    """The committed params with these train settings and momenta [0, 0.5]."""
    raw = with_change("momentum", [0.0, 0.5])
    raw["train"].update(train_settings)
    return params.parse(raw)


def test_arms_are_the_listed_momenta_then_a_control_for_each_nonzero_one():
    found = arms.arms(parsed())
    listed = [a for a in found if not a.control]
    controls = [a for a in found if a.control]
    assert [a.momentum for a in listed] == [0.0, 0.1, 0.2, 0.4, 0.5]
    assert all(a.lr == a.sgd_lr == 0.1 and a.sgd_momentum == a.momentum for a in listed)
    assert all(a.batch_size == 20 and a.kind == "momentum" for a in listed)
    assert [a.momentum for a in controls] == [0.1, 0.2, 0.4, 0.5]
    for control in controls:
        assert control.sgd_momentum == 0.0 and control.lr == 0.1
        assert control.sgd_lr == pytest.approx(0.1 / (1 - control.momentum), rel=1e-15)
        assert control.effective_lr == Arm(control.momentum, 0.1, 20).effective_lr
    assert [a.name for a in found][-1] == "control_0.5_lr_0.1_batch_20"
    assert all(not a.control for a in arms.arms(parsed(lr_control=False)))


def test_momentum_0_is_always_trained_it_is_the_reference():
    p = params.parse(with_change("momentum", 0.4))
    assert p.momenta == [0.0, 0.4]
    assert arms.pairs(arms.arms(p))["vs_zero"] == [(Arm(0.4, 0.1, 20), Arm(0.0, 0.1, 20))]


def test_a_grid_is_every_point_and_a_control_that_is_a_grid_arm_is_not_trained_twice():
    p = grid_params(lr=[0.05, 0.1])
    found = arms.arms(p)
    # the control of 0.5 at lr 0.05 is SGD at 0.1: the grid's momentum 0 at lr 0.1
    assert found == [Arm(0.0, 0.05, 20), Arm(0.5, 0.05, 20), Arm(0.0, 0.1, 20),
                     Arm(0.5, 0.1, 20), Arm(0.5, 0.1, 20, control=True)]
    compared = arms.pairs(found)
    assert compared["vs_zero"] == [(Arm(0.5, 0.05, 20), Arm(0.0, 0.05, 20)),
                                   (Arm(0.5, 0.1, 20), Arm(0.0, 0.1, 20))]
    assert compared["vs_control"] == [(Arm(0.5, 0.05, 20), Arm(0.0, 0.1, 20)),
                                      (Arm(0.5, 0.1, 20), Arm(0.5, 0.1, 20, control=True))]
    assert len({a.name for a in found}) == len(found)


def test_batch_sizes_and_nesterov_are_grid_dimensions_paired_within_a_batch_size():
    p = grid_params(batch_size=[20, 1000], nesterov=[0.5], lr_control=True)
    found = arms.arms(p)
    listed = [a for a in found if not a.control]
    assert {(a.batch_size, a.momentum, a.nesterov) for a in listed} == {
        (b, m, n) for b in (20, 1000) for m, n in ((0.0, False), (0.5, False), (0.5, True))}
    # heavy-ball's and Nesterov's 0.5 share one control (the same steady-state step)
    controls = [a for a in found if a.control]
    assert controls == [Arm(0.5, 0.1, 20, control=True), Arm(0.5, 0.1, 1000, control=True)]
    for arm, other in arms.pairs(found)["vs_zero"] + arms.pairs(found)["vs_control"]:
        assert arm.batch_size == other.batch_size
    nesterov = Arm(0.5, 0.1, 1000, nesterov=True)
    assert nesterov.name == "nesterov_0.5_lr_0.1_batch_1000"
    assert nesterov.method == {"lr": 0.1, "momentum": 0.5, "nesterov": True, "batch_size": 1000}


def test_an_effective_lr_grid_gives_every_momentum_the_same_steps_and_its_control_free():
    """train.effective_lr: each listed value is lr/(1 - mu); the control of momentum mu at step
    e is plain SGD at e, which is momentum 0's arm at e: no control is trained."""
    p = grid_params(lr=[0.1, 0.2], effective_lr=True, lr_control=True)
    found = arms.arms(p)
    assert all(not a.control for a in found) and len(found) == 4
    half = Arm(0.5, 0.2, 20, effective=True)
    assert half in found and half.sgd_lr == 0.1 and half.effective_lr == 0.2
    assert half.name == "momentum_0.5_step_0.2_batch_20"
    assert arms.control_of(half, found) == Arm(0.0, 0.2, 20, effective=True)


def test_a_model_is_what_it_trains_not_the_arm_that_asked():
    """A control and a grid arm with the same step train the same model: one fingerprint."""
    assert Arm(0.5, 0.1, 20, control=True).method == Arm(0.0, 0.2, 20).method
    assert Arm(0.9, 0.1, 20, effective=True).method["lr"] == 0.01  # float32 as training uses
    assert Arm(0.4, 0.1, 20).method != Arm(0.4, 0.1, 40).method


@pytest.mark.parametrize("arm", [Arm(0.4, 0.1, 20), Arm(0.0, 1e-05, 8192),
                                 Arm(0.9, 0.025, 1024, nesterov=True),
                                 Arm(0.99, 3.2, 256, effective=True),
                                 Arm(0.5, 0.2, 20, control=True, effective=True)])
def test_an_arms_name_reads_back_as_the_arm(arm):
    assert Arm.from_name(arm.name) == arm


@pytest.mark.parametrize("name", ["momentum_0.4_lr_0.1", "momentum_0.40_lr_0.1_batch_20",
                                  "momentum_x_lr_0.1_batch_20", "replicate_0"])
def test_a_name_that_is_no_arms_is_refused(name):
    with pytest.raises(ValueError):
        Arm.from_name(name)


def test_models_are_every_arm_in_every_replicate_replicate_by_replicate():
    keys = arms.models(parsed(replicates=3))
    assert len(keys) == 9 * 3
    assert [k.replicate for k in keys] == sorted(k.replicate for k in keys)
    assert keys[0].name == "momentum_0.0_lr_0.1_batch_20/replicate_0"


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
        train_set, val = (set(i.tolist()) for i in split_indices(base, f))
        assert not train_set & val and len(train_set | val) == 3000
    for other in (parsed(max_train_images=3000, validation_size=500, replicates=20).train,
                  parsed(max_train_images=3000, validation_size=500, lr=[0.05, 0.1]).train,
                  parsed(max_train_images=3000, validation_size=500, batch_size=[20, 100]).train):
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


def test_every_batch_size_of_a_replicate_sees_the_same_examples_in_the_same_order(flat_dir):
    """Pairing across batch sizes: a replicate's arms at batch 20 and at batch 100 start from
    the same weights and take the same order of examples each epoch, batch 100's batches being
    five of batch 20's joined."""
    tp = parsed(max_train_images=1500, validation_size=500, batch_size=[20, 100]).train
    folds = splits.load_folds(tp, torch.device("cpu"), flat_dir=flat_dir)
    p = params.parse(with_change("train.batch_size", [20, 100]))
    keys = arms.models(p)
    small = [k for k in keys if k.arm.batch_size == 20 and k.replicate == 1]
    large = [k for k in keys if k.arm.batch_size == 100 and k.replicate == 1]
    layouts = [batches.Replicates.of(found, [8], tp, folds) for found in (small, large)]
    for name, tensor in layouts[0].initial[0].items():
        assert torch.equal(tensor, layouts[1].initial[0][name])
    for _ in range(2):  # epoch after epoch
        assert torch.equal(layouts[0].orders.next_epoch(), layouts[1].orders.next_epoch())


@pytest.mark.parametrize("implementation", ["torch", "native"])
def test_every_arm_of_a_replicate_trains_from_its_weights_on_its_batches(small_splits,
                                                                         implementation):
    """Momentum 0.4 and its control, in two replicates, each equal to torch.optim.SGD run from
    that replicate's initial weights over that replicate's batch order; the control at
    lr/(1 - 0.4) with momentum 0."""
    train_params, found = small_splits
    train_rows = subset(found["train"], 400)  # 20 steps: see step_tolerance
    tp = fitted(train_params, found, train_rows).model_copy(update={"epochs": 1})
    keys = [arms.ModelKey(arm, r) for r in (0, 1)
            for arm in (Arm(0.4, 0.1, 20), Arm(0.4, 0.1, 20, control=True))]
    t = trainer.make_trainer(implementation, keys, [50, 50], tp, schedule_of(tp, keys),
                             folds_of(found, train_rows), torch.device("cpu"))
    epochs_of(t, 1)
    for k, key in enumerate(keys):
        start, expected = sgd_of(key, (50, 50), tp.seed, train_rows, 20, epochs=1)
        assert_steps_agree(t.state_dict(k), expected, start, steps=len(train_rows) // 20)
    if implementation == "torch":  # same start: before training, every arm of a replicate
        fresh = trainer.make_trainer(implementation, keys, [50, 50], tp, schedule_of(tp, keys),
                                     folds_of(found, train_rows), torch.device("cpu"))
        assert_states_equal(fresh.state_dict(0), fresh.state_dict(1))


@pytest.mark.parametrize("implementation", ["native", "torch"])
def test_models_are_trained_in_passes_of_whole_replicates_whose_memory_is_bounded(implementation):
    """400 models of a 4-lr grid: several passes, each of whole replicates and within
    PASS_BYTES, together every model once in order; the default 45 models: one pass; two batch
    sizes: never in one pass."""
    p = params.parse(with_change("train.lr", [0.025, 0.05, 0.1, 0.2])
                     | {"momentum": [0.0, 0.1, 0.2, 0.4, 0.5]})
    p = p.model_copy(update={"train": p.train.model_copy(update={"replicates": 20,
                                                                 "lr_control": False})})
    keys = arms.models(p)
    planned = train.passes(keys, implementation, p, train.schedules_of(p))
    assert len(keys) == 400 and len(planned) > 1
    assert [k for each in planned for k in each.keys] == keys
    for each in planned:
        replicates = {k.replicate for k in each.keys}
        assert len(each.keys) == 20 * len(replicates)                     # whole replicates
        assert each.bytes(implementation, p.model.hidden, p.train) <= train.PASS_BYTES
    default = parsed()
    assert len(train.passes(arms.models(default), implementation, default,
                            train.schedules_of(default))) == 1
    two = params.parse(with_change("train.batch_size", [20, 200]))
    planned = train.passes(arms.models(two), implementation, two, train.schedules_of(two))
    assert [({k.arm.batch_size for k in each.keys}, each.schedule.batch_size)
            for each in planned] == [({20}, 20), ({200}, 200)]

"""The schedule of a batch size: the budget, the evaluations and the checkpoints, from train.*."""

import math

import pytest

from momentum_sweep import params
from momentum_sweep.vocabulary.schedule import Schedule

from good_params import with_change


def schedule(raw, batch) -> Schedule:
    return Schedule.of(params.parse(raw).train, batch)


def test_the_final_checkpoint_follows_the_budget_at_each_batch_size():
    raw = with_change("train.epochs", 3)
    assert schedule(raw, 20).checkpoints == (0, 1, 3)
    raw["train"]["checkpoints"] = ["final", 2]
    assert schedule(raw, 20).checkpoints == (2, 3)
    raw["train"]["min_steps"] = 1000
    assert schedule(raw, 1000).checkpoints == (2, 19)  # 55 steps an epoch


@pytest.mark.parametrize("batch", [20, 128, 1024, 8192])
def test_the_budget_holds_every_batch_size_and_the_schedule_resolves_steps_within_10_percent(
        batch):
    """train.epochs at small batch, train.min_steps steps at large; with a target, evaluations
    at most 10% of the steps apart once past the spacing that bounds their cost (two
    validation folds' worth of training images), and the budget's last step evaluated."""
    raw = with_change("train.target", 0.96)
    raw["train"].update({"epochs": 5, "min_steps": 2000})
    found = schedule(raw, batch)
    per_epoch = -(-55_000 // batch)
    assert found.steps_per_epoch == per_epoch
    assert found.epochs == max(5, -(-2000 // per_epoch))
    assert found.total_steps == found.epochs * per_epoch >= max(2000, 5 * per_epoch)
    steps = found.evaluations
    spacing = -(-2 * 5000 // batch)
    assert steps[0] == spacing and steps[-1] == found.total_steps
    for before, after in zip(steps, steps[1:]):
        assert after - before >= min(spacing, found.total_steps - before)
        assert after <= max(math.ceil(1.1 * before), before + spacing)
    raw["train"]["target"] = None
    assert tuple(schedule(raw, batch).evaluations) == tuple(
        range(per_epoch, found.total_steps + 1, per_epoch))
    assert found.segment_ends == sorted({*steps, *range(per_epoch, found.total_steps + 1,
                                                        per_epoch)})


def test_the_budget_a_fingerprint_holds():
    raw = with_change("train.target", 0.96)
    found = schedule(raw, 20)
    assert found.budget == {"epochs": 10, "steps": 27_500, "target": 0.96,
                            "evaluations": list(found.evaluations)}
    raw["train"]["target"] = None
    assert schedule(raw, 20).budget["evaluations"] is None

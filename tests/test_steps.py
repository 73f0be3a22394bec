"""The steps-to-target measure on planted curves: the planted steps, the tuned choice (and its
edge flag, and the leave-one-out choice), ratios against tuned plain SGD and the control, the
models that never reach the target counted, and the headline's answer."""

import numpy as np
import pandas as pd
import pytest

from momentum_sweep.analysis import epochs, steps, summarize
from momentum_sweep.training.arms import Arm

from reference import identity_columns

TARGET = 0.96
BUDGET = {20: 5000, 1000: 1500}
# {(batch, momentum, step lr/(1 - mu)): planted steps to the target (None: never)}
PLANTED = {(20, 0.0, 0.1): 3000, (20, 0.0, 0.2): 2000, (20, 0.0, 0.4): 2500,
           (20, 0.9, 0.1): 3000, (20, 0.9, 0.2): 2000, (20, 0.9, 0.4): 2500,
           (1000, 0.0, 0.1): 900, (1000, 0.0, 0.2): 800, (1000, 0.0, 0.4): None,
           (1000, 0.9, 0.1): 500, (1000, 0.9, 0.2): 300, (1000, 0.9, 0.4): 200}


def planted_table(replicates=5, seed=0):
    """An epochs table whose models first reach the target at the planted steps (times a
    replicate's factor, shared by its arms: paired, and a little noise of their own), evaluated
    at half, all and one and a half of it, up to the budget."""
    rng = np.random.default_rng(seed)
    factor = np.exp(0.1 * rng.standard_normal(replicates))
    rows = []
    for (batch, momentum, lr), planted in PLANTED.items():
        arm = Arm(momentum, lr, batch, effective=True)
        for r in range(replicates):
            budget = BUDGET[batch]
            first = None if planted is None else int(planted * factor[r]
                                                      * np.exp(0.02 * rng.standard_normal()))
            at = [budget // 3, budget] if first is None else [first // 2, first, first * 3 // 2]
            for i, step in enumerate(at):
                reached = first is not None and step >= first
                rows.append({**identity_columns(arm, r, budget, TARGET), "step": step,
                             "epoch": step / 100, "examples": step * batch, "train_loss": 0.1,
                             "train_accuracy": 0.97, "val_loss": 0.1,
                             "val_accuracy": 0.97 if reached else 0.9,
                             "test_loss": None, "test_accuracy": None, "diverged": 0,
                             "stopped": ("target" if reached else "budget")
                             if i == len(at) - 1 else None})
    return pd.DataFrame(rows, columns=epochs.COLUMNS)


def arm_entry(summary, arm):
    return next(a for a in summary["arms"] if a["arm"] == arm.name)


def row(summary, family, batch, momentum):
    return next(c for c in summary["comparisons"] if c["family"] == family
                and c["batch_size"] == batch and c["momentum"] == momentum)


def test_steps_to_target_are_the_first_evaluation_at_or_above_it():
    models = steps.per_model(planted_table())
    fast = models[models["arm"] == Arm(0.9, 0.4, 1000, effective=True).name]
    assert fast["reached"].all() and (fast["before"] == fast["steps"] // 2).all()
    assert (fast["examples"] == fast["steps"] * 1000).all()
    never = models[models["arm"] == Arm(0.0, 0.4, 1000, effective=True).name]
    assert not never["reached"].any() and (never["counted"] == 1500).all()


def test_the_tuned_lr_is_the_fewest_mean_steps_and_one_on_the_grids_edge_is_flagged():
    summary = summarize.summary(planted_table())
    tuned = {(a["batch_size"], a["momentum"]): (a["lr"], a.get("edge"))
             for a in summary["arms"] if a["best_lr_of_line"]}
    assert tuned == {(20, 0.0): (0.2, None), (20, 0.9): (0.2, None),
                     (1000, 0.0): (0.2, None), (1000, 0.9): (0.4, "largest")}
    never = arm_entry(summary, Arm(0.0, 0.4, 1000, effective=True))
    assert never["reached"] == 0 and never["not_reached"] == 5  # counted, not dropped


def test_leave_one_out_chooses_each_replicates_lr_on_the_others():
    models = steps.per_model(planted_table())
    arms_of_group = [Arm(0.0, lr, 20, effective=True) for lr in (0.1, 0.2, 0.4)]
    chosen = steps.leave_one_out(models, arms_of_group, list(range(5)))
    assert set(chosen.values()) == {Arm(0.0, 0.2, 20, effective=True)}
    # a replicate where lr 0.4 is by far the fastest still gets the others' choice
    lucky = (models["arm"] == Arm(0.0, 0.4, 20, effective=True).name) & (models["replicate"] == 2)
    models.loc[lucky, ["steps", "counted"]] = 10
    assert steps.choose(models, arms_of_group, [2]) == Arm(0.0, 0.4, 20, effective=True)
    assert steps.leave_one_out(models, arms_of_group, list(range(5)))[2] == \
        Arm(0.0, 0.2, 20, effective=True)


def test_ratios_against_tuned_sgd_and_the_control_give_the_planted_answer():
    summary = summarize.summary(planted_table())
    same = row(summary, "tuned_vs_zero", 20, 0.9)
    assert same["ratio"] == pytest.approx(1.0, abs=0.05) and same["outcome"] != "better"
    faster = row(summary, "tuned_vs_zero", 1000, 0.9)
    assert faster["ratio"] == pytest.approx(800 / 200, rel=0.1) and faster["outcome"] == "better"
    assert faster["verdict"].startswith("fewer steps than momentum 0.0 at step 0.2")
    # its control is plain SGD at its step, 0.4, which never reaches the target: counted at
    # its budget, the ratio a lower bound
    control = row(summary, "tuned_vs_control", 1000, 0.9)
    assert control["other_not_reached"] == 5
    assert control["ratio"] == pytest.approx(1500 / 200, rel=0.1)
    assert summarize.headline(summary) == {"target": TARGET, "faster_from": "0.9: 1000",
                                           "lrs_on_edge": 1, "b20": "no diff",
                                           "b1000": "fewer: 0.9"}


def test_one_lr_compares_each_line_with_momentum_0_and_its_control_at_it():
    table = planted_table()
    one = table[table["arm"].str.contains("_step_0.2_")]
    summary = summarize.summary(one)
    assert {c["family"] for c in summary["comparisons"]} == {"vs_zero", "vs_control"}
    assert row(summary, "vs_zero", 1000, 0.9)["ratio"] == pytest.approx(800 / 300, rel=0.1)
    assert summarize.headline(summary)["b1000"] == {"vs_zero": "fewer: 0.9",
                                                    "vs_ctrl": "fewer: 0.9"}

"""The steps-to-target measure on planted curves: the planted steps, the tuned choice (and its
edge flag, and the leave-one-out choice), ratios against tuned plain SGD and the control, the
models that never reach the target counted, and the headline's answer; and the measure at its
edges: the crossing between two evaluations, ties of the schedule, models that never reach the
target on either side of a ratio, and runs where nothing reaches it."""

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from momentum_sweep.analysis import steps, summarize
from momentum_sweep.vocabulary import schema
from momentum_sweep.vocabulary.arms import Arm

from clones import ROOT
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
    return pd.DataFrame(rows, columns=schema.COLUMNS)


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
    assert ((fast["low"] == fast["before"]) & (fast["high"] == fast["steps"])).all()
    # the crossing, interpolated in log steps between 0.9 at `before` and 0.97 at `steps`
    expected = [math.exp(np.interp(TARGET, [0.9, 0.97], np.log([b, s])))
                for b, s in zip(fast["before"], fast["steps"])]
    assert fast["estimate"].tolist() == pytest.approx(expected)
    never = models[models["arm"] == Arm(0.0, 0.4, 1000, effective=True).name]
    assert not never["reached"].any() and (never["estimate"] == 1500).all()
    assert (never["low"] == 1500).all() and (never["high"] == math.inf).all()


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
    models.loc[lucky, ["steps", "estimate"]] = 10
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
    # its budget, the ratio a lower bound, open above
    control = row(summary, "tuned_vs_control", 1000, 0.9)
    assert control["other_not_reached"] == 5 and control["bound"] == "at least"
    assert control["ratio"] == pytest.approx(1500 / 180, rel=0.1)
    assert control["ratio_ci"][1] is None and control["outcome"] == "better"
    assert control["verdict"].startswith("fewer steps than") and ">= x" in control["verdict"]
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


def model_rows(arm, replicate, evaluations, budget, target=TARGET) -> list:
    """A model's rows: ``evaluations`` [(step, validation accuracy)], stopping at the first at
    or above the target, else at the budget."""
    rows = []
    for i, (step, accuracy) in enumerate(evaluations):
        last = i == len(evaluations) - 1
        rows.append({**identity_columns(arm, replicate, budget, target), "step": step,
                     "epoch": step / 100, "examples": step * arm.batch_size,
                     "train_loss": 0.1, "train_accuracy": 0.9, "val_loss": 0.1,
                     "val_accuracy": accuracy, "test_loss": None, "test_accuracy": None,
                     "diverged": 0, "stopped": ("target" if accuracy >= target else "budget")
                     if last else None})
    return rows


ZERO, FAST = Arm(0.0, 0.1, 20), Arm(0.5, 0.1, 20)


def two_arms(zero, fast, budget=2000, no_control=True) -> pd.DataFrame:
    """A one-lr run of momentum 0 and 0.5 at batch 20: {replicate: evaluations} of each."""
    rows = []
    for arm, found in ((ZERO, zero), (FAST, fast)):
        for r, evaluations in found.items():
            rows += model_rows(arm, r, evaluations, budget)
    return pd.DataFrame(rows, columns=schema.COLUMNS)


def vs_zero(table) -> dict:
    summary = summarize.summary(table)
    return row(summary, "vs_zero", 20, 0.5), summarize.headline(summary)


@pytest.mark.parametrize("replicates", [2, 3])
def test_ties_of_the_schedule_give_no_test_and_an_interval_as_wide_as_it_resolves(replicates):
    # every replicate: momentum 0 first at or above the target at 800 (727 before), momentum
    # 0.5 at 600 (545 before), with the same accuracies: identical estimates
    zero = {r: [(727, 0.95), (800, 0.97)] for r in range(replicates)}
    fast = {r: [(545, 0.95), (600, 0.97)] for r in range(replicates)}
    found, headline = vs_zero(two_arms(zero, fast))
    assert found["tied"] and found["p"] is None and found["outcome"] == "cannot tell"
    # the interval: every ratio the brackets allow, 727/600 to 800/545
    assert found["ratio_ci"] == pytest.approx([727 / 600, 800 / 545])
    assert found["ratio"] == pytest.approx(800 / 600, rel=0.02)
    assert found["verdict"].startswith("cannot tell from momentum 0.0")
    assert headline["b20"]["vs_zero"] == "cannot tell: 0.5"


def test_an_interval_is_never_narrower_than_the_evaluations_resolve():
    # the same brackets, the crossings at slightly different places: a t-interval far
    # narrower than the brackets, widened to them
    zero = {r: [(727, 0.95), (800, 0.97 + 0.001 * r)] for r in range(3)}
    fast = {r: [(545, 0.95), (600, 0.97 + 0.001 * r)] for r in range(3)}
    found, _ = vs_zero(two_arms(zero, fast))
    low, high = found["ratio_ci"]
    assert low <= 727 / 600 + 1e-9 and high >= 800 / 545 - 1e-9
    assert not found.get("tied") and found["p"] > 0


def test_fewer_steps_stands_where_only_the_slower_arm_did_not_reach_the_target():
    zero = {0: [(900, 0.95), (2000, 0.955)], 1: [(900, 0.95), (2000, 0.955)],
            2: [(900, 0.95), (1000, 0.97)], 3: [(900, 0.95), (1100, 0.97)]}
    fast = {r: [(200 + 10 * r, 0.95), (220 + 11 * r, 0.97)] for r in range(4)}
    found, headline = vs_zero(two_arms(zero, fast))
    assert found["other_not_reached"] == 2 and found["not_reached"] == 0
    assert found["bound"] == "at least" and found["ratio_ci"][1] is None
    assert found["outcome"] == "better" and headline["b20"]["vs_zero"] == "fewer: 0.5"
    assert "(2 not reached)" in steps.missing_text(found)
    assert steps.ratio_text(found).startswith(">= x")


def test_a_verdict_the_censoring_could_have_produced_is_not_given():
    # momentum 0 needs about half momentum 0.5's steps in five replicates; in the sixth it ends
    # its budget of 1000 without reaching the target, where momentum 0.5 needs 990. Counted as
    # its budget, "more steps" for momentum 0.5 is significant, but momentum 0's sixth model is
    # only "above 1000": the ratio is open above, and no verdict is given
    zero = {r: [(250 + 5 * r, 0.95), (300 + 7 * r, 0.97)] for r in range(5)}
    zero[5] = [(900, 0.95), (1000, 0.955)]
    fast = {r: [(500 + 9 * r, 0.95), (600 + 11 * r, 0.97)] for r in range(5)}
    fast[5] = [(900, 0.95), (990, 0.97)]
    found, _ = vs_zero(two_arms(zero, fast, budget=1000))
    assert found["ratio"] < 1 and found["p"] < 0.05  # what counting it as its budget suggests
    assert found["bound"] == "at least" and found["outcome"] == "no detectable difference"
    # the reverse: momentum 0.5 never reaches it, momentum 0 does early: "more steps" stands,
    # as its models' steps are only larger than counted
    zero, fast = ({r: [(100 + 3 * r, 0.95), (110 + 4 * r, 0.97)] for r in range(4)},
                  {r: [(300, 0.9), (500, 0.95 - 0.001 * r)] for r in range(4)})
    found, headline = vs_zero(two_arms(zero, fast, budget=500))
    assert found["bound"] == "at most" and found["ratio_ci"][0] is None
    assert found["ratio_ci"][1] < 1
    assert found["outcome"] == "worse" and headline["b20"]["vs_zero"] == "more: 0.5"
    assert steps.ratio_text(found).startswith("<= x")


def test_nothing_reached_is_not_reached_not_no_difference():
    zero = {r: [(300, 0.9), (500, 0.91 + 0.001 * r)] for r in range(3)}
    fast = {r: [(300, 0.9), (500, 0.92 + 0.001 * r)] for r in range(3)}
    found, headline = vs_zero(two_arms(zero, fast, budget=500))
    assert found["outcome"] == "not reached" and found["none_reached"]
    assert found["verdict"].startswith("not reached")
    assert headline["b20"]["vs_zero"] == "not reached: 0.5"


def test_steps_of_an_arm_have_a_geometric_interval_that_stays_positive():
    zero = {0: [(50, 0.9), (100, 0.97)], 1: [(1000, 0.9), (3000, 0.97)]}
    fast = {0: [(50, 0.9), (100, 0.97)], 1: [(50, 0.9), (100, 0.97)]}
    summary = summarize.summary(two_arms(zero, fast, budget=5000))
    entry = arm_entry(summary, ZERO)
    logs = np.log(steps.per_model(two_arms(zero, fast, budget=5000)).query(
        f"arm == '{ZERO.name}'")["estimate"])
    low, high = stats.t.interval(0.95, 1, loc=logs.mean(), scale=stats.sem(logs))
    assert entry["steps"]["ci"] == pytest.approx([math.exp(low), math.exp(high)])
    assert entry["steps"]["mean"] == pytest.approx(stats.gmean(np.exp(logs)))
    assert entry["steps"]["ci"][0] > 0


def test_a_tuned_lr_on_the_grids_edge_is_flagged_for_final_accuracy_too():
    from test_statistics import planted_grid

    summary = summarize.summary(planted_grid())
    edges = {(a["momentum"], a["lr"]): a["edge"] for a in summary["arms"] if a["best_lr_of_line"]}
    assert edges == {(0.0, 0.05): "smallest", (0.5, 0.1): None}
    assert summarize.headline(summary)["tuned"] == "0: 0.05 (smallest listed), 0.5: 0.1"


def test_a_tuned_step_is_chosen_on_the_replicates_every_lr_has():
    # lr 0.4 of momentum 0 at batch 20 has two extra replicates, far faster there: not chosen
    table = planted_table(replicates=5)
    slow = Arm(0.0, 0.4, 20, effective=True)
    others = (table["batch_size"] == 20) & (table["momentum"] == 0) & \
        (table["arm"] != slow.name) & (table["replicate"] >= 3)
    table = table[~others].copy()
    lucky = (table["arm"] == slow.name) & (table["replicate"] >= 3)
    table.loc[lucky, "step"] //= 10
    summary = summarize.summary(table)
    tuned = {(a["batch_size"], a["momentum"]): a["lr"] for a in summary["arms"]
             if a["best_lr_of_line"]}
    assert tuned[(20, 0.0)] == 0.2
    assert any(n.startswith("the lr of momentum 0.0 at batch 20: chosen on replicate(s) 0, 1, 2")
               for n in summary["notes"])


def test_the_results_tables_print_a_one_lr_runs_ratios_with_their_bounds(tmp_path):
    """scripts/results-tables on a one-lr run with a target: each line's ratios against
    momentum 0 and its control, a bound where a model did not reach the target; and a file of
    the other kind is one line."""
    zero = {r: [(900, 0.95), (2000, 0.955)] if r < 2 else [(900, 0.95), (1000 + r, 0.97)]
            for r in range(4)}
    fast = {r: [(200 + 10 * r, 0.95), (220 + 11 * r, 0.97)] for r in range(4)}
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summarize.summary(two_arms(zero, fast)), allow_nan=False))
    script = [sys.executable, str(ROOT / "scripts" / "results-tables")]
    printed = subprocess.run([*script, "summary", path], capture_output=True, text=True,
                             check=True).stdout
    row_of = next(line for line in printed.splitlines() if line.startswith("| 20 | momentum 0.5"))
    assert ">= x" in row_of.split(" | ")[5] and "(2 not reached)" in row_of
    assert "momentum 0's steps / these" in printed
    wrong = subprocess.run([*script, "surface", path], capture_output=True, text=True)
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr
    assert wrong.stderr.strip().startswith(f"error: {path}: not a summary of the surface kind")


def test_a_lower_target_is_read_from_the_same_models_and_a_higher_one_refused():
    from momentum_sweep.analysis import compare
    from momentum_sweep.errors import SweepError

    table = planted_table()
    lower = steps.per_model(compare.at_lower_target(table, 0.93))
    # the planted curves are 0.9 then 0.97: 0.93 is first reached where 0.96 is
    assert lower["reached"].tolist() == steps.per_model(table)["reached"].tolist()
    assert (lower["estimate"] < steps.per_model(table)["estimate"] + 1e-9).all()
    with pytest.raises(SweepError, match="only a lower target"):
        compare.at_lower_target(table, 0.97)

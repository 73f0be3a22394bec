"""The statistics agree with scipy and statsmodels; the verdicts follow their rule."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from momentum_sweep.analysis import metrics, statistics, summarize
from momentum_sweep.training.arms import Arm

from reference import identity_columns

A = [0.9712, 0.9731, 0.9705, 0.9722, 0.9718]
B = [0.9701, 0.9712, 0.9698, 0.9719, 0.9703]


def test_describe_is_the_t_interval_of_the_mean():
    d = statistics.describe(A)
    low, high = stats.t.interval(0.95, len(A) - 1, loc=np.mean(A), scale=stats.sem(A))
    assert d["n"] == 5 and d["mean"] == pytest.approx(np.mean(A))
    assert d["sd"] == pytest.approx(np.std(A, ddof=1))
    assert d["ci"] == pytest.approx([low, high])
    assert statistics.describe([0.97])["ci"] is None
    assert statistics.describe([0.97, None, float("nan")])["n"] == 1


def test_paired_is_scipys_paired_t_test():
    c = statistics.paired(A, B)
    test = stats.ttest_rel(A, B)
    assert c["p"] == pytest.approx(test.pvalue)
    assert c["ci"] == pytest.approx(list(test.confidence_interval(0.95)))
    assert c["mean_difference"] == pytest.approx(np.mean(np.subtract(A, B)))


def test_holm_is_statsmodels_holm():
    p = [0.01, 0.04, 0.03, 0.5]
    assert statistics.holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]))
    assert statistics.holm([None, 0.02]) == [None, 0.02]


def test_the_detectable_difference_is_the_power_analysis_times_the_spread():
    from statsmodels.stats.power import TTestPower

    effect = TTestPower().solve_power(nobs=5, alpha=0.05 / 4, power=0.8)
    assert statistics.detectable(5, 0.002, 4) == pytest.approx(effect * 0.002)


def synthetic_table(effects, replicates=5, noise=0.002, seed=0):
    """An epochs table of arms ({Arm, or (momentum, control) at lr 0.1: its effect on the final
    accuracies})."""
    rng = np.random.default_rng(seed)
    base = 0.97 + noise * rng.standard_normal(replicates)  # shared by all arms: paired
    rows = []
    for arm, effect in effects.items():
        arm = arm if isinstance(arm, Arm) else Arm(arm[0], 0.1, arm[1])
        jitter = 0.0002 * rng.standard_normal(replicates)
        for r in range(replicates):
            accuracy = base[r] + effect + jitter[r]
            rows.append({**identity_columns(arm, r),
                         "epoch": 1, "train_loss": 0.1, "train_accuracy": 0.98,
                         "val_loss": 0.1, "val_accuracy": accuracy, "test_loss": 0.1,
                         "test_accuracy": accuracy, "diverged": 0})
    return pd.DataFrame(rows, columns=metrics.COLUMNS)


def comparison(summary, family, arm):
    return next(c for c in summary["comparisons"] if c["family"] == family and c["arm"] == arm)


def test_a_planted_effect_is_called_different_and_identical_arms_are_not():
    table = synthetic_table({(0.0, False): 0.0, (0.4, False): -0.005, (0.1, False): 0.0,
                             (0.4, True): -0.005, (0.1, True): 0.0})
    for arm, same_as in [("momentum_0.1_lr_0.1", "momentum_0.0_lr_0.1"),
                         ("control_0.4_lr_0.1", "momentum_0.4_lr_0.1")]:
        table.loc[table["arm"] == arm, "test_accuracy"] = \
            table.loc[table["arm"] == same_as, "test_accuracy"].to_numpy()
    summary = summarize.summary(table)
    worse = comparison(summary, "vs_zero", "momentum_0.4_lr_0.1")
    assert worse["verdict"].startswith("worse than momentum 0.0 at lr 0.1: -0.5")
    assert worse["p_holm"] < 0.05
    same = comparison(summary, "vs_zero", "momentum_0.1_lr_0.1")
    assert same["mean_difference"] == 0 and same["verdict"].startswith("no detectable difference")
    assert comparison(summary, "vs_control", "momentum_0.4_lr_0.1")["verdict"].startswith(
        "no detectable difference")
    assert summary["vs_zero"] == {"0p1": "no difference", "0p4": "worse"}
    assert summary["vs_control"] == {"0p1": "no difference", "0p4": "no difference"}
    assert summary["best"]["momentum"] == 0.0  # ties with 0.1: the smaller momentum


def test_the_best_is_chosen_on_validation_never_on_test():
    table = synthetic_table({(0.0, False): 0.0, (0.2, False): 0.001})
    table.loc[table["momentum"] == 0.2, "test_accuracy"] -= 0.01  # worse on test only
    assert summarize.summary(table)["best"]["momentum"] == 0.2


def test_one_replicate_says_plainly_that_no_interval_can_be_given():
    summary = summarize.summary(synthetic_table({(0.0, False): 0.0, (0.4, False): -0.01},
                                                replicates=1))
    assert "no confidence interval" in summary["warning"]
    verdict = comparison(summary, "vs_zero", "momentum_0.4_lr_0.1")["verdict"]
    assert verdict.startswith("cannot tell")
    # the warning and the verdict give the same advice
    assert "set train.replicates to 2 or more" in summary["warning"] and \
        "set train.replicates to 2 or more" in verdict
    assert all(a["val_accuracy"]["ci"] is None for a in summary["arms"])


def test_holm_runs_within_each_kind_of_comparison():
    summary = summarize.summary(synthetic_table(
        {(0.0, False): 0, (0.1, False): -0.001, (0.2, False): -0.002, (0.4, False): -0.004}))
    rows = [c for c in summary["comparisons"] if c["family"] == "vs_zero"]
    assert [c["p_holm"] for c in rows] == pytest.approx(
        list(multipletests([c["p"] for c in rows], method="holm")[1]))


def test_summary_keys_hold_no_dots_and_lists_hold_the_detail():
    summary = summarize.summary(synthetic_table({(0.0, False): 0, (0.25, False): 0.001}))
    assert list(summary["vs_zero"]) == ["0p25"]
    assert list(summary)[:3] == ["best", "vs_zero", "vs_control"]
    assert all(isinstance(v, (int, float, str)) for v in summary["best"].values())
    assert isinstance(summary["arms"], list) and isinstance(summary["comparisons"], list)


def planted_grid(replicates=6):
    """Momentum 0 is best at lr 0.05, momentum 0.5 at lr 0.1 (on validation), and momentum 0.5 at
    its best is 0.4 pp better on test than momentum 0 at its best; lr 0.2 wins one replicate of
    momentum 0 by chance."""
    effects = {Arm(0.0, 0.05): 0.0, Arm(0.0, 0.1): -0.003, Arm(0.0, 0.2): -0.006,
               Arm(0.5, 0.05): -0.002, Arm(0.5, 0.1): 0.004, Arm(0.5, 0.2): -0.004}
    table = synthetic_table(effects, replicates=replicates)
    lucky = (table["arm"] == Arm(0.0, 0.2).name) & (table["replicate"] == 2)
    table.loc[lucky, "val_accuracy"] += 0.02
    return table


def test_a_planted_grid_gives_the_planted_tuned_choice_and_verdict():
    summary = summarize.summary(planted_grid())
    assert list(summary)[:2] == ["tuned", "best"]
    assert summary["tuned"]["best_lr"] == {"0p0": 0.05, "0p5": 0.1}
    assert summary["tuned"]["verdict"] == {"0p5": "better"}
    tuned = comparison(summary, "tuned_vs_zero", "momentum_0.5_lr_0.1")
    assert tuned["against"] == "momentum_0.0_lr_0.05"
    assert tuned["mean_difference"] == pytest.approx(0.004, abs=0.001)
    assert tuned["verdict"].startswith("better than momentum 0.0 at lr 0.05 (its best lr)")
    assert (summary["best"]["momentum"], summary["best"]["lr"]) == (0.5, 0.1)
    # the winner's curse, shown: one replicate alone would have picked lr 0.2 for momentum 0
    wins = {(w["momentum"], w["lr"]): w["wins"] for w in summary["lr_wins"]}
    assert wins == {(0.0, 0.05): 5, (0.0, 0.2): 1, (0.5, 0.1): 6}
    assert "vs_zero" not in summary  # per-lr verdicts stay in the lists with a grid


def test_the_tuned_lr_is_chosen_on_validation_never_on_test():
    table = planted_grid()
    at_01 = table["arm"] == Arm(0.5, 0.1).name
    table.loc[at_01, "test_accuracy"] -= 0.05  # worse on test only: still chosen
    assert summarize.summary(table)["tuned"]["best_lr"]["0p5"] == 0.1

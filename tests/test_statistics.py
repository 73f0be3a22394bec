"""The statistics agree with scipy and statsmodels; the verdicts follow their rule."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from momentum_sweep.analysis import statistics, summarize
from momentum_sweep.vocabulary import schema
from momentum_sweep.vocabulary.arms import Arm

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


def test_ties_give_no_p_value_and_identical_models_p_1():
    tied = statistics.paired([0.8, 0.9], [0.6, 0.7])
    assert tied["tied"] and tied["p"] is None and tied["ci"] is None
    same = statistics.paired([0.8, 0.9], [0.8, 0.9])
    assert not same["tied"] and same["p"] == 1.0 and same["ci"] == [0.0, 0.0]


def test_an_interval_within_brackets_holds_the_t_interval_and_every_mean_they_allow():
    a, b = [10.0, 12.0, 11.0], [7.0, 8.0, 9.0]
    found = statistics.within_brackets(statistics.paired(a, b), [1.0, 2.0, 0.0],
                                       [5.0, 6.0, 4.0])
    test = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert found["ci"] == pytest.approx([min(test.low, 1.0), max(test.high, 5.0)])
    assert found["bound"] is None
    open_above = statistics.within_brackets(statistics.paired(a, b), [1.0, 2.0, 0.0],
                                            [5.0, np.inf, 4.0])
    assert open_above["ci"][1] is None and open_above["bound"] == "at least"
    ratio = statistics.within_brackets(statistics.paired_ratio(a, b), [-np.inf, 0.1, 0.1],
                                       [0.5, 0.5, 0.5])
    assert ratio["bound"] == "at most" and ratio["ratio_ci"][0] is None
    assert ratio["ratio_ci"][1] == pytest.approx(max(np.exp(0.5), ratio["ratio_ci"][1]))


def test_holm_is_statsmodels_holm():
    p = [0.01, 0.04, 0.03, 0.5]
    assert statistics.holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]))
    assert statistics.holm([None, 0.02]) == [None, 0.02]


def test_a_paired_ratio_is_scipys_paired_t_test_of_logs():
    a, b = [120, 150, 90, 200, 130], [60, 80, 40, 90, 70]
    c = statistics.paired_ratio(a, b)
    test = stats.ttest_rel(np.log(a), np.log(b))
    assert c["p"] == pytest.approx(test.pvalue)
    assert c["ratio"] == pytest.approx(stats.gmean(a) / stats.gmean(b))
    assert c["ratio_ci"] == pytest.approx(list(np.exp(test.confidence_interval(0.95))))


def test_a_cell_groups_a_familys_words_and_leaves_the_common_one_out():
    assert statistics.cell([("0.1", "no diff"), ("0.4", "worse"), ("0.5", "worse")]) == \
        "worse: 0.4 0.5"
    assert statistics.cell([("0.1", "no diff")]) == "no diff" and statistics.cell([]) == "-"
    assert statistics.cell([("0.1", "same"), ("0.5", "cannot tell")], null="cannot tell") == \
        "same: 0.1"


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
        arm = arm if isinstance(arm, Arm) else Arm(arm[0], 0.1, 20, control=arm[1])
        jitter = 0.0002 * rng.standard_normal(replicates)
        for r in range(replicates):
            accuracy = base[r] + effect + jitter[r]
            rows.append({**identity_columns(arm, r), "step": 1000, "epoch": 1,
                         "examples": 20_000, "train_loss": 0.1, "train_accuracy": 0.98,
                         "val_loss": 0.1, "val_accuracy": accuracy, "test_loss": 0.1,
                         "test_accuracy": accuracy, "diverged": 0, "stopped": "budget"})
    return pd.DataFrame(rows, columns=schema.COLUMNS)


def comparison(summary, family, arm):
    return next(c for c in summary["comparisons"] if c["family"] == family and c["arm"] == arm)


def test_a_planted_effect_is_called_different_and_identical_arms_are_not():
    table = synthetic_table({(0.0, False): 0.0, (0.4, False): -0.005, (0.1, False): 0.0,
                             (0.4, True): -0.005, (0.1, True): 0.0})
    for arm, same_as in [("momentum_0.1_lr_0.1_batch_20", "momentum_0.0_lr_0.1_batch_20"),
                         ("control_0.4_lr_0.1_batch_20", "momentum_0.4_lr_0.1_batch_20")]:
        table.loc[table["arm"] == arm, "test_accuracy"] = \
            table.loc[table["arm"] == same_as, "test_accuracy"].to_numpy()
    summary = summarize.summary(table)
    worse = comparison(summary, "vs_zero", "momentum_0.4_lr_0.1_batch_20")
    assert worse["verdict"].startswith("worse than momentum 0.0 at lr 0.1, batch 20: -0.5")
    assert worse["p_holm"] < 0.05
    same = comparison(summary, "vs_zero", "momentum_0.1_lr_0.1_batch_20")
    assert same["mean_difference"] == 0 and same["verdict"].startswith("no detectable difference")
    assert comparison(summary, "vs_control", "momentum_0.4_lr_0.1_batch_20")["verdict"].startswith(
        "no detectable difference")
    headline = summarize.headline(summary)
    assert headline == {"best": {"momentum": 0.0}, "vs_zero": "worse: 0.4", "vs_ctrl": "no diff"}
    assert summary["best"]["momentum"] == 0.0  # ties with 0.1: the smaller momentum


def test_the_best_is_chosen_on_validation_never_on_test():
    table = synthetic_table({(0.0, False): 0.0, (0.2, False): 0.001})
    table.loc[table["momentum"] == 0.2, "test_accuracy"] -= 0.01  # worse on test only
    assert summarize.summary(table)["best"]["momentum"] == 0.2


def test_one_replicate_says_plainly_that_no_interval_can_be_given():
    summary = summarize.summary(synthetic_table({(0.0, False): 0.0, (0.4, False): -0.01},
                                                replicates=1))
    assert "no confidence interval" in summary["warning"]
    verdict = comparison(summary, "vs_zero", "momentum_0.4_lr_0.1_batch_20")["verdict"]
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


def test_the_headline_holds_a_few_numbers_and_words_the_summary_the_detail():
    """Momentum 0.25 a planted 0.5 pp better than momentum 0, its control 0.5 pp worse than
    it: the headline says so in a word each; the summary holds the figures behind them."""
    table = synthetic_table({(0.0, False): 0, (0.25, False): 0.005, (0.25, True): 0.0})
    summary = summarize.summary(table)
    assert summarize.headline(summary) == {"best": {"momentum": 0.25}, "vs_zero": "better: 0.25",
                                           "vs_ctrl": "better: 0.25"}
    zero = comparison(summary, "vs_zero", "momentum_0.25_lr_0.1_batch_20")
    finals = table.set_index(["arm", "replicate"])["test_accuracy"]
    expected = (finals["momentum_0.25_lr_0.1_batch_20"] - finals["momentum_0.0_lr_0.1_batch_20"])
    assert zero["mean_difference"] == pytest.approx(expected.mean())
    assert zero["ci"] == pytest.approx(list(stats.ttest_rel(
        finals["momentum_0.25_lr_0.1_batch_20"], finals["momentum_0.0_lr_0.1_batch_20"])
        .confidence_interval(0.95)))
    entry = next(a for a in summary["arms"] if a["arm"] == "momentum_0.25_lr_0.1_batch_20")
    assert entry["test_accuracy"]["mean"] == pytest.approx(
        finals["momentum_0.25_lr_0.1_batch_20"].mean())
    assert summary["measure"]["name"] == "final test accuracy"
    assert statistics.VERDICT_RULE in summary["rules"]


def planted_grid(replicates=6):
    """Momentum 0 is best at lr 0.05, momentum 0.5 at lr 0.1 (on validation), and momentum 0.5 at
    its best is 0.4 pp better on test than momentum 0 at its best; lr 0.2 wins one replicate of
    momentum 0 by chance."""
    effects = {Arm(0.0, 0.05, 20): 0.0, Arm(0.0, 0.1, 20): -0.003, Arm(0.0, 0.2, 20): -0.006,
               Arm(0.5, 0.05, 20): -0.002, Arm(0.5, 0.1, 20): 0.004, Arm(0.5, 0.2, 20): -0.004}
    table = synthetic_table(effects, replicates=replicates)
    lucky = (table["arm"] == Arm(0.0, 0.2, 20).name) & (table["replicate"] == 2)
    table.loc[lucky, "val_accuracy"] += 0.02
    return table


def test_a_planted_grid_gives_the_planted_tuned_choice_and_verdict():
    summary = summarize.summary(planted_grid())
    headline = summarize.headline(summary)
    assert headline == {"best": {"momentum": 0.5, "lr": 0.1},
                        "tuned": "0: 0.05 (smallest listed), 0.5: 0.1",
                        "vs_tuned_zero": "better: 0.5"}
    tuned = comparison(summary, "tuned_vs_zero", "momentum_0.5_lr_0.1_batch_20")
    assert tuned["against"] == "momentum_0.0_lr_0.05_batch_20"
    assert tuned["mean_difference"] == pytest.approx(0.004, abs=0.001)
    assert tuned["verdict"].startswith("better than momentum 0.0 at lr 0.05, batch 20 (its best")
    assert (summary["best"]["momentum"], summary["best"]["lr"]) == (0.5, 0.1)
    # the winner's curse, shown: one replicate alone would have picked lr 0.2 for momentum 0
    wins = {(w["momentum"], w["lr"]): w["wins"] for w in summary["lr_wins"]}
    assert wins == {(0.0, 0.05): 5, (0.0, 0.2): 1, (0.5, 0.1): 6}


def test_the_tuned_lr_is_chosen_on_validation_never_on_test():
    table = planted_grid()
    at_01 = table["arm"] == Arm(0.5, 0.1, 20).name
    table.loc[at_01, "test_accuracy"] -= 0.05  # worse on test only: still chosen
    chosen = [a["arm"] for a in summarize.summary(table)["arms"] if a["best_lr_of_line"]]
    assert Arm(0.5, 0.1, 20).name in chosen


def test_a_tuned_lr_is_chosen_on_the_replicates_every_lr_has():
    """An lr grid on replicates 0-1 joined with more replicates of one lr (as
    momentum-sweep-compare joins experiments): lr 0.2 is better on the replicates both lrs
    have; lr 0.1's extra replicates, better still, take no part in the choice, and a note
    says so."""
    effects = {Arm(0.0, 0.1, 20): 0.0, Arm(0.0, 0.2, 20): 0.002, Arm(0.5, 0.1, 20): 0.0,
               Arm(0.5, 0.2, 20): 0.002}
    table = synthetic_table(effects, replicates=4)
    extra = (table["replicate"] >= 2) & (table["arm"] != Arm(0.0, 0.1, 20).name)
    table = table[~extra]
    table.loc[table["replicate"] >= 2, "val_accuracy"] += 0.02
    summary = summarize.summary(table)
    tuned = {a["momentum"]: a["lr"] for a in summary["arms"] if a["best_lr_of_line"]}
    assert tuned == {0.0: 0.2, 0.5: 0.2}
    assert any(note.startswith("the lr of momentum 0.0 at batch 20: chosen on replicate(s) "
                               "0, 1") for note in summary["notes"])

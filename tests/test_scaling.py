"""The fit of steps against batch size: planted S(B) curves give back their S_min and B_crit;
the intervals are scipy's bootstrap over replicates."""

import numpy as np
import pytest
from scipy import optimize, stats

from momentum_sweep.analysis import scaling

BATCHES = [20, 64, 128, 512, 2048, 8192]
RESAMPLES = 300  # fewer than the pipeline's: the same code, a tenth of the time


def planted(s_min, b_crit, replicates=5, noise=0.05, seed=0):
    """{batch: {replicate: a per_model row}} of steps S(B) times a replicate's factor."""
    rng = np.random.default_rng(seed)
    factor = np.exp(noise * rng.standard_normal((len(BATCHES), replicates)))
    return {b: {r: {"estimate": s_min * (1 + b_crit / b) * factor[i, r], "reached": True}
                for r in range(replicates)} for i, b in enumerate(BATCHES)}


def test_an_exact_curve_gives_back_its_minimum_steps_and_critical_batch():
    steps = [300 * (1 + 400 / b) for b in BATCHES]
    s_min, b_crit = scaling.fit(BATCHES, steps)
    assert s_min == pytest.approx(300, rel=1e-6) and b_crit == pytest.approx(400, rel=1e-6)


def test_the_fit_is_least_squares_on_log_steps():
    rng = np.random.default_rng(1)
    steps = np.array([300 * (1 + 400 / b) for b in BATCHES]) * np.exp(
        0.1 * rng.standard_normal(len(BATCHES)))
    s_min, b_crit = scaling.fit(BATCHES, steps)

    def residuals(p):
        return np.log(p[0] * (1 + p[1] / np.array(BATCHES))) - np.log(steps)

    reference = optimize.least_squares(residuals, [200, 100], bounds=([1, 1], [1e6, 1e6]))
    assert [s_min, b_crit] == pytest.approx(reference.x, rel=1e-4)


def test_momentum_that_lowers_s_min_at_the_same_e_min_is_told_by_the_fit():
    """Plain SGD: S_min 600, B_crit 200 (E_min 120,000); momentum: S_min 240 and E_min alike,
    so B_crit 500."""
    rows = scaling.fit_lines({(0.0, False): planted(600, 200),
                              (0.9, False): planted(240, 500, seed=1)}, RESAMPLES)
    sgd, momentum = rows
    assert sgd["s_min"]["value"] == pytest.approx(600, rel=0.1)
    assert momentum["b_crit"]["value"] == pytest.approx(500, rel=0.2)
    low, high = momentum["sgd_over_line"]["s_min"]["ci"]
    assert low > 1.5 and high < 3.5 and "sgd_over_line" not in sgd
    low, high = momentum["sgd_over_line"]["e_min"]["ci"]
    assert low < 1 < high  # the same examples
    assert sgd["batch_sizes"] == BATCHES and sgd["left_out"] == []


def test_the_intervals_are_scipys_paired_bootstrap_over_replicates():
    models = planted(600, 200)
    [row] = scaling.fit_lines({(0.0, False): models}, RESAMPLES)
    data = [np.array([models[b][r]["estimate"] for r in range(5)]) for b in BATCHES]
    reference = stats.bootstrap(
        data, lambda *s: scaling.figures_of(BATCHES, [stats.gmean(x) for x in s]),
        paired=True, vectorized=False, n_resamples=RESAMPLES, method="percentile",
        random_state=0)
    assert row["s_min"]["ci"] == pytest.approx([reference.confidence_interval.low[0],
                                                reference.confidence_interval.high[0]])


def test_a_batch_size_where_a_tuned_model_did_not_reach_the_target_is_left_out():
    models = planted(600, 200)
    models[8192][3] = {"estimate": 1000, "reached": False}
    [row] = scaling.fit_lines({(0.0, False): models}, RESAMPLES)
    assert row["left_out"] == [8192] and 8192 not in row["batch_sizes"]


def test_a_steps_summary_over_batch_sizes_holds_the_fit_and_its_figure_draws_it():
    """Planted runs at four batch sizes, two steps each, every model reaching the target at
    S(B) of its line: the summary's fit gives the planted S_min and B_crit back, and
    batch_size.png draws each fit."""
    import pandas as pd

    from momentum_sweep.analysis import plots, summarize
    from momentum_sweep.vocabulary import schema
    from momentum_sweep.vocabulary.arms import Arm

    planted_lines = {0.0: (600, 200), 0.9: (240, 500)}
    rows = []
    for b in (20, 128, 512, 2048):
        for m, (s_min, b_crit) in planted_lines.items():
            for step in (0.4, 1.6):
                arm = Arm(m, step, b, effective=True)
                for r in range(4):
                    first = round(s_min * (1 + b_crit / b) * (1 + 0.02 * r)
                                  * (1 if step == 0.4 else 1.3))
                    for at, accuracy in ((first - 1, 0.95), (first, 0.97)):
                        rows.append({**schema.identity(arm, r, r, {"steps": 20000,
                                                                   "target": 0.96}),
                                     "step": at, "epoch": at / 100, "examples": at * b,
                                     "train_loss": 0.1, "train_accuracy": 0.9, "val_loss": 0.1,
                                     "val_accuracy": accuracy, "diverged": 0,
                                     "stopped": "target" if accuracy > 0.96 else None})
    table = pd.DataFrame(rows, columns=schema.COLUMNS)
    summary = summarize.summary(table)
    fitted = {row["momentum"]: row for row in summary["scaling"]}
    assert fitted[0.0]["s_min"]["value"] == pytest.approx(600 * 1.03, rel=0.05)
    assert fitted[0.9]["b_crit"]["value"] == pytest.approx(500, rel=0.1)
    figure = plots.figures(table, summary)["batch_size"]
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert sum(label.startswith("fit: S_min") for label in labels) == 2
    plots.plt.close("all")

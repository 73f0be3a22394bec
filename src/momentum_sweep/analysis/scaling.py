"""Steps against batch size, fitted: McCandlish et al. 2018's S(B) = S_min (1 + B_crit / B).

S_min is the fewest steps any batch size can reach the target in (the curvature-limited floor),
E_min = S_min * B_crit the fewest training examples (the noise-limited floor, reached at small
batch), and B_crit the critical batch size where the two regimes meet: below it, doubling the
batch halves the steps; above it, the steps stop falling. Fitted per line (each update at its
tuned lr at every batch size) by least squares on log steps (scipy's curve_fit), to the
geometric mean over replicates of each batch size's tuned steps; a batch size where a tuned
model did not reach the target is left out of the fit (its steps are only a lower bound) and
named. Intervals: a percentile bootstrap over replicates (scipy's bootstrap, paired: a resample
keeps a replicate's steps at every batch size together), as are the ratios of each line's
S_min, E_min and B_crit to plain SGD's.
"""

import math

import numpy as np
from scipy import optimize, stats

from ..vocabulary.arms import line_key, line_name
from . import statistics

FIT_RULE = ("S(B) = S_min (1 + B_crit / B) fitted per line to the geometric mean over replicates "
            "of its tuned steps at each batch size (least squares on log steps); E_min = S_min "
            "B_crit; 95% intervals from a percentile bootstrap over replicates (paired across "
            "batch sizes and lines); a batch size where a tuned model did not reach the target "
            "is left out of its line's fit")
RESAMPLES = 2000
FIGURES = ("s_min", "b_crit", "e_min")
FEWEST_BATCH_SIZES = 3  # two parameters: at least one batch size more than that


def fit(batches, steps) -> tuple:
    """(S_min, B_crit) of S(B) = S_min (1 + B_crit / B) through (batches, steps), least squares
    on log steps; (nan, nan) where it cannot be fitted."""
    batches, steps = np.asarray(batches, float), np.asarray(steps, float)

    def log_model(b, log_s_min, log_b_crit):
        return log_s_min + np.log1p(np.exp(log_b_crit) / b)

    start = [math.log(steps.min()), math.log(np.median(batches))]
    try:
        (log_s_min, log_b_crit), _ = optimize.curve_fit(log_model, batches, np.log(steps),
                                                        p0=start, maxfev=5000)
    except (RuntimeError, ValueError):
        return math.nan, math.nan
    return math.exp(log_s_min), math.exp(log_b_crit)


def figures_of(batches, steps) -> np.ndarray:
    """[S_min, B_crit, E_min] of a fit."""
    s_min, b_crit = fit(batches, steps)
    return np.array([s_min, b_crit, s_min * b_crit])


def line_steps(models_by_replicate, batches) -> dict:
    """{batch: {replicate: its tuned model's steps}} of the batch sizes where every tuned model
    reached the target; ``models_by_replicate``: {batch: {replicate: its per_model row}}."""
    return {b: {r: m["estimate"] for r, m in models_by_replicate[b].items()}
            for b in batches if all(m["reached"] for m in models_by_replicate[b].values())}


def fit_lines(tuned_models, resamples=RESAMPLES, seed=0) -> list:
    """One row per line: its fitted S_min, B_crit and E_min with bootstrap intervals, and their
    ratios to plain SGD's. ``tuned_models``: {line: {batch: {replicate: its tuned model's
    per_model row}}}."""
    kept = {line: line_steps(by_batch, sorted(by_batch)) for line, by_batch in
            tuned_models.items()}
    lines = [line for line, steps in kept.items() if len(steps) >= FEWEST_BATCH_SIZES]
    held = [set(r) for line in lines for r in kept[line].values()]
    replicates = sorted(set.intersection(*held)) if held else []
    if len(replicates) < 2:
        return []
    # samples: one array per (line, batch) over the shared replicates, resampled together
    columns = [(line, b) for line in lines for b in sorted(kept[line])]
    data = [np.array([kept[line][b][r] for r in replicates]) for line, b in columns]

    sgd = (0.0, False)
    others = [line for line in lines if line != sgd] if sgd in lines else []

    def statistic(*samples):
        found = {}
        for line in lines:
            mine = [(b, s) for (li, b), s in zip(columns, samples) if li == line]
            found[line] = figures_of([b for b, _ in mine], [stats.gmean(s) for _, s in mine])
        return np.concatenate([*(found[line] for line in lines),       # [lines * 3]
                               *(found[sgd] / found[line] for line in others)])

    point = statistic(*data)
    boot = stats.bootstrap(data, statistic, paired=True, vectorized=False, n_resamples=resamples,
                           method="percentile", confidence_level=statistics.CONFIDENCE,
                           random_state=seed)
    low, high = boot.confidence_interval

    def described(k):
        finite = all(math.isfinite(v) for v in (point[k], low[k], high[k]))
        return {"value": float(point[k]) if math.isfinite(point[k]) else None,
                "ci": [float(low[k]), float(high[k])] if finite else None}

    rows = []
    for i, line in enumerate(lines):
        row = {"line": line_key(line), "name": line_name(line), "momentum": line[0],
               "nesterov": line[1], "batch_sizes": sorted(kept[line]),
               "left_out": sorted(set(tuned_models[line]) - set(kept[line])),
               "replicates": replicates,
               **{name: described(3 * i + j) for j, name in enumerate(FIGURES)}}
        if line in others:
            k = 3 * len(lines) + 3 * others.index(line)
            row["sgd_over_line"] = {name: described(k + j) for j, name in enumerate(FIGURES)}
        rows.append(row)
    return rows

"""The statistics of metrics/surface.json, as summary.json has them for accuracy: per arm n, mean
and 95% interval of every figure; paired comparisons of each momentum against momentum 0 and
against its lr control, Holm-adjusted per figure and kind; a verdict word with its rule.

Every model contributes one value per figure (``FIGURES``, ``figures_of``); a model without one
(it never escaped, or diverged) is counted, not dropped, and left out of means and pairs.
"""

from ..training.arms import Arm, pair_key, pairs, several_lrs
from ..analysis import statistics

# Figure -> (word for a higher value, word for a lower one).
WORDS = {"escape_steps": ("slower", "faster")}
DEFAULT_WORDS = ("higher", "lower")
CURVATURE = ["lambda_max", "lambda_min", "ratio", "grad_norm", "sharpness_over_threshold"]
COMPARED_AT_CHECKPOINTS = ["lambda_max", "lambda_min", "grad_norm", "sharpness_over_threshold"]

COMPARISON_RULE = (f"paired t-test over replicates (pairs where both models have the figure); "
                   f"a direction word (faster/slower, higher/lower) only where the Holm-adjusted "
                   f"p, over the momenta compared on one figure against one reference, is below "
                   f"{statistics.ALPHA:.2f}; otherwise 'no difference'. Arms share their initial "
                   f"weights, so epoch 0 is never compared")


def barrier_rule(tolerance) -> str:
    return (f"barrier = highest probe loss on the straight line between two final weights minus "
            f"the mean of the two ends; 'same basin' where its 95% interval lies below "
            f"{tolerance:g}, 'separate minima' where it lies above, otherwise 'cannot tell'")


def figures_of(model, epochs) -> dict:
    """One model's scalar figures: escape steps, the rise along the line from its initial
    weights, and each curvature figure at each checkpoint epoch (``lambda_max_epoch_1``)."""
    found = {"escape_steps": model["escape_steps"],
             "rise_from_initial": model["line_from_initial"]["largest_rise"]}
    at = {c["epoch"]: c for c in model["curvature"]}
    for epoch in epochs:
        for name in CURVATURE:
            found[f"{name}_epoch_{epoch}"] = at[epoch][name]
    return found


def compared_figures(epochs) -> list[str]:
    return ["escape_steps", "rise_from_initial"] + [
        f"{name}_epoch_{e}" for e in epochs if e > 0 for name in COMPARED_AT_CHECKPOINTS]


def word(comparison) -> str:
    """faster/slower, higher/lower, no difference, cannot tell (one pair) or no pairs."""
    result = statistics.short_outcome(comparison)
    higher, lower = WORDS.get(comparison["figure"], DEFAULT_WORDS)
    return {"better": higher, "worse": lower, "diverged": "no pairs"}.get(result, result)


def arm_entry(arm, values_by_replicate) -> dict:
    """n, mean, sd and 95% interval of each figure over the arm's replicates."""
    figures = sorted({f for values in values_by_replicate.values() for f in values})
    entry = {"arm": arm.name, "momentum": arm.momentum, "lr": arm.lr, "control": arm.control,
             "replicates": len(values_by_replicate)}
    escaped = [v["escape_steps"] for v in values_by_replicate.values()]
    entry["never_escaped"] = sum(s is None for s in escaped)
    for figure in figures:
        entry[figure] = statistics.describe([v[figure] for v in values_by_replicate.values()])
    return entry


KINDS = ("vs_zero", "vs_control")


def comparisons(values, arms, epochs) -> list:
    """``values``: {arm: {replicate: figures}}. One row per (figure, kind, momentum)."""
    rows = []
    for figure in compared_figures(epochs):
        for kind, compared in pairs(arms).items():
            family = []
            for arm, other in compared:
                shared = sorted(values[arm].keys() & values[other].keys())
                result = statistics.paired([values[arm][r][figure] for r in shared],
                                           [values[other][r][figure] for r in shared])
                family.append({"figure": figure, "family": kind, "arm": arm.name,
                               "momentum": arm.momentum, "lr": arm.lr, "against": other.name,
                               **result})
            for row, adjusted in zip(family, statistics.holm([r["p"] for r in family])):
                row["p_holm"] = adjusted
                row["verdict"] = word(row)
            rows.extend(family)
    return rows


def barrier_verdict(description, tolerance) -> str:
    if description["ci"] is None:
        return "cannot tell"
    low, high = description["ci"]
    if high < tolerance:
        return "same basin"
    if low > tolerance:
        return "separate minima"
    return "cannot tell"


def barriers(lines, tolerance) -> list:
    """Per (kind, arm): the barriers of its replicates' lines, described, with a verdict."""
    grouped = {}
    for line in lines:
        grouped.setdefault((line["kind"], line["lr"], line["momentum"]), []).append(
            line["barrier"])
    rows = []
    order = list(KINDS)
    for (kind, lr, momentum), found in sorted(grouped.items(),
                                              key=lambda g: (order.index(g[0][0]), *g[0][1:])):
        description = statistics.describe(found)
        rows.append({"kind": kind, "momentum": momentum, "lr": lr, "replicates": len(found),
                     "barrier": description,
                     "verdict": barrier_verdict(description, tolerance)})
    return rows


def headline(rows, barrier_rows, several) -> dict:
    """What `dvc metrics show` leads with, a word or two per listed pair (keyed by its momentum,
    and its lr when ``several`` are listed): whether it escapes faster than momentum 0 and than
    its control, and whether it ends in momentum 0's basin."""
    def key(row):
        return pair_key(Arm(row["momentum"], row["lr"]), several)

    found = {}
    for kind in KINDS:
        found[f"escape_{kind}"] = {key(r): r["verdict"] for r in rows
                                   if r["figure"] == "escape_steps" and r["family"] == kind}
    found["basin_vs_zero"] = {key(b): b["verdict"] for b in barrier_rows
                              if b["kind"] == "vs_zero"}
    return found


def summary(measured, lines, arms, epochs, tolerance) -> dict:
    """``measured``: [(model key, its measurements)]; ``lines``: the lines between final
    weights; ``epochs``: the checkpoint epochs."""
    values = {arm: {} for arm in arms}
    for key, model in measured:
        values[key.arm][key.replicate] = figures_of(model, epochs)
    arm_entries = [arm_entry(arm, values[arm]) for arm in arms]
    rows = comparisons(values, arms, epochs)
    barrier_rows = barriers(lines, tolerance)
    return {**headline(rows, barrier_rows, several_lrs(arms)),
            "rules": [COMPARISON_RULE, barrier_rule(tolerance),
                      f"intervals: {statistics.CONFIDENCE:.0%} t-intervals over replicates"],
            "arms": arm_entries, "comparisons": rows, "barriers": barrier_rows}

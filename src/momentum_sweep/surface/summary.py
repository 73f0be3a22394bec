"""The statistics of results/surface.json, through the one statistics module: per arm n, mean and
95% interval of every figure; paired comparisons of each listed arm against momentum 0 and
against its lr control, Holm-adjusted per figure and family (``statistics.family``); a word per
comparison with its rule; and metrics/surface.json's headline, a word per listed arm.

Every model contributes one value per figure (``figures_of``); a model without one (it never
escaped, diverged, or stopped before a checkpoint epoch) is counted, not dropped, and left out of
means and pairs.
"""

from ..analysis import statistics
from ..vocabulary.arms import FAMILIES, arm_columns, arm_of, cell_label, pairs

# Figure -> (word for a higher value, word for a lower one).
WORDS = {"escape_steps": ("slower", "faster")}
DEFAULT_WORDS = ("higher", "lower")
CURVATURE = ["lambda_max", "lambda_min", "ratio", "grad_norm", "sharpness_over_threshold",
             "noise_scale", "batch_sharpness", "batch_sharpness_over_threshold",
             "batch_sharpness_over_step_edge"]
COMPARED_AT_CHECKPOINTS = ["lambda_max", "lambda_min", "grad_norm", "sharpness_over_threshold",
                           "noise_scale", "batch_sharpness"]
BASIN_WORDS = {"same basin": "same", "separate minima": "separate", "cannot tell": "cannot tell",
               "no pairs": "no pairs"}

COMPARISON_RULE = (f"paired t-test over replicates (pairs where both models have the figure); "
                   f"a direction word (faster/slower, higher/lower) only where the Holm-adjusted "
                   f"p, over the arms compared on one figure against one reference, is below "
                   f"{statistics.ALPHA:.2f} and the interval lies on that side; otherwise 'no "
                   f"diff', or 'cannot tell' where every pair differs by the same amount (no "
                   f"spread to test). Escape steps are known to train.loss_every steps: their "
                   f"intervals are widened to every difference that resolution allows. Arms "
                   f"share their initial weights, so epoch 0 is never compared")


def barrier_rule(tolerance) -> str:
    return (f"barrier = highest probe loss on the straight line between two final weights minus "
            f"the mean of the two ends; 'same basin' where its 95% interval lies below "
            f"{tolerance:g}, 'separate minima' where it lies above, otherwise 'cannot tell' "
            f"('no pairs' where no pair of models has a barrier)")


def figures_of(model) -> dict:
    """One model's scalar figures: escape steps, the rise along the line from its initial
    weights, and each curvature figure at each checkpoint epoch (``lambda_max_epoch_1``)."""
    found = {"escape_steps": model["escape_steps"],
             "rise_from_initial": model["line_from_initial"]["largest_rise"]}
    for at in model["curvature"]:
        for name in CURVATURE:
            found[f"{name}_epoch_{at['epoch']}"] = at[name]
    for name in CURVATURE if model.get("at_target") else ():
        found[f"{name}_at_target"] = model["at_target"][name]
    return found


def compared(figure) -> bool:
    """Whether a figure is compared between arms: not at epoch 0, which a replicate's arms
    share, and not the eigenvalues' ratio (a derived figure)."""
    if not figure.startswith(tuple(CURVATURE)):
        return True
    if figure.endswith("_at_target"):
        return figure.removesuffix("_at_target") in COMPARED_AT_CHECKPOINTS
    name, epoch = figure.rsplit("_epoch_", 1)
    return name in COMPARED_AT_CHECKPOINTS and epoch != "0"


def word(comparison) -> str:
    higher, lower = WORDS.get(comparison["figure"], DEFAULT_WORDS)
    return statistics.word(comparison, higher, lower, "no pairs")


def arm_entry(arm, values_by_replicate, every_by_replicate) -> dict:
    """n, mean, sd and 95% interval of each figure over the arm's replicates; the escape steps'
    interval never narrower than their fine curves resolve (``every_by_replicate``: each
    replicate's steps per point)."""
    figures = sorted({f for values in values_by_replicate.values() for f in values})
    entry = {**arm_columns(arm, ("arm", "kind", "line", "momentum", "nesterov", "lr",
                                 "batch_size", "control")),
             "replicates": len(values_by_replicate)}
    escaped = [v["escape_steps"] for v in values_by_replicate.values()]
    entry["never_escaped"] = sum(s is None for s in escaped)
    for figure in figures:
        entry[figure] = statistics.describe([v.get(figure) for v in values_by_replicate.values()])
    # each escape v means somewhere in (v - every, v]
    known = [(v["escape_steps"], every_by_replicate[r]) for r, v in values_by_replicate.items()
             if v["escape_steps"] is not None]
    if known:
        entry["escape_steps"] = statistics.within_brackets(
            entry["escape_steps"], [v - every for v, every in known], [v for v, _ in known])
    return entry


def within_resolution(row, a, b, every_a, every_b) -> dict:
    """Escape steps are known only to their fine curve's resolution: a value v, the end of the
    first run of ``every`` steps whose mean loss is below the threshold, means somewhere in
    (v - every, v]. The comparison's interval is widened to what those brackets allow."""
    shared = [(x, y, ex, ey) for x, y, ex, ey in zip(a, b, every_a, every_b)
              if x is not None and y is not None]
    if not shared:
        return row
    return statistics.within_brackets(row, [x - ex - y for x, y, ex, _ in shared],
                                      [x - y + ey for x, y, _, ey in shared])


def comparisons(values, arms, loss_every) -> list:
    """``values``: {arm: {replicate: figures}}; ``loss_every``: {arm: {replicate: its fine
    curve's steps per point}}. One row per (figure, family, arm)."""
    every = sorted({f for found in values.values() for v in found.values() for f in v
                    if compared(f)}, key=lambda f: (f != "escape_steps", f))
    rows = []
    for figure in every:
        for family_name, arm_pairs in pairs(arms).items():
            family = []
            for arm, other in arm_pairs:
                shared = sorted(values[arm].keys() & values[other].keys())
                mine = [values[arm][r].get(figure) for r in shared]
                theirs = [values[other][r].get(figure) for r in shared]
                result = statistics.paired(mine, theirs)
                if figure == "escape_steps":
                    result = within_resolution(result, mine, theirs,
                                               [loss_every[arm][r] for r in shared],
                                               [loss_every[other][r] for r in shared])
                family.append({"figure": figure, "family": family_name,
                               **arm_columns(arm, ("arm", "line", "momentum", "lr",
                                                   "batch_size")),
                               "against": other.name, **result})
            for row in statistics.family(family):
                row["verdict"] = word(row)
            rows.extend(family)
    return rows


def barrier_verdict(description, tolerance) -> str:
    if description["n"] == 0:
        return "no pairs"  # as a comparison with no pair says it
    if description["ci"] is None:
        return "cannot tell"
    low, high = description["ci"]
    if high < tolerance:
        return "same basin"
    if low > tolerance:
        return "separate minima"
    return "cannot tell"


def barriers(lines, tolerance) -> list:
    """Per (family, arm): the barriers of its replicates' lines, described, with a verdict."""
    grouped = {}
    for line in lines:
        grouped.setdefault((line["family"], line["arm"]), []).append(line)
    rows = []
    for (family, arm), found in sorted(grouped.items(), key=lambda g: FAMILIES.index(g[0][0])):
        description = statistics.describe([line["barrier"] for line in found])
        first = found[0]
        rows.append({"family": family, "arm": arm, "line": first["line"],
                     "momentum": first["momentum"], "lr": first["lr"],
                     "batch_size": first["batch_size"], "replicates": len(found),
                     "barrier": description, "verdict": barrier_verdict(description, tolerance)})
    return rows


def headline(rows, barrier_rows) -> dict:
    """metrics/surface.json: which listed arms escape the plateau faster or slower than momentum
    0 at their lr (``escape``), and which end in momentum 0's basin or in separate minima
    (``basin``)."""
    lrs = {r["lr"] for r in rows} | {b["lr"] for b in barrier_rows}
    batches = {r["batch_size"] for r in rows} | {b["batch_size"] for b in barrier_rows}
    return {"escape": statistics.cell([(cell_label(arm_of(r), lrs, batches), r["verdict"])
                                       for r in rows
                                       if r["figure"] == "escape_steps"
                                       and r["family"] == "vs_zero"]),
            "basin": statistics.cell([(cell_label(arm_of(b), lrs, batches),
                                       BASIN_WORDS[b["verdict"]])
                                      for b in barrier_rows if b["family"] == "vs_zero"],
                                     null="cannot tell")}


def summary(measured, lines, arms, tolerance) -> dict:
    """``measured``: [(model key, its measurements)]; ``lines``: the lines between final
    weights."""
    values = {arm: {} for arm in arms}
    loss_every = {arm: {} for arm in arms}
    for model_key, model in measured:
        values[model_key.arm][model_key.replicate] = figures_of(model)
        loss_every[model_key.arm][model_key.replicate] = model["train_loss_every"]
    rows = comparisons(values, arms, loss_every)
    barrier_rows = barriers(lines, tolerance)
    return {"headline": headline(rows, barrier_rows),
            "rules": [COMPARISON_RULE, barrier_rule(tolerance),
                      f"intervals: {statistics.CONFIDENCE:.0%} t-intervals over replicates; an "
                      f"arm's escape steps', widened to every mean its curves' points allow"],
            "arms": [arm_entry(arm, values[arm], loss_every[arm]) for arm in arms],
            "comparisons": rows,
            "barriers": barrier_rows}

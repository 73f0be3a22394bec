"""The measure of a run with ``train.target``: the steps each model takes to reach the target
validation accuracy (Shallue et al. 2019's "steps to result"; AlgoPerf's time to target, counted
in steps), and the training images it saw by then.

- Steps are interval-censored. A model's validation accuracy is evaluated on a schedule (steps
  about 10% apart), so where it first reaches the target is known only between the evaluation
  that first found it at or above the target (``steps``) and the one before (``before``); the
  crossing is estimated between them, interpolating the accuracy linearly in log steps
  (``estimate``; at the first evaluation, with nothing before, the evaluated step). A model that
  ends its budget, or diverges, without reaching it is "not reached": counted, never dropped;
  its steps are known only to be above its budget (right-censored), and its estimate is the
  budget.
- An arm's steps: the geometric mean and 95% interval of its reached models' estimates.
- Tuned at every batch size: for each (batch size, line), the lr with the most replicates
  reaching the target, then the fewest steps (geometric mean of the estimates), ties to the
  smaller lr. Chosen on the validation folds, never on test. Each comparison takes, for
  replicate r, the lrs chosen on the other replicates (leave one replicate out), so no
  replicate's steps choose its own lr. A best lr at the edge of its grid is flagged: the grid
  should then be widened.
- Comparisons, paired by replicate, as ratios (a paired t-test of log estimates), the interval
  widened to every ratio the brackets allow (``statistics.within_brackets``): never narrower
  than the schedule resolves, and open on the side a model that did not reach the target leaves
  open, so that such a ratio is a bound (at least, or at most). At each batch size each line at
  its tuned lr against plain SGD at its tuned lr (``tuned_vs_zero``: tuned SGD's steps over the
  line's, above 1 where the line needs fewer) and against its control, plain SGD at its step
  lr/(1 - mu) (``tuned_vs_control``: still just a larger step?). With one lr, each line against
  momentum 0 and its control at that lr. Holm within each family.
"""

import math

import numpy as np
import pandas as pd

from ..errors import SweepError
from ..vocabulary.arms import Arm, control_of, line_label, line_name, pairs
from ..vocabulary.measure import reached
from . import accuracy, scaling, statistics

MEASURE = {"name": "steps to the target validation accuracy", "figure": "steps", "unit": "x",
           "higher": "fewer steps", "lower": "more steps"}
TUNING_RULE = ("tuned lr: at each batch size, for each line (momentum and update), the lr with "
               "the most replicates reaching the target, then the fewest steps (the geometric "
               "mean of the estimates; a model that does not reach it counts as its whole "
               "budget), ties to the smaller lr, over the replicates every lr has; chosen on "
               "validation; each replicate's comparison uses the lrs chosen on the other "
               "replicates (leave one out)")
STEPS_RULE = ("steps to the target: known between the evaluation that first finds the "
              "validation accuracy at or above the target and the one before; estimated "
              "between them by interpolating the accuracy linearly in log steps; an arm's steps "
              "are the geometric mean and 95% interval of its reached models' estimates. A "
              "model that never gets there (its budget ended, or it diverged) is not reached: "
              "counted, its steps known only to exceed its budget")
RATIO_RULE = ("ratio: the other arm's steps over this arm's (above 1: this arm needs fewer), "
              "the geometric mean over replicates of the estimates (a model not reached counts "
              "as its budget) with its 95% interval from a paired t-test of log estimates, "
              "widened to every ratio the evaluations allow: never narrower than the schedule "
              "resolves, and open where a model did not reach the target, so the ratio is a "
              "bound (>=: the other arm's models did not all reach it; <=: this arm's did not). "
              "Counting a model that did not reach the target as its budget can only move the "
              "ratio towards its own arm, so a verdict is given only where the open interval "
              "still lies on one side of 1: 'fewer steps' stands when only the other arm has "
              "models not reached, 'more steps' when only this arm has")


def crossing(before, at, target) -> float:
    """The step where the validation accuracy reaches ``target``, between the evaluation
    ``before`` (step, accuracy; None: there was none) and the first at or above it (``at``):
    linear in log steps, as the schedule is geometric."""
    if before is None:
        return float(at[0])
    fraction = (target - before[1]) / (at[1] - before[1])
    return float(math.exp(math.log(before[0]) + fraction * math.log(at[0] / before[0])))


def per_model(table) -> pd.DataFrame:
    """One row per model: its arm, replicate, whether and where it reached the target (steps,
    the evaluation before, the estimated crossing, examples), its bracket (``low`` to ``high``:
    0 where nothing was evaluated before, inf where not reached), why it stopped, its budget."""
    rows = []
    for (name, replicate), found in table.groupby(["arm", "replicate"], sort=False):
        found = found.sort_values("step")
        target = float(found["target"].iloc[0])
        hits = found[[reached(a, target) for a in found["val_accuracy"]]]
        first = hits.iloc[0] if len(hits) else None
        earlier = found[found["step"] < first["step"]] if first is not None else found.iloc[:0]
        last = earlier.iloc[-1] if len(earlier) else None
        budget = int(found["budget_steps"].iloc[0])
        steps = None if first is None else int(first["step"])
        estimate = budget if first is None else crossing(
            None if last is None else (int(last["step"]), float(last["val_accuracy"])),
            (steps, float(first["val_accuracy"])), target)
        rows.append({"arm": name, "replicate": int(replicate),
                     "reached": first is not None, "steps": steps,
                     "before": 0 if last is None else int(last["step"]),
                     "estimate": estimate,
                     "low": budget if first is None else 0 if last is None else int(last["step"]),
                     "high": math.inf if first is None else steps,
                     "examples": None if first is None else int(first["examples"]),
                     "budget": budget,
                     "stopped": found["stopped"].dropna().iloc[-1]
                     if found["stopped"].notna().any() else None,
                     "final_val_accuracy": found["val_accuracy"].dropna().iloc[-1]
                     if found["val_accuracy"].notna().any() else None})
    return pd.DataFrame(rows)


def estimates(models, arm, replicates=None) -> dict:
    """{replicate: estimated steps (the budget where not reached)} of an arm's models."""
    rows = models[models["arm"] == arm.name]
    found = dict(zip(rows["replicate"], rows["estimate"]))
    return {r: v for r, v in found.items() if replicates is None or r in replicates}


def arm_statistics(models, arm) -> dict:
    rows = models[models["arm"] == arm.name]
    reached = rows[rows["reached"]]
    return {**accuracy.arm_entry(arm), "replicates": len(rows), "reached": len(reached),
            "not_reached": int((~rows["reached"]).sum()),
            "diverged": int((rows["stopped"] == "diverged").sum()),
            "steps": statistics.describe_geometric(reached["estimate"]),
            "steps_counted": statistics.describe_geometric(rows["estimate"]),
            "examples": statistics.describe_geometric(reached["examples"]),
            "resolution": None if reached.empty else
            float((1 - reached["before"] / reached["steps"]).max()),
            "final_val_accuracy": statistics.describe(rows["final_val_accuracy"])}


def choose(models, arms_of_group, replicates=None, notes=None):
    """The arm TUNING_RULE picks among one (batch size, line)'s arms, on ``replicates`` (all:
    None) that every candidate has (a note for ``notes`` when some have more); None if no arm
    has a model there."""
    held = {arm: estimates(models, arm, replicates) for arm in arms_of_group}
    held = {arm: found for arm, found in held.items() if found}
    if not held:
        return None
    shared = accuracy.shared_replicates({arm: found.keys() for arm, found in held.items()})
    if not shared:
        raise SweepError(f"the lrs of {line_name(arms_of_group[0].line)} at batch "
                         f"{arms_of_group[0].batch_size} share no replicate, so none can be "
                         f"chosen on the same replicates; run the missing ones")
    if notes is not None:
        notes += accuracy.unequal_note(
            f"the lr of {line_name(arms_of_group[0].line)} at batch "
            f"{arms_of_group[0].batch_size}", {a.name: sorted(f) for a, f in held.items()},
            shared)

    def rank(arm):
        rows = models[(models["arm"] == arm.name) & models["replicate"].isin(shared)]
        return (-int(rows["reached"].sum()), float(np.mean(np.log(rows["estimate"]))), arm.lr)

    return min(held, key=rank)


def groups(arms) -> dict:
    """{(batch size, line): its listed arms}, in order."""
    found = {}
    for arm in arms:
        if not arm.control:
            found.setdefault((arm.batch_size, arm.line), []).append(arm)
    return found


def leave_one_out(models, arms_of_group, replicates) -> dict:
    """{replicate: the arm chosen on the other replicates (on all, if it is the only one)}."""
    return {r: choose(models, arms_of_group, [o for o in replicates if o != r] or [r])
            for r in replicates}


def ratio_row(family, arm, other, ours, theirs) -> dict:
    """A paired ratio of steps, the other arm's over this one's: {replicate: its model's row of
    ``per_model``} of this arm (``ours``) and of the one compared (``theirs``); the row names
    the arms their replicates used most."""
    shared = sorted(ours.keys() & theirs.keys())
    result = statistics.paired_ratio([theirs[r]["estimate"] for r in shared],
                                     [ours[r]["estimate"] for r in shared])
    if shared:
        logs = (lambda v: -math.inf if v == 0 else math.log(v))
        result = statistics.within_brackets(
            result, [logs(theirs[r]["low"]) - logs(ours[r]["high"]) for r in shared],
            [logs(theirs[r]["high"]) - logs(ours[r]["low"]) for r in shared])
    return {**accuracy.comparison_row(family, arm, other, "steps"),
            "not_reached": sum(not ours[r]["reached"] for r in shared),
            "other_not_reached": sum(not theirs[r]["reached"] for r in shared),
            "none_reached": bool(shared) and not any(ours[r]["reached"] or theirs[r]["reached"]
                                                     for r in shared), **result}


def models_of(models, chosen) -> dict:
    """{replicate: the ``per_model`` row of its chosen arm's model} ({replicate: arm}), for the
    replicates where that arm has a model."""
    found = {}
    for replicate, arm in chosen.items():
        rows = models[(models["arm"] == arm.name) & (models["replicate"] == replicate)]
        if len(rows):
            found[replicate] = rows.iloc[0].to_dict()
    return found


def most_common(chosen) -> Arm:
    """The arm chosen for most replicates (ties: the first)."""
    arms = list(chosen.values())
    return max(dict.fromkeys(arms), key=arms.count)


def tuned_comparisons(models, arms, tuned_lrs) -> list:
    """``tuned_lrs``: {(batch, line): {replicate: arm chosen without it}}."""
    rows = []
    every = set(arms)
    for (batch, line), chosen in tuned_lrs.items():
        if line == (0.0, False) or (batch, (0.0, False)) not in tuned_lrs:
            continue
        zero = tuned_lrs[(batch, (0.0, False))]
        mine = models_of(models, chosen)
        theirs = models_of(models, {r: zero[r] for r in chosen if r in zero})
        rows.append(ratio_row("tuned_vs_zero", most_common(chosen), most_common(zero), mine,
                              theirs))
        controls = {r: control_of(arm, every) for r, arm in chosen.items()}
        if all(c is not None for c in controls.values()):
            theirs = models_of(models, controls)
            rows.append(ratio_row("tuned_vs_control", most_common(chosen),
                                  most_common(controls), mine, theirs))
    return rows


def listed_comparisons(models, arms) -> list:
    """Each line against momentum 0 and its control at the same lr (one lr listed)."""
    rows = []
    for family, compared in pairs(arms).items():
        for arm, other in compared:
            replicates = sorted(estimates(models, arm).keys() & estimates(models, other).keys())
            rows.append(ratio_row(family, arm, other,
                                  models_of(models, dict.fromkeys(replicates, arm)),
                                  models_of(models, dict.fromkeys(replicates, other))))
    return rows


WORDS = {"better": "fewer steps than", "worse": "more steps than",
         "no detectable difference": "no detectable difference in steps from"}


def ratio_text(row) -> str:
    """A ratio as every reader writes it: x1.33 [1.21, 1.47]; with its bound sign where a model
    did not reach the target (>= x4.37 [3.81, inf], <= x0.50 [0, 0.62]); "-" without one."""
    if row["ratio"] is None:
        return "-"
    sign = {"at least": ">= ", "at most": "<= "}.get(row.get("bound"), "")
    if row["ratio_ci"] is None:
        return f"{sign}x{row['ratio']:.2f}"
    low, high = row["ratio_ci"]
    return (f"{sign}x{row['ratio']:.2f} [{'0' if low is None else f'{low:.2f}'}, "
            f"{'inf' if high is None else f'{high:.2f}'}]")


def missing_text(row) -> str:
    """How many of the compared models did not reach the target, "" when all did."""
    missing = row["not_reached"] + row["other_not_reached"]
    return f" ({missing} not reached)" if missing else ""


def verdict(row, arms_by_name) -> str:
    """A ratio's result in a sentence, following the verdict rule, with the models that did not
    reach the target."""
    missing = ((f"; {row['not_reached']} of its models did not reach the target"
                if row["not_reached"] else "")
               + (f"; {row['other_not_reached']} of the other's did not"
                  if row["other_not_reached"] else ""))
    text = ratio_text(row)
    estimate, _, interval = text.partition(" [")
    return statistics.verdict(row, arms_by_name[row["against"]].label, estimate,
                              interval.rstrip("]") or "-", WORDS, missing)


def tuned_models(models, tuned) -> dict:
    """{line: {batch: {replicate: the per_model row of the arm tuned for it}}} (``tuned``:
    {(batch, line): {replicate: arm chosen without it}})."""
    found = {}
    for (batch, line), chosen in tuned.items():
        found.setdefault(line, {})[batch] = models_of(models, chosen)
    return found


def analyse(table, arms) -> dict:
    """The summary of the steps measure: rules, arms, tuned lrs, comparisons."""
    models = per_model(table)
    target = float(table["target"].iloc[0])
    entries = [arm_statistics(models, arm) for arm in arms]
    by_name = {a["arm"]: a for a in entries}
    replicates = sorted(models["replicate"].unique().tolist())
    tuned = {}
    notes = []
    for group, found in groups(arms).items():
        best = choose(models, found, notes=notes)
        if best is None:
            continue
        by_name[best.name]["best_lr_of_line"] = True
        by_name[best.name]["edge"] = accuracy.edge(best, found)
        tuned[group] = leave_one_out(models, found, replicates)
    for a in entries:
        a.setdefault("best_lr_of_line", False)
    several = any(len(found) > 1 for found in groups(arms).values())
    found = tuned_comparisons(models, arms, tuned) if several else listed_comparisons(models, arms)
    rows = []
    for family in dict.fromkeys(r["family"] for r in found):
        rows += statistics.family([r for r in found if r["family"] == family])
    arms_by_name = {a.name: a for a in arms}
    for row in rows:
        row["verdict"] = verdict(row, arms_by_name)
    fitted = scaling.fit_lines(tuned_models(models, tuned)) if several else []
    return {"measure": {**MEASURE, "target": target},
            "rules": [STEPS_RULE, *([TUNING_RULE] if several else []), RATIO_RULE,
                      statistics.VERDICT_RULE,
                      f"intervals: {statistics.CONFIDENCE:.0%} t-intervals over replicates",
                      *([scaling.FIT_RULE] if fitted else [])],
            "arms": entries, "comparisons": rows, **({"notes": notes} if notes else {}),
            **({"scaling": fitted} if fitted else {}),
            "models": [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                        for k, v in row.items()} for row in models.to_dict("records")]}


def faster_from(rows, batches) -> dict:
    """{line: the smallest batch size from which the line reaches the target in fewer steps
    than tuned plain SGD at it and at every larger listed batch size; None if it never does}."""
    found = {}
    for line in dict.fromkeys((r["momentum"], r["nesterov"]) for r in rows):
        verdicts = {r["batch_size"]: r["outcome"] for r in rows
                    if (r["momentum"], r["nesterov"]) == line}
        start = None
        for batch in sorted(batches, reverse=True):
            if verdicts.get(batch) != "better":
                break
            start = batch
        found[line] = start
    return found


def break_of(summary, line=(0.9, False)):
    """The smallest batch size of a steps summary from which ``line`` needs fewer steps than
    tuned plain SGD, and at every larger one (``faster_from``); None where it never does."""
    rows = [c for c in summary["comparisons"] if c["family"] == "tuned_vs_zero"]
    return faster_from(rows, sorted({a["batch_size"] for a in summary["arms"]})).get(line)


def headline(summary) -> dict:
    """The decisions (see summarize.headline): the target; with several lrs, the smallest
    batch size from which each line needs fewer steps than tuned plain SGD (``faster_from``),
    how many tuned lrs sit on their grid's edge, and at each batch size (``b1024``) which lines
    at their tuned lr need fewer or more steps than tuned plain SGD; with one lr, at each batch
    size which lines differ from momentum 0 and from their control."""
    rows = summary["comparisons"]
    batches = sorted({a["batch_size"] for a in summary["arms"]})
    tuned = [r for r in rows if r["family"] == "tuned_vs_zero"]
    found = {"target": summary["measure"]["target"]}

    def words(family, batch):
        return statistics.cell([(line_label((r["momentum"], r["nesterov"])),
                                 statistics.word(r, "fewer", "more", "no pairs"))
                                for r in rows if r["family"] == family
                                and r["batch_size"] == batch])

    if tuned:
        found["faster_from"] = ", ".join(
            f"{line_label(line)}: {'never' if batch is None else batch}"
            for line, batch in faster_from(tuned, batches).items())
        found["lrs_on_edge"] = sum(accuracy.on_edge(a) for a in summary["arms"])
    for batch in batches:
        if tuned:
            found[f"b{batch}"] = words("tuned_vs_zero", batch)
        else:
            found[f"b{batch}"] = {"vs_zero": words("vs_zero", batch),
                                  "vs_ctrl": words("vs_control", batch)}
    return found

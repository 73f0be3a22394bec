"""The measure of a run with ``train.target``: the steps each model takes to reach the target
validation accuracy (Shallue et al. 2019's "steps to result"; AlgoPerf's time to target, counted
in steps), and the training images it saw by then.

- A model's steps to the target are the first evaluated step at which its validation accuracy
  (on its replicate's fold) is at or above the target; the evaluation before brackets it
  (``before``). A model that ends its budget, or diverges, without reaching it is "not reached":
  counted, never dropped. In means and comparisons it counts as its whole budget, a lower bound
  of its steps (so its arm looks faster than it is).
- Tuned at every batch size: for each (batch size, line), the lr with the most replicates
  reaching the target, then the fewest mean steps (ties: the smaller lr). Chosen on the
  validation folds, never on test. Each comparison takes, for replicate r, the lrs chosen on the
  other replicates (leave one replicate out), so no replicate's steps choose its own lr. A best
  lr at the edge of its grid is flagged: the grid should then be widened.
- Comparisons, paired by replicate, as ratios (a paired t-test of log steps): at each batch size
  each line at its tuned lr against plain SGD at its tuned lr (``tuned_vs_zero``: tuned SGD's
  steps over the line's, above 1 where the line needs fewer) and against its control, plain SGD
  at its step lr/(1 - mu) (``tuned_vs_control``: still just a larger step?). With one lr, each
  line against momentum 0 and its control at that lr. Holm within each family.
"""

import math

import pandas as pd

from ..training.arms import Arm, control_of, line_key, line_label, pairs
from . import accuracy, statistics

MEASURE = {"name": "steps to the target validation accuracy", "figure": "steps", "unit": "x",
           "higher": "fewer steps", "lower": "more steps"}
TUNING_RULE = ("tuned lr: at each batch size, for each line (momentum and update), the lr with "
               "the most replicates reaching the target, then the fewest mean steps (a model "
               "that does not reach it counts as its whole budget), ties to the smaller lr; "
               "chosen on validation; each replicate's comparison uses the lrs chosen on the "
               "other replicates (leave one out)")
STEPS_RULE = ("steps to the target: the first evaluated step whose validation accuracy is at "
              "or above the target; a model that never gets there (its budget ended, or it "
              "diverged) is counted as not reached and, in means and ratios, as its budget")
RATIO_RULE = ("ratio: the other arm's steps over this arm's (above 1: this arm needs fewer), "
              "the geometric mean over replicates with its 95% interval, from a paired t-test "
              "of log steps")


def per_model(table) -> pd.DataFrame:
    """One row per model: its arm, replicate, whether and where it reached the target (steps,
    the evaluation before, examples), why it stopped, and its budget."""
    rows = []
    for (name, replicate), found in table.groupby(["arm", "replicate"], sort=False):
        found = found.sort_values("step")
        target = float(found["target"].iloc[0])
        hits = found[found["val_accuracy"] >= target]
        first = hits.iloc[0] if len(hits) else None
        earlier = found[found["step"] < first["step"]] if first is not None else found.iloc[:0]
        budget = int(found["budget_steps"].iloc[0])
        steps = None if first is None else int(first["step"])
        rows.append({"arm": name, "replicate": int(replicate),
                     "reached": first is not None, "steps": steps,
                     "before": int(earlier["step"].iloc[-1]) if len(earlier) else 0,
                     "examples": None if first is None else int(first["examples"]),
                     "counted": budget if steps is None else steps, "budget": budget,
                     "stopped": found["stopped"].dropna().iloc[-1]
                     if found["stopped"].notna().any() else None,
                     "final_val_accuracy": found["val_accuracy"].dropna().iloc[-1]
                     if found["val_accuracy"].notna().any() else None})
    return pd.DataFrame(rows)


def counted(models, arm, replicates=None) -> dict:
    """{replicate: steps counted (the budget where not reached)} of an arm's models."""
    rows = models[models["arm"] == arm.name]
    found = dict(zip(rows["replicate"], rows["counted"]))
    return {r: v for r, v in found.items() if replicates is None or r in replicates}


def arm_statistics(models, arm) -> dict:
    rows = models[models["arm"] == arm.name]
    reached = rows[rows["reached"]]
    return {**accuracy.arm_entry(arm), "replicates": len(rows), "reached": len(reached),
            "not_reached": int((~rows["reached"]).sum()),
            "diverged": int((rows["stopped"] == "diverged").sum()),
            "steps": statistics.describe(reached["steps"]),
            "steps_counted": statistics.describe(rows["counted"]),
            "examples": statistics.describe(reached["examples"]),
            "resolution": None if reached.empty else
            float((1 - reached["before"] / reached["steps"]).max()),
            "final_val_accuracy": statistics.describe(rows["final_val_accuracy"])}


def choose(models, arms_of_group, replicates=None):
    """The arm TUNING_RULE picks among one (batch size, line)'s arms, on ``replicates`` (all:
    None); None if no arm has a model there."""
    def rank(arm):
        found = counted(models, arm, replicates)
        reached = models[(models["arm"] == arm.name) & models["reached"]]
        if replicates is not None:
            reached = reached[reached["replicate"].isin(replicates)]
        return (-len(reached), sum(found.values()) / len(found), arm.lr)

    candidates = [a for a in arms_of_group if counted(models, a, replicates)]
    return min(candidates, key=rank) if candidates else None


def groups(arms) -> dict:
    """{(batch size, line): its listed arms}, in order."""
    found = {}
    for arm in arms:
        if not arm.control:
            found.setdefault((arm.batch_size, arm.line), []).append(arm)
    return found


def edge(arm, arms_of_group) -> str | None:
    """Where a tuned lr sits on its grid: "smallest" or "largest" listed (widen it), "one lr"
    (nothing was tuned), or None (inside)."""
    lrs = sorted(a.lr for a in arms_of_group)
    if len(lrs) == 1:
        return "one lr"
    return "smallest" if arm.lr == lrs[0] else "largest" if arm.lr == lrs[-1] else None


def leave_one_out(models, arms_of_group, replicates) -> dict:
    """{replicate: the arm chosen on the other replicates (on all, if it is the only one)}."""
    return {r: choose(models, arms_of_group, [o for o in replicates if o != r] or [r])
            for r in replicates}


def ratio_row(family, arm, other, ours, theirs) -> dict:
    """A paired ratio of steps: {replicate: (steps counted, reached)} of this arm (``ours``) and
    the one compared (``theirs``); the row names the arms their replicates used most."""
    shared = sorted(ours.keys() & theirs.keys())
    result = statistics.paired_ratio([theirs[r][0] for r in shared], [ours[r][0] for r in shared])
    return {"family": family, "arm": arm.name, "against": other.name, "line": line_key(arm.line),
            "momentum": arm.momentum, "nesterov": arm.nesterov, "lr": arm.lr,
            "batch_size": arm.batch_size, "metric": "steps",
            "not_reached": sum(not ours[r][1] for r in shared),
            "other_not_reached": sum(not theirs[r][1] for r in shared), **result}


def steps_and_reached(models, arm, replicate):
    rows = models[(models["arm"] == arm.name) & (models["replicate"] == replicate)]
    return int(rows["counted"].iloc[0]), bool(rows["reached"].iloc[0])


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
        mine = {r: steps_and_reached(models, arm, r) for r, arm in chosen.items()}
        theirs = {r: steps_and_reached(models, zero[r], r) for r in chosen if r in zero}
        rows.append(ratio_row("tuned_vs_zero", most_common(chosen), most_common(zero), mine,
                              theirs))
        controls = {r: control_of(arm, every) for r, arm in chosen.items()}
        if all(c is not None for c in controls.values()):
            theirs = {r: steps_and_reached(models, c, r) for r, c in controls.items()
                      if counted(models, c, [r])}
            rows.append(ratio_row("tuned_vs_control", most_common(chosen),
                                  most_common(controls), mine, theirs))
    return rows


def listed_comparisons(models, arms) -> list:
    """Each line against momentum 0 and its control at the same lr (one lr listed)."""
    rows = []
    for family, compared in pairs(arms).items():
        for arm, other in compared:
            replicates = sorted(counted(models, arm).keys() & counted(models, other).keys())
            rows.append(ratio_row(family, arm, other,
                                  {r: steps_and_reached(models, arm, r) for r in replicates},
                                  {r: steps_and_reached(models, other, r) for r in replicates}))
    return rows


WORDS = {"better": "fewer steps than", "worse": "more steps than",
         "no detectable difference": "no detectable difference in steps from"}


def verdict(row, arms_by_name) -> str:
    """A ratio's result in a sentence, following the verdict rule, with the models that did not
    reach the target."""
    missing = ((f"; {row['not_reached']} of its models did not reach the target"
                if row["not_reached"] else "")
               + (f"; {row['other_not_reached']} of the other's did not"
                  if row["other_not_reached"] else ""))
    low, high = row["ratio_ci"] or (None, None)
    return statistics.verdict(row, arms_by_name[row["against"]].label,
                              "-" if row["ratio"] is None else f"x{row['ratio']:.2f}",
                              "-" if low is None else f"{low:.2f}, {high:.2f}", WORDS, missing)


def analyse(table, arms) -> dict:
    """The summary of the steps measure: rules, arms, tuned lrs, comparisons."""
    models = per_model(table)
    target = float(table["target"].iloc[0])
    entries = [arm_statistics(models, arm) for arm in arms]
    by_name = {a["arm"]: a for a in entries}
    replicates = sorted(models["replicate"].unique().tolist())
    tuned = {}
    for group, found in groups(arms).items():
        best = choose(models, found)
        if best is None:
            continue
        by_name[best.name]["best_lr_of_line"] = True
        by_name[best.name]["edge"] = edge(best, found)
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
    return {"measure": {**MEASURE, "target": target},
            "rules": [STEPS_RULE, *([TUNING_RULE] if several else []), RATIO_RULE,
                      statistics.VERDICT_RULE,
                      f"intervals: {statistics.CONFIDENCE:.0%} t-intervals over replicates"],
            "arms": entries, "comparisons": rows,
            "models": [{k: (None if isinstance(v, float) and math.isnan(v) else v)
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
        found["lrs_on_edge"] = sum(a.get("edge") in ("smallest", "largest")
                                   for a in summary["arms"])
    for batch in batches:
        if tuned:
            found[f"b{batch}"] = words("tuned_vs_zero", batch)
        else:
            found[f"b{batch}"] = {"vs_zero": words("vs_zero", batch),
                                  "vs_ctrl": words("vs_control", batch)}
    return found

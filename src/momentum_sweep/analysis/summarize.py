"""Stage `summarize`: metrics/epochs.tsv and metrics/summary.json from the trained models.

summary.json leads with what a user decides on, so that `dvc metrics show` and `dvc exp show`
show it first: the best momentum with its mean accuracies, and one verdict per momentum. Then,
in lists (which DVC's tables leave out), the rules, every arm's statistics and every paired
comparison. Keys hold no dots (momentum 0.25 is `0p25`), so flattened names read one way only.
"""


from ..atomic import check_writable_folder, write_json
from ..finite import or_none
from ..training.arms import momentum_key, momentum_name
from . import metrics, statistics

SELECTION_RULE = ("best momentum: the largest mean final validation accuracy over replicates, "
                  "among listed momenta none of whose replicates diverged; ties: the smaller "
                  "momentum. Test accuracy never takes part in the choice")
FIGURES = ["val_accuracy", "test_accuracy", "val_loss", "test_loss", "train_loss"]
COMPARED = "test_accuracy"
PROJECTED_REPLICATES = (10, 20, 40)


def by_replicate(finals, arm, column) -> dict:
    rows = finals[finals["arm"] == arm.name]
    return {int(r): or_none(v) for r, v in zip(rows["replicate"], rows[column])}


def arm_statistics(finals, arm) -> dict:
    rows = finals[finals["arm"] == arm.name]
    entry = {"arm": arm.name, "momentum": arm.momentum, "lr": arm.lr, "control": arm.control,
             "replicates": len(rows), "diverged": int(rows["diverged"].sum())}
    for column in FIGURES:
        entry[column] = statistics.describe(rows[column])
    return entry


def choose_best(arm_stats):
    candidates = [a for a in arm_stats if not a["control"] and not a["diverged"]
                  and a["val_accuracy"]["mean"] is not None]
    if not candidates:
        return None
    return min(candidates, key=lambda a: (-a["val_accuracy"]["mean"], a["momentum"]))


def winners_per_replicate(finals) -> list:
    """The momentum one replicate alone would pick (the best validation accuracy): what choosing
    on a single seed gives."""
    listed = finals[(finals["control"] == 0) & finals["val_accuracy"].notna()]
    ordered = listed.sort_values(["replicate", "val_accuracy", "momentum"],
                                 ascending=[True, False, True])
    return [float(m) for m in ordered.drop_duplicates("replicate")["momentum"]]


def compare(finals, arm, other, family) -> dict:
    mine, theirs = by_replicate(finals, arm, COMPARED), by_replicate(finals, other, COMPARED)
    replicates = sorted(mine.keys() & theirs.keys())
    result = statistics.paired([mine[r] for r in replicates], [theirs[r] for r in replicates])
    return {"family": family, "arm": arm.name, "against": other.name, "metric": COMPARED,
            **result}


def comparisons(finals, arms, best_arm) -> list:
    listed = {a.momentum: a for a in arms if not a.control}
    controls = {a.momentum: a for a in arms if a.control}
    families = {
        "vs_zero": [(a, listed[0.0]) for m, a in listed.items() if m != 0.0 and 0.0 in listed],
        "vs_best": [(a, best_arm) for a in listed.values() if best_arm and a != best_arm],
        "vs_control": [(a, controls[m]) for m, a in listed.items() if m in controls],
    }
    found = []
    for family, pairs in families.items():
        rows = [compare(finals, arm, other, family) for arm, other in pairs]
        for row, adjusted in zip(rows, statistics.holm([r["p"] for r in rows])):
            row["p_holm"] = adjusted
            row["detectable"] = statistics.detectable(row["n"], row["sd_difference"], len(rows))
            # What more replicates would detect, if the pairs kept this run's spread.
            row["detectable_with"] = {str(n): statistics.detectable(n, row["sd_difference"],
                                                                    len(rows))
                                      for n in PROJECTED_REPLICATES}
        found.extend(rows)
    return found


def against_name(comparison, arms_by_name) -> str:
    other = arms_by_name[comparison["against"]]
    return f"its lr control ({other.rule})" if other.control else other.label


def headline(found, arms_by_name) -> dict:
    """One short verdict per listed momentum: against momentum 0 and against its control."""
    parts = {}
    for c in found:
        if c["family"] == "vs_best":
            continue
        target = "0" if c["family"] == "vs_zero" else "lr control"
        difference = "" if c["n"] == 0 else f" ({statistics.pp(c['mean_difference'])})"
        parts.setdefault(arms_by_name[c["arm"]].momentum, []).append(
            f"vs {target}: {statistics.outcome(c)}{difference}")
    return {momentum_key(m): "; ".join(p) for m, p in sorted(parts.items())}


def summary(table) -> dict:
    finals = metrics.final_rows(table)
    arms = metrics.arms_of(table)
    arms_by_name = {a.name: a for a in arms}
    arm_stats = [arm_statistics(finals, arm) for arm in arms]
    best = choose_best(arm_stats)
    best_arm = arms_by_name[best["arm"]] if best else None
    found = comparisons(finals, arms, best_arm)
    for c in found:
        c["verdict"] = statistics.verdict(c, against_name(c, arms_by_name))
    replicates = int(table["replicate"].nunique())
    result = {
        "best": None if best is None else {
            "momentum": best["momentum"],
            "val_accuracy": best["val_accuracy"]["mean"],
            "test_accuracy": best["test_accuracy"]["mean"],
            "replicates": best["replicates"]},
        "verdict": headline(found, arms_by_name),
    }
    if replicates < 2:
        result["warning"] = ("one replicate: no confidence interval or test can be given; "
                             + statistics.FEWEST_REPLICATES_ADVICE)
    result["rules"] = [SELECTION_RULE, statistics.VERDICT_RULE,
                       f"intervals: {statistics.CONFIDENCE:.0%} t-intervals over replicates"]
    result["winner_per_replicate"] = winners_per_replicate(finals)
    result["arms"] = arm_stats
    result["comparisons"] = found
    return result


def run(p, models_dir=metrics.results.MODELS_DIR, metrics_dir=metrics.METRICS_DIR):
    """Stage `summarize`."""
    check_writable_folder(metrics_dir)
    table = metrics.read_models(models_dir)
    result = summary(table)
    metrics.write_tsv(table, metrics_dir / metrics.EPOCHS_FILE.name)
    write_json(metrics_dir / metrics.SUMMARY_FILE.name, result)
    best = result["best"]
    print("summarize: best momentum " + ("none (every momentum diverged)" if best is None else
          f"{momentum_name(best['momentum'])}: mean val {best['val_accuracy']:.4f}, "
          f"test {best['test_accuracy']:.4f} over {best['replicates']} replicate(s)"), flush=True)
    for key, text in result["verdict"].items():
        print(f"  momentum {key.replace('p', '.')}: {text}", flush=True)
    for c in result["comparisons"]:
        print(f"  {c['family']:>10} {c['arm']:>14}: {c['verdict']}", flush=True)

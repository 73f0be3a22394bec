"""Stage `summarize`: metrics/epochs.tsv and metrics/summary.json from the trained models.

summary.json leads with what a user decides on, so that `dvc metrics show` and `dvc exp show`
show it first, a number or a word or two per column:
- with several learning rates listed, ``tuned``: each momentum's best lr (chosen on validation)
  and its verdict at that lr against momentum 0 at its own best lr;
- ``best``: the best listed (momentum, lr) with its mean accuracies;
- with one learning rate, one verdict word per momentum against momentum 0 and its control.
Then, in lists (which DVC's tables leave out), the rules, every arm's statistics, every paired
comparison with its sentence, and what one replicate alone would have chosen. Keys hold no dots
(momentum 0.25 is `0p25`), so flattened names read one way only.
"""


from ..atomic import check_writable_folder, write_json
from ..finite import or_none
from ..training.arms import lr_name, momentum_key, momentum_name, pairs, several_lrs
from . import metrics, statistics

SELECTION_RULE = ("best: the largest mean final validation accuracy over replicates, among "
                  "listed (momentum, lr) pairs none of whose replicates diverged; ties: the "
                  "smaller momentum, then the smaller lr. Test accuracy never takes part in a "
                  "choice")
TUNED_RULE = ("tuned: each momentum at its best lr (chosen as 'best' among its own lrs) "
              "against momentum 0 at its best lr, paired by replicate")
FIGURES = ["val_accuracy", "test_accuracy", "val_loss", "test_loss", "train_loss"]
COMPARED = "test_accuracy"
PROJECTED_REPLICATES = (10, 20, 40)


def by_replicate(finals, arm, column) -> dict:
    rows = finals[finals["arm"] == arm.name]
    return {int(r): or_none(v) for r, v in zip(rows["replicate"], rows[column])}


def arm_statistics(finals, arm) -> dict:
    rows = finals[finals["arm"] == arm.name]
    entry = {"arm": arm.name, "momentum": arm.momentum, "lr": arm.lr, "sgd_lr": arm.sgd_lr,
             "effective_lr": arm.effective_lr, "control": arm.control,
             "replicates": len(rows), "diverged": int(rows["diverged"].sum())}
    for column in FIGURES:
        entry[column] = statistics.describe(rows[column])
    return entry


def choose_best(arm_stats):
    """The entry SELECTION_RULE picks among ``arm_stats``; None if none qualifies."""
    candidates = [a for a in arm_stats if not a["control"] and not a["diverged"]
                  and a["val_accuracy"]["mean"] is not None]
    if not candidates:
        return None
    return min(candidates, key=lambda a: (-a["val_accuracy"]["mean"], a["momentum"], a["lr"]))


def best_per_momentum(arm_stats) -> dict:
    """{momentum: its entry at its best lr}, for each momentum with one."""
    found = {}
    for momentum in sorted({a["momentum"] for a in arm_stats if not a["control"]}):
        best = choose_best([a for a in arm_stats if a["momentum"] == momentum])
        if best is not None:
            found[momentum] = best
    return found


def winners_per_replicate(finals) -> list:
    """The (momentum, lr) one replicate alone would pick (the best validation accuracy): what
    choosing on a single seed gives."""
    listed = finals[(finals["control"] == 0) & finals["val_accuracy"].notna()]
    ordered = listed.sort_values(["replicate", "val_accuracy", "momentum", "lr"],
                                 ascending=[True, False, True, True])
    return [{"replicate": int(r.replicate), "momentum": float(r.momentum), "lr": float(r.lr)}
            for r in ordered.drop_duplicates("replicate").itertuples()]


def lr_wins(finals) -> list:
    """For each momentum, how many replicates alone would have picked each of its lrs: the
    winner's curse of choosing the lr on one seed."""
    listed = finals[(finals["control"] == 0) & finals["val_accuracy"].notna()]
    ordered = listed.sort_values(["momentum", "replicate", "val_accuracy", "lr"],
                                 ascending=[True, True, False, True])
    winners = ordered.drop_duplicates(["momentum", "replicate"])
    rows = []
    for (momentum, lr), won in winners.groupby(["momentum", "lr"]):
        rows.append({"momentum": float(momentum), "lr": float(lr), "wins": len(won),
                     "replicates": int(listed[listed["momentum"] == momentum]["replicate"]
                                       .nunique())})
    return rows


def compare(finals, arm, other, family) -> dict:
    mine, theirs = by_replicate(finals, arm, COMPARED), by_replicate(finals, other, COMPARED)
    replicates = sorted(mine.keys() & theirs.keys())
    result = statistics.paired([mine[r] for r in replicates], [theirs[r] for r in replicates])
    return {"family": family, "arm": arm.name, "momentum": arm.momentum, "lr": arm.lr,
            "against": other.name, "metric": COMPARED, **result}


def families(arms, best_arm, tuned) -> dict:
    """{family: [(arm, the arm it is compared with)]}; ``tuned``: {momentum: arm at its best
    lr}, compared only when several lrs are listed."""
    found = dict(pairs(arms))
    found["vs_best"] = [(a, best_arm) for a in arms if best_arm and not a.control
                        and a != best_arm]
    if several_lrs(arms) and 0.0 in tuned:
        found["tuned_vs_zero"] = [(a, tuned[0.0]) for m, a in tuned.items() if m != 0.0]
    return found


def comparisons(finals, compared) -> list:
    found = []
    for family, arm_pairs in compared.items():
        rows = [compare(finals, arm, other, family) for arm, other in arm_pairs]
        for row, adjusted in zip(rows, statistics.holm([r["p"] for r in rows])):
            row["p_holm"] = adjusted
            row["outcome"] = statistics.outcome(row)
            row["detectable"] = statistics.detectable(row["n"], row["sd_difference"], len(rows))
            # What more replicates would detect, if the pairs kept this run's spread.
            row["detectable_with"] = {str(n): statistics.detectable(n, row["sd_difference"],
                                                                    len(rows))
                                      for n in PROJECTED_REPLICATES}
        found.extend(rows)
    return found


def against_name(comparison, arms_by_name) -> str:
    other = arms_by_name[comparison["against"]]
    if other.control:
        return f"its lr control ({other.rule})"
    if comparison["family"] == "tuned_vs_zero":
        return f"{other.label} (its best lr)"
    if comparison["family"] == "vs_control":
        return f"{other.label}, its lr control"
    return other.label


def words(found, family) -> dict:
    """{momentum key: the outcome in a word or two} of one family of comparisons."""
    return {momentum_key(c["momentum"]): statistics.short_outcome(c)
            for c in found if c["family"] == family}


def headline(found, best, tuned, several) -> dict:
    """What `dvc metrics show` and `dvc exp show` lead with (see the module's docstring)."""
    result = {}
    if several:
        result["tuned"] = {
            "best_lr": {momentum_key(m): a.lr for m, a in tuned.items()},
            "verdict": words(found, "tuned_vs_zero")}
    result["best"] = None if best is None else {
        "momentum": best["momentum"], "lr": best["lr"],
        "val_accuracy": best["val_accuracy"]["mean"],
        "test_accuracy": best["test_accuracy"]["mean"], "replicates": best["replicates"]}
    if not several:
        result["vs_zero"] = words(found, "vs_zero")
        result["vs_control"] = words(found, "vs_control")
    return result


def summary(table) -> dict:
    finals = metrics.final_rows(table)
    arms = metrics.arms_of(table)
    arms_by_name = {a.name: a for a in arms}
    arm_stats = [arm_statistics(finals, arm) for arm in arms]
    best = choose_best(arm_stats)
    tuned = {m: arms_by_name[a["arm"]] for m, a in best_per_momentum(arm_stats).items()}
    for a in arm_stats:
        a["best_lr_of_momentum"] = not a["control"] and tuned.get(a["momentum"]) == \
            arms_by_name[a["arm"]]
    several = several_lrs(arms)
    found = comparisons(finals, families(arms, arms_by_name[best["arm"]] if best else None,
                                         tuned))
    for c in found:
        c["verdict"] = statistics.verdict(c, against_name(c, arms_by_name))
    result = headline(found, best, tuned, several)
    if int(table["replicate"].nunique()) < 2:
        result["warning"] = ("one replicate: no confidence interval or test can be given; "
                             + statistics.FEWEST_REPLICATES_ADVICE)
    result["rules"] = [SELECTION_RULE, *([TUNED_RULE] if several else []),
                       statistics.VERDICT_RULE,
                       f"intervals: {statistics.CONFIDENCE:.0%} t-intervals over replicates"]
    result["winner_per_replicate"] = winners_per_replicate(finals)
    if several:
        result["lr_wins"] = lr_wins(finals)
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
    print("summarize: best " + ("none (every momentum diverged)" if best is None else
          f"momentum {momentum_name(best['momentum'])} at lr {lr_name(best['lr'])}: mean val "
          f"{best['val_accuracy']:.4f}, test {best['test_accuracy']:.4f} over "
          f"{best['replicates']} replicate(s)"), flush=True)
    for c in result["comparisons"]:
        print(f"  {c['family']:>13} {c['arm']:>22}: {c['verdict']}", flush=True)

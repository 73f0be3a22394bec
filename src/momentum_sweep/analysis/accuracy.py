"""The measure of a run without ``train.target``: the final accuracy after the whole budget.

Per arm: n, mean and 95% interval of each final figure. The best arm (``choose``, on
validation). With several lrs, each (batch size, line) at its best lr, chosen on mean validation
accuracy, and each line at its best lr against plain SGD at its best lr at the same batch size,
paired by replicate on test accuracy (the winner's curse of choosing on one seed is shown in
``lr_wins``). Every momentum against momentum 0 at its lr and against its control, paired on test
accuracy. Holm within each family; words for the headline.
"""

from ..errors import SweepError
from ..vocabulary.arms import (Arm, arm_columns, arm_of, cell_label, line_key, line_name,
                               pairs)
from . import statistics

SELECTION_RULE = ("best: the largest mean final validation accuracy over replicates, among "
                  "listed arms none of whose replicates diverged; ties: the smaller momentum, "
                  "heavy-ball before Nesterov, then the smaller lr. Test accuracy never takes "
                  "part in a choice")
TUNED_RULE = ("tuned: at each batch size, each line (momentum and update) at its best lr "
              "(chosen as 'best' among its own lrs) against plain SGD at its best lr, paired by "
              "replicate")
FIGURES = ["val_accuracy", "test_accuracy", "val_loss", "test_loss", "train_loss"]
COMPARED = "test_accuracy"
PROJECTED_REPLICATES = (10, 20, 40)
MEASURE = {"name": "final test accuracy", "figure": COMPARED, "unit": "pp",
           "higher": "better", "lower": "worse"}


def by_replicate(finals, arm, column) -> dict:
    rows = finals[finals["arm"] == arm.name]
    return {int(r): v for r, v in zip(rows["replicate"], rows[column])}


# What a summary says of each arm, and of each arm a comparison is about, whatever the measure.
ENTRY_COLUMNS = ("arm", "kind", "momentum", "nesterov", "lr", "batch_size", "sgd_lr",
                 "effective_lr", "control", "line")
COMPARED_COLUMNS = ("line", "momentum", "nesterov", "lr", "batch_size")


def arm_entry(arm) -> dict:
    """What every summary says of an arm, whatever its measure."""
    return arm_columns(arm, ENTRY_COLUMNS)


def comparison_row(family, arm, other, metric) -> dict:
    """What every summary says of a comparison of ``arm`` with ``other``, before its figures."""
    return {"family": family, "arm": arm.name, "against": other.name,
            **arm_columns(arm, COMPARED_COLUMNS), "metric": metric}


def edge(arm, arms_of_group) -> str | None:
    """Where a tuned lr sits on its (batch size, line)'s grid: "smallest" or "largest" listed
    (the best may lie beyond it: widen the grid), "one lr" (nothing was tuned), or None
    (inside)."""
    lrs = sorted(a.lr for a in arms_of_group)
    if len(lrs) == 1:
        return "one lr"
    return "smallest" if arm.lr == lrs[0] else "largest" if arm.lr == lrs[-1] else None


def on_edge(entry) -> bool:
    return entry.get("edge") in ("smallest", "largest")


def arm_statistics(finals, arm) -> dict:
    rows = finals[finals["arm"] == arm.name]
    entry = {**arm_entry(arm), "replicates": len(rows), "diverged": int(rows["diverged"].sum())}
    for column in FIGURES:
        entry[column] = statistics.describe(rows[column])
    return entry


def order_of_choice(entry) -> tuple:
    """Ties go to the smaller momentum, heavy-ball before Nesterov, then the smaller lr."""
    return (entry["momentum"], entry["nesterov"], entry["lr"])


def shared_replicates(replicates_of) -> list:
    """The replicates every candidate has ({candidate: its replicates}): a choice compares
    candidates on the same replicates only (experiments joined by momentum-sweep-compare may
    hold more of some arms)."""
    found = set.intersection(*map(set, replicates_of.values())) if replicates_of else set()
    return sorted(found)


def unequal_note(what, replicates_of, shared) -> list:
    """A note where a choice among candidates was made on fewer replicates than some hold."""
    if all(len(r) == len(shared) for r in replicates_of.values()):
        return []
    most = ", ".join(f"{name} has {len(r)}" for name, r in replicates_of.items())
    return [f"{what}: chosen on replicate(s) {', '.join(map(str, shared)) or 'none'}, those "
            f"every candidate has ({most})"]


def choose(finals, entries, what="best", notes=None):
    """The entry SELECTION_RULE picks among ``entries``, on the replicates every candidate has
    (a note for ``notes`` when some have more); None if none qualifies."""
    candidates = [a for a in entries if not a["control"] and not a["diverged"]
                  and a["val_accuracy"]["mean"] is not None]
    if not candidates:
        return None
    values = {a["arm"]: by_replicate(finals, Arm.from_name(a["arm"]), "val_accuracy")
              for a in candidates}
    shared = shared_replicates({name: v.keys() for name, v in values.items()})
    if not shared:
        raise SweepError(f"{what}: the arms {', '.join(values)} share no replicate, so none can "
                         f"be chosen on the same replicates; run the missing ones")
    if notes is not None:
        notes += unequal_note(what, {name: sorted(v) for name, v in values.items()}, shared)

    def mean(a):
        return statistics.describe([values[a["arm"]][r] for r in shared])["mean"]

    return min(candidates, key=lambda a: (-mean(a), *order_of_choice(a)))


def groups(entries) -> dict:
    """{(batch size, line): the listed arms' entries}, in order."""
    found = {}
    for a in entries:
        if not a["control"]:
            found.setdefault((a["batch_size"], (a["momentum"], a["nesterov"])), []).append(a)
    return found


def several_lrs(entries) -> bool:
    return any(len({a["lr"] for a in group}) > 1 for group in groups(entries).values())


def listed_by_choice(finals, by):
    """The listed arms' final rows, in each group of ``by`` and replicate best first (the
    largest validation accuracy; ties as SELECTION_RULE)."""
    listed = finals[(finals["control"] == 0) & finals["val_accuracy"].notna()]
    return listed.sort_values([*by, "replicate", "val_accuracy", "momentum", "kind", "lr"],
                              ascending=[*(True,) * len(by), True, False, True, True, True])


def winner_per_replicate(finals) -> list:
    """The arm one replicate alone would pick: what choosing on a single seed gives."""
    won = listed_by_choice(finals, []).drop_duplicates("replicate")
    return [{"replicate": int(r.replicate), "arm": r.arm, "momentum": float(r.momentum),
             "lr": float(r.lr), "batch_size": int(r.batch_size)} for r in won.itertuples()]


def lr_wins(finals) -> list:
    """For each (batch size, line), how many replicates alone would have picked each of its
    lrs: the winner's curse of choosing the lr on one seed."""
    by = ["batch_size", "kind", "momentum"]
    won = listed_by_choice(finals, by).drop_duplicates([*by, "replicate"])
    return [{"batch_size": int(batch), "line": line_key((float(m), kind == "nesterov")),
             "momentum": float(m), "lr": float(lr), "wins": len(found)}
            for (batch, kind, m, lr), found in won.groupby([*by, "lr"])]


def compare(finals, arm, other, family) -> dict:
    mine, theirs = by_replicate(finals, arm, COMPARED), by_replicate(finals, other, COMPARED)
    replicates = sorted(mine.keys() & theirs.keys())
    return {**comparison_row(family, arm, other, COMPARED),
            **statistics.paired([mine[r] for r in replicates], [theirs[r] for r in replicates])}


def families(arms, best, tuned) -> dict:
    """{family: [(arm, the arm it is compared with)]}; ``tuned``: {(batch, line): arm at its
    best lr}, compared only when several lrs are listed."""
    found = dict(pairs(arms))
    found["vs_best"] = [(a, best) for a in arms if best and not a.control and a != best]
    found["tuned_vs_zero"] = [(a, tuned[(batch, (0.0, False))])
                              for (batch, line), a in tuned.items()
                              if line != (0.0, False) and (batch, (0.0, False)) in tuned]
    return found


def comparisons(finals, compared) -> list:
    found = []
    for family, arm_pairs in compared.items():
        rows = [compare(finals, arm, other, family) for arm, other in arm_pairs]
        found += statistics.family(rows, PROJECTED_REPLICATES)
    return found


def against_name(comparison, arms_by_name) -> str:
    other = arms_by_name[comparison["against"]]
    if other.control:
        return f"its lr control ({other.sgd_rule})"
    if comparison["family"] == "tuned_vs_zero":
        return f"{other.label} (its best lr)"
    if comparison["family"] == "vs_control":
        return f"{other.label}, its lr control"
    return other.label


def analyse(finals, arms) -> dict:
    """The summary of the final-accuracy measure: rules, arms, choices, comparisons."""
    arms_by_name = {a.name: a for a in arms}
    entries = [arm_statistics(finals, arm) for arm in arms]
    notes = []
    best = choose(finals, entries, "the best arm", notes)
    several = several_lrs(entries)
    tuned = {}
    for (batch, line), found in groups(entries).items():
        chosen = several and choose(finals, found, f"the lr of {line_name(line)} at batch "
                                                   f"{batch}", notes)
        if chosen:
            tuned[(batch, line)] = arms_by_name[chosen["arm"]]
    listed = {group: [arms_by_name[a["arm"]] for a in found]
              for group, found in groups(entries).items()}
    for a in entries:
        group = (a["batch_size"], (a["momentum"], a["nesterov"]))
        a["best_lr_of_line"] = tuned.get(group) == arms_by_name[a["arm"]] and not a["control"]
        if a["best_lr_of_line"]:
            a["edge"] = edge(tuned[group], listed[group])
    found = comparisons(finals, families(arms, arms_by_name[best["arm"]] if best else None,
                                         tuned))
    for c in found:
        c["verdict"] = statistics.difference_verdict(c, against_name(c, arms_by_name))
    return {"measure": MEASURE,
            "rules": [SELECTION_RULE, *([TUNED_RULE] if several else []),
                      statistics.VERDICT_RULE,
                      f"intervals: {statistics.CONFIDENCE:.0%} t-intervals over replicates"],
            "best": best and {k: best[k] for k in ("arm", "momentum", "nesterov", "lr",
                                                   "batch_size")},
            "winner_per_replicate": winner_per_replicate(finals),
            **({"lr_wins": lr_wins(finals)} if several else {}),
            "arms": entries, "comparisons": found, **({"notes": notes} if notes else {})}


def headline(summary) -> dict:
    """The decisions, a number or a few words each (see summarize.headline): the best arm; with
    one lr, which lines differ from momentum 0 (``vs_zero``) and from their control
    (``vs_ctrl``); with several, each line's tuned lr (``tuned``, "(largest listed)" where it is
    on its grid's edge) and which lines at it differ from tuned plain SGD
    (``vs_tuned_zero``)."""
    rows = summary["comparisons"]
    batches = sorted({a["batch_size"] for a in summary["arms"]})
    several = several_lrs(summary["arms"])
    best = summary["best"]
    found = {"best": None if best is None else {"momentum": best["momentum"]}}
    if best is not None:
        if several:
            found["best"]["lr"] = best["lr"]
        if any(a["nesterov"] for a in summary["arms"]):
            found["best"]["nesterov"] = best["nesterov"]
        if len(batches) > 1:
            found["best"]["batch_size"] = best["batch_size"]

    def words(family):
        return statistics.cell([(cell_label(arm_of(c), batches=batches), statistics.word(c))
                                for c in rows
                                if c["family"] == family])

    if several:
        found["tuned"] = ", ".join(f"{cell_label(arm_of(a), batches=batches)}: {a['lr']:g}"
                                   + (f" ({a['edge']} listed)" if on_edge(a) else "")
                                   for a in summary["arms"] if a["best_lr_of_line"])
        found["vs_tuned_zero"] = words("tuned_vs_zero")
    else:
        found["vs_zero"] = words("vs_zero")
        found["vs_ctrl"] = words("vs_control")
    return found

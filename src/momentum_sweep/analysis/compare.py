"""Every experiment's results in one table and one figure, after a sweep over hosts or GPUs.

    momentum-sweep-compare [--repo .] [--out comparison]

reads every experiment of the repository (`dvc exp pull` them first) through DVC's Python API:
`dvc.api.exp_show` lists them with their params and state, and `dvc.api.read` reads each one's
metrics/summary.json at its revision. Experiments are compared only when they hold the same
settings apart from those a sweep varies (momentum, learning rate, replicates, the control
switch, the device); the others, and those that failed, are reported, not mixed in. An arm that
several experiments trained (momentum 0 in every slice of a sweep) is the same models, so it is
counted once, from the experiment with the most replicates.

Writes <out>/arms.tsv (one row per arm), <out>/experiments.tsv (one row per experiment, with
whether and why it was left out) and <out>/accuracy.png: mean final validation accuracy against
momentum, one line per learning rate, with 95% bands.
"""

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import pandas as pd

from ..atomic import check_writable_folder
from ..errors import SweepError
from .metrics import write_tsv
from .figures import plt, save

SWEPT = ("momentum", "train.lr", "train.replicates", "train.lr_control", "train.device")
SUMMARY = "metrics/summary.json"


def setting_keys(row) -> list:
    """The params of an exp_show row that must match for results to be compared."""
    return sorted(k for k in row if (k.startswith(("model.", "train.", "data."))
                                     and k not in SWEPT))


def shown(value) -> str:
    """A param as params.yaml would hold it: exp_show gives integers as floats (3.0)."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def signature(row) -> dict:
    """{setting: value as params.yaml holds it} of the settings that must match."""
    return {k: shown(row.get(k)) for k in setting_keys(row)}


def different_settings(row, reference) -> str:
    """Why an experiment's settings keep it out of the comparison; "" when they match."""
    different = [f"{k}={v} (most have {reference.get(k)})"
                 for k, v in sorted(signature(row).items()) if v != reference.get(k)]
    return "different settings: " + ", ".join(different) if different else ""


def experiments(repo):
    """exp_show's rows for experiments (not the workspace or their baselines)."""
    import dvc.api

    return [row for row in dvc.api.exp_show(repo=repo) if row.get("Experiment")]


def read_summary(repo, rev):
    import dvc.api

    return json.loads(dvc.api.read(SUMMARY, repo=repo, rev=rev))


def collect(repo="."):
    """(arms table, experiments table) of every experiment in ``repo``."""
    rows = experiments(repo)
    succeeded = [r for r in rows if r.get("State") in (None, "Success")]
    signatures = Counter(tuple(signature(r).items()) for r in succeeded)
    reference = dict(signatures.most_common(1)[0][0]) if signatures else {}
    report, arms = [], {}
    for row in rows:
        entry = {"experiment": row["Experiment"], "rev": row["rev"], "state": row.get("State"),
                 "momentum": row.get("momentum"), "lr": row.get("train.lr"),
                 "replicates": row.get("train.replicates"), "included": False, "why": ""}
        report.append(entry)
        if row.get("State") not in (None, "Success"):
            entry["why"] = f"state {row.get('State')}"
            continue
        entry["why"] = different_settings(row, reference)
        if entry["why"]:
            continue
        try:
            summary = read_summary(repo, row["rev"])
        except Exception as error:  # dvc.api raises several types for a missing or bad file
            entry["why"] = f"{SUMMARY} unreadable: {error}"
            continue
        entry["included"] = True
        for arm in summary["arms"]:
            key = (arm["lr"], 0.0 if arm["control"] else arm["momentum"])
            if key not in arms or arm["replicates"] > arms[key]["replicates"]:
                arms[key] = {"lr": arm["lr"], "momentum": key[1],
                             "control_of": arm["momentum"] if arm["control"] else None,
                             "replicates": arm["replicates"], "diverged": arm["diverged"],
                             **flatten("val_accuracy", arm["val_accuracy"]),
                             **flatten("test_accuracy", arm["test_accuracy"]),
                             "experiment": row["Experiment"]}
    table = pd.DataFrame(sorted(arms.values(), key=lambda a: (a["lr"], a["momentum"])))
    return table, pd.DataFrame(report)


def flatten(name, figure):
    ci = figure["ci"] or [None, None]
    return {f"{name}_mean": figure["mean"], f"{name}_ci_low": ci[0], f"{name}_ci_high": ci[1]}


def figure(table):
    fig, ax = plt.subplots(figsize=(7.5, 4.6), layout="constrained")
    cmap = plt.get_cmap("plasma")
    rates = sorted(table["lr"].unique())
    for i, (lr, rows) in enumerate(table.groupby("lr", sort=True)):
        rows = rows.sort_values("momentum")
        colour = cmap(0.85 * i / max(len(rates) - 1, 1))
        ax.plot(rows["momentum"], rows["val_accuracy_mean"], marker="o", color=colour,
                label=f"lr {lr:.4g}")
        ax.fill_between(rows["momentum"], rows["val_accuracy_ci_low"].astype(float),
                        rows["val_accuracy_ci_high"].astype(float), color=colour, alpha=0.2,
                        linewidth=0)
    ax.set(xlabel="momentum", ylabel="mean final validation accuracy",
           title="every experiment: mean over replicates with 95% band")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    return fig


def compare(repo=".", out="comparison"):
    out = Path(out)
    check_writable_folder(out)
    table, report = collect(repo)
    if table.empty:
        raise SweepError(f"{repo}: no successful experiment to compare (`dvc exp pull` them, "
                         f"or run some: `dvc exp run --queue -S momentum=0.1,0.4`)")
    write_tsv(table, out / "arms.tsv")
    write_tsv(report, out / "experiments.tsv")
    save(figure(table), out / "accuracy.png")
    return table, report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=".", help="the repository (default: here)")
    parser.add_argument("--out", default="comparison", help="output folder (default comparison)")
    args = parser.parse_args(argv)
    try:
        table, report = compare(args.repo, args.out)
    except SweepError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"compare: {int(report['included'].sum())} of {len(report)} experiment(s), "
          f"{len(table)} arm(s) -> {args.out}/arms.tsv, {args.out}/accuracy.png")
    for entry in report[~report["included"]].itertuples():
        print(f"  left out {entry.experiment}: {entry.why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Every experiment's results joined into one answer, after a sweep over hosts, GPUs or a grid.

    momentum-sweep-compare [--repo .] [--out comparison]

reads every experiment of the repository (`dvc exp pull` them first) through DVC's Python API:
`dvc.api.exp_show` lists them with their params and state, and `dvc.api.read` reads each one's
metrics/epochs.tsv at its revision. Experiments are joined only when they hold the same
settings apart from those a sweep varies (momentum, learning rate, replicates, the control
switch, the device); the others, and those that failed, are reported, not mixed in. A model that
several experiments trained (momentum 0 in every slice of a sweep) is the same model, so it is
counted once. The joined models are summarized exactly as the summarize stage does one
experiment's, paired by replicate: experiments that each hold part of a grid (one host per lr)
give the tuned answer the whole grid would.

Writes <out>/summary.json (as metrics/summary.json), <out>/arms.tsv (one row per arm),
<out>/experiments.tsv (one row per experiment, with whether and why it was left out), and the
figures: <out>/accuracy.png (mean final validation accuracy against momentum, one line per
learning rate, with 95% bands), <out>/effective_step.png, <out>/lr_momentum.png and
<out>/differences.png (as the plot stage draws them).
"""

import argparse
import io
import sys
from collections import Counter
from pathlib import Path

import pandas as pd

from ..atomic import check_writable_folder, write_json
from ..errors import SweepError
from . import plots, summarize
from .figures import momentum_styles, plt, save
from .metrics import EPOCHS_FILE, IDENTITY, final_rows, write_tsv

SWEPT = ("momentum", "train.lr", "train.replicates", "train.lr_control", "train.device")


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


def read_epochs(repo, rev) -> pd.DataFrame:
    import dvc.api

    return pd.read_csv(io.StringIO(dvc.api.read(str(EPOCHS_FILE), repo=repo, rev=rev)), sep="\t")


def join(tables) -> pd.DataFrame:
    """The epochs tables of several experiments as one, each model (arm, replicate) once."""
    joined = pd.concat(tables, ignore_index=True)
    return joined.drop_duplicates(["arm", "replicate", "epoch"], ignore_index=True)


def collect(repo="."):
    """(joined epochs table, experiments table) of every experiment in ``repo``."""
    rows = experiments(repo)
    succeeded = [r for r in rows if r.get("State") in (None, "Success")]
    signatures = Counter(tuple(signature(r).items()) for r in succeeded)
    reference = dict(signatures.most_common(1)[0][0]) if signatures else {}
    report, tables = [], []
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
            table = read_epochs(repo, row["rev"])
        except Exception as error:  # dvc.api raises several types for a missing or bad file
            entry["why"] = f"{EPOCHS_FILE} unreadable: {error}"
            continue
        missing = [c for c in IDENTITY if c not in table]
        if missing:
            entry["why"] = f"{EPOCHS_FILE} lacks column(s) {missing}: rerun it with this code"
            continue
        entry["included"] = True
        tables.append(table)
    return (join(tables) if tables else pd.DataFrame()), pd.DataFrame(report)


def flatten(name, figure):
    ci = figure["ci"] or [None, None]
    return {f"{name}_mean": figure["mean"], f"{name}_ci_low": ci[0], f"{name}_ci_high": ci[1]}


def arms_table(summary) -> pd.DataFrame:
    """One row per arm of a summary: its pair, rule, replicates and mean accuracies."""
    return pd.DataFrame([{"arm": a["arm"], "momentum": a["momentum"], "lr": a["lr"],
                          "control": int(a["control"]), "sgd_lr": a["sgd_lr"],
                          "replicates": a["replicates"], "diverged": a["diverged"],
                          **flatten("val_accuracy", a["val_accuracy"]),
                          **flatten("test_accuracy", a["test_accuracy"])}
                         for a in summary["arms"]])


def figure(table):
    """Mean final validation accuracy against momentum, one line per lr (the listed arms)."""
    table = table[table["control"] == 0]
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
    """(joined summary, arms table, experiments table); each is written under ``out``."""
    out = Path(out)
    check_writable_folder(out)
    joined, report = collect(repo)
    if joined.empty:
        raise SweepError(f"{repo}: no successful experiment to compare (`dvc exp pull` them, "
                         f"or run some: `dvc exp run --queue -S momentum=0.1,0.4`)")
    summary = summarize.summary(joined)
    table = arms_table(summary)
    write_json(out / "summary.json", summary)
    write_tsv(table, out / "arms.tsv")
    write_tsv(report, out / "experiments.tsv")
    styles = momentum_styles(joined["momentum"])
    save(figure(table), out / "accuracy.png")
    finals = final_rows(joined)
    save(plots.effective_step_figure(finals, styles), out / "effective_step.png")
    save(plots.lr_momentum_figure(summary), out / "lr_momentum.png")
    save(plots.differences_figure(summary, styles), out / "differences.png")
    return summary, table, report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=".", help="the repository (default: here)")
    parser.add_argument("--out", default="comparison", help="output folder (default comparison)")
    args = parser.parse_args(argv)
    try:
        summary, table, report = compare(args.repo, args.out)
    except SweepError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"compare: {int(report['included'].sum())} of {len(report)} experiment(s), "
          f"{len(table)} arm(s) -> {args.out}/summary.json, arms.tsv, experiments.tsv, "
          f"accuracy.png, effective_step.png, lr_momentum.png, differences.png")
    for entry in report[~report["included"]].itertuples():
        print(f"  left out {entry.experiment}: {entry.why}")
    tuned = summary.get("tuned")
    if tuned:
        for key, lr in tuned["best_lr"].items():
            verdict = tuned["verdict"].get(key, "the reference")
            print(f"  tuned: momentum {key.replace('p', '.')} at its best lr {lr:g}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Every experiment's results joined into one answer, after a sweep over hosts, GPUs or a grid.

    momentum-sweep-compare [--repo .] [--out comparison] [--names NAME ...]

reads every experiment of the repository (`dvc exp pull` them first), or those named, through
DVC's Python API:
`dvc.api.exp_show` lists them with their params and state, and `dvc.api.read` reads each one's
results/epochs.tsv at its revision. Experiments are joined only when they hold the same
settings apart from those a sweep varies (``SWEPT``: momentum, learning rate, batch size,
Nesterov's momenta, replicates, the control switch, the device); the others, and those that
failed, are reported, not mixed in. When two sets of settings are equally common there is no
telling which the sweep meant, and the comparison refuses, naming them. A model that several
experiments trained (momentum 0 in every slice of a sweep) is the same model, so it is counted
once. The joined models are summarized exactly as the summarize stage does one run's, paired by
replicate: experiments that each hold part of a grid (one host per lr, or per batch size) give
the answer the whole grid would.

Writes <out>/summary.json (as results/summary.json), <out>/headline.json (as
metrics/summary.json), <out>/arms.tsv (one row per arm), <out>/experiments.tsv (one row per
experiment, with whether and why it was left out) and the summarize stage's figures; with
``--also-target T`` (steps to a target only), the summary at the lower target T too,
<out>/summary-T.json: a second target read from the same models.
"""

import argparse
import sys
from pathlib import Path

import pandas as pd

from ..atomic import check_writable_folder, write_json
from ..errors import SweepError
from ..vocabulary.files import COMPARISON_HEADLINE, EPOCHS_FILE
from ..vocabulary.measure import Measure
from . import epochs, plots, summarize
from .figures import save

SWEPT = ("momentum", "train.lr", "train.batch_size", "train.nesterov", "train.replicates",
         "train.lr_control", "train.device")


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


def reference_settings(rows) -> dict:
    """The settings most successful experiments hold; a SweepError naming them when two or more
    sets are as common."""
    groups = {}
    for row in rows:
        groups.setdefault(tuple(signature(row).items()), []).append(row["Experiment"])
    if not groups:
        return {}
    most = max(len(names) for names in groups.values())
    tied = sorted(sig for sig, names in groups.items() if len(names) == most)
    if len(tied) > 1:
        keys = sorted({k for sig in tied for k, v in sig
                       if any(dict(other).get(k) != v for other in tied)})
        sets = "; ".join(f"{', '.join(groups[sig])}: "
                         + ", ".join(f"{k}={dict(sig).get(k)}" for k in keys) for sig in tied)
        raise SweepError(f"the experiments hold {len(tied)} sets of settings equally often "
                         f"({most} each: {sets}), so which to compare cannot be told; remove "
                         f"the others (`dvc exp remove`) or run more of the one you mean")
    return dict(tied[0])


def check_repository(repo):
    """A SweepError naming ``repo`` unless it is a folder holding a git and DVC repository
    with a commit (what DVC's experiments need)."""
    path = Path(repo)
    if not path.is_dir():
        raise SweepError(f"--repo {repo}: no such folder; give the repository the experiments "
                         f"ran in")
    for folder, what in ((".git", "git"), (".dvc", "DVC")):
        if not (path / folder).exists():
            raise SweepError(f"--repo {repo}: not a {what} repository (no {folder}); give the "
                             f"repository the experiments ran in (its root)")


def exp_show(repo) -> list:
    """dvc.api.exp_show's rows; DVC's own errors (a repository without commits, ...) as one
    SweepError."""
    import dvc.api
    from dvc.exceptions import DvcException

    try:
        return dvc.api.exp_show(repo=repo)
    except DvcException as error:
        raise SweepError(f"--repo {repo}: DVC cannot list its experiments "
                         f"({type(error).__name__}: {error})") from None


def experiments(repo, names=None):
    """exp_show's rows for experiments (not the workspace or their baselines); only those named
    in ``names`` when given (a SweepError names any that is not there)."""
    check_repository(repo)
    rows = [row for row in exp_show(repo) if row.get("Experiment")]
    if names is None:
        return rows
    missing = sorted(set(names) - {row["Experiment"] for row in rows})
    if missing:
        raise SweepError(f"{repo}: no experiment named {', '.join(missing)} (`dvc exp list` "
                         f"lists them; `dvc exp pull` brings others)")
    return [row for row in rows if row["Experiment"] in names]


def epochs_table_at(repo, rev) -> pd.DataFrame:
    """results/epochs.tsv of the experiment at ``rev``."""
    import dvc.api

    return epochs.parse(dvc.api.read(str(EPOCHS_FILE), repo=repo, rev=rev),
                        f"{EPOCHS_FILE} at {rev[:7]}")


def join(tables) -> pd.DataFrame:
    """The epochs tables of several experiments as one, each model (arm, replicate) once."""
    joined = pd.concat(tables, ignore_index=True)
    return joined.drop_duplicates(["arm", "replicate", "step"], ignore_index=True)


def collect(repo=".", names=None):
    """(joined epochs table, experiments table) of every experiment in ``repo`` (or those
    named)."""
    rows = experiments(repo, names)
    succeeded = [r for r in rows if r.get("State") in (None, "Success")]
    reference = reference_settings(succeeded)
    report, tables = [], []
    for row in rows:
        entry = {"experiment": row["Experiment"], "rev": row["rev"], "state": row.get("State"),
                 "momentum": row.get("momentum"), "lr": row.get("train.lr"),
                 "batch_size": row.get("train.batch_size"),
                 "replicates": row.get("train.replicates"), "included": False, "why": ""}
        report.append(entry)
        if row.get("State") not in (None, "Success"):
            entry["why"] = f"state {row.get('State')}"
            continue
        entry["why"] = different_settings(row, reference)
        if entry["why"]:
            continue
        try:
            table = epochs_table_at(repo, row["rev"])
        except SweepError as error:
            entry["why"] = str(error)
            continue
        except Exception as error:  # dvc.api raises several types for a missing file
            entry["why"] = f"{EPOCHS_FILE} unreadable: {error}"
            continue
        entry["included"] = True
        tables.append(table)
    return (join(tables) if tables else pd.DataFrame()), pd.DataFrame(report)


def flatten(name, figure):
    ci = figure["ci"] or [None, None]
    return {f"{name}_mean": figure["mean"], f"{name}_ci_low": ci[0], f"{name}_ci_high": ci[1]}


def arms_table(summary) -> pd.DataFrame:
    """One row per arm of a summary: its grid point, its replicates, its measure."""
    figures = ["steps_counted"] if Measure.of_summary(summary).by_steps else \
        ["val_accuracy", "test_accuracy"]
    return pd.DataFrame([{k: a[k] for k in ("arm", "kind", "momentum", "lr", "batch_size",
                                            "control", "sgd_lr", "replicates", "diverged")}
                         | {k: v for f in figures for k, v in flatten(f, a[f]).items()}
                         for a in summary["arms"]])


def at_lower_target(joined, target):
    """The joined table read at a lower validation accuracy than its run's: every model that
    stopped at the run's target passed this one before, so its steps to it are in its rows
    (the tuned lrs are chosen anew at this target). A SweepError unless it is lower."""
    run = Measure.of_table(joined).target
    if run is None or not 0 < target < run:
        raise SweepError(f"--also-target {target}: the experiments' models stop at "
                         f"train.target = {run}, so only a lower target (0 < target < {run}) "
                         f"can be read from them")
    return joined.assign(target=target)


def compare_experiments(repo=".", out="comparison", names=None, also_targets=()):
    """(joined summary, arms table, experiments table); each is written under ``out``, and,
    for each of ``also_targets``, the summary at that lower target as summary-<target>.json."""
    out = Path(out)
    check_writable_folder(out)
    joined, report = collect(repo, names)
    if joined.empty:
        raise SweepError(f"{repo}: no successful experiment to compare (`dvc exp pull` them, "
                         f"or run some: `dvc exp run --queue -S 'momentum=choice(0.1,0.4)'`)")
    lower = {t: summarize.summary(at_lower_target(joined, t)) for t in also_targets}
    summary = summarize.summary(joined)
    table = arms_table(summary)
    drawn = plots.figures(joined, summary)
    write_json(out / "summary.json", summary)
    write_json(out / COMPARISON_HEADLINE, summarize.headline(summary))
    epochs.write_tsv(table, out / "arms.tsv")
    epochs.write_tsv(report, out / "experiments.tsv")
    for name, fig in drawn.items():
        save(fig, out / f"{name}.png")
    for target, found in lower.items():
        write_json(out / f"summary-{target:g}.json", found)
    return summary, table, report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=".", help="the repository (default: here)")
    parser.add_argument("--out", default="comparison", help="output folder (default comparison)")
    parser.add_argument("--names", nargs="+", metavar="NAME",
                        help="compare only these experiments (default: every one)")
    parser.add_argument("--also-target", nargs="+", type=float, default=(), metavar="T",
                        help="also summarize steps to these lower validation accuracies")
    args = parser.parse_args(argv)
    try:
        summary, table, report = compare_experiments(args.repo, args.out, args.names,
                                                     args.also_target)
    except SweepError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"compare: {int(report['included'].sum())} of {len(report)} experiment(s), "
          f"{len(table)} arm(s) -> {args.out}/summary.json, {COMPARISON_HEADLINE}, arms.tsv, "
          f"experiments.tsv and the figures")
    for entry in report[~report["included"]].itertuples():
        print(f"  left out {entry.experiment}: {entry.why}")
    for line in summary.get("notes", []):
        print(f"  {line}")
    for c in summary["comparisons"]:
        if c["family"].startswith("tuned"):
            print(f"  {c['family']} {c['arm']}: {c['verdict']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

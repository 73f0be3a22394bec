"""Stage `summarize`: results/epochs.tsv, results/summary.json, metrics/summary.json and the
figures plots/*.png (``plots``) from the trained models.

The measure is the final accuracy after the whole budget (``accuracy``), or with
``train.target`` the steps to reach it (``steps``). results/summary.json holds the whole
summary, which every reader uses: the measure and its rules, every arm's statistics, the tuned
choices, every paired comparison with its interval, p-values and sentence. metrics/summary.json,
the DVC metric, holds only the decisions a user compares across experiments, a number or a word
or two each (keys without dots: momentum 0.25 is `0p25`, Nesterov's 0.9 `n0p9`, batch size 1024
`b1024`), so that `dvc metrics show` and `dvc exp show` stay narrow. Nothing is written until
every figure is drawn, and then each file whole and atomically.
"""

from pathlib import Path

from ..atomic import check_writable_folder, write_json
from ..training import results
from ..vocabulary.files import EPOCHS_FILE, SUMMARY_FILE, SUMMARY_HEADLINE_FILE
from ..vocabulary.measure import Measure
from . import accuracy, epochs, plots, statistics, steps
from .figures import PLOTS_DIR, save


def summary(table) -> dict:
    """The whole summary of an epochs table (one run, or experiments joined)."""
    arms = epochs.arms_of(table)
    if Measure.of_table(table).by_steps:
        found = steps.analyse(table, arms)
    else:
        found = accuracy.analyse(epochs.final_rows(table), arms)
    if int(table["replicate"].nunique()) < 2:
        found["warning"] = ("one replicate: no confidence interval or test can be given; "
                            + statistics.FEWEST_REPLICATES_ADVICE)
    return found


def headline(found) -> dict:
    """metrics/summary.json: the decisions of a summary."""
    if Measure.of_summary(found).by_steps:
        return steps.headline(found)
    return accuracy.headline(found)


def run(p, models_dir=results.MODELS_DIR, plots_dir=PLOTS_DIR):
    """Stage `summarize`."""
    for folder in (EPOCHS_FILE.parent, SUMMARY_HEADLINE_FILE.parent, plots_dir):
        check_writable_folder(folder)
    table = epochs.table_of_models(models_dir)
    found = summary(table)
    drawn = plots.figures(table, found)
    epochs.write_tsv(table, EPOCHS_FILE)
    write_json(SUMMARY_FILE, found)
    write_json(SUMMARY_HEADLINE_FILE, headline(found))
    for name, fig in drawn.items():
        save(fig, Path(plots_dir) / f"{name}.png")
    if "warning" in found:
        print(f"summarize: {found['warning']}", flush=True)
    for line in found.get("notes", []):
        print(f"summarize: {line}", flush=True)
    print(f"summarize: {found['measure']['name']}; {SUMMARY_FILE}, {SUMMARY_HEADLINE_FILE}, "
          f"{len(drawn)} figures in {plots_dir}/", flush=True)
    for a in found["arms"]:
        if a["best_lr_of_line"] and a.get("edge") != "one lr":
            edge = (f": on the {a['edge']} end of its grid, the best may lie beyond it; widen "
                    f"train.lr" if accuracy.on_edge(a) else "")
            print(f"  {'tuned lr':>16} {a['arm']:>36}{edge}", flush=True)
    for c in found["comparisons"]:
        print(f"  {c['family']:>16} {c['arm']:>36}: {c['verdict']}", flush=True)

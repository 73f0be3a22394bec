"""The summarize stage's figures, plots/*.png (and momentum-sweep-compare's), from the epochs table
and the summary, for either measure (final accuracy; or, with train.target, steps to the
target). Every curve is the mean over
replicates with its 95% interval as a band; every point estimate has its 95% interval.

- accuracy.png, loss.png: learning curves. Final accuracy: one panel per listed arm with mu > 0
  (four across, then wrapped): the arm (its line's style), its control (dashed, same colour) and
  momentum 0 at the same lr and batch size (grey), against epochs. Steps: one panel per batch
  size, each line at its tuned lr, against steps (log scale), with the target.
- final_accuracy.png: each arm's final accuracies (at the end of its budget, or where it
  stopped), one dot per replicate with the mean and its interval; a row per batch size.
- differences.png: the paired comparisons. Final accuracy: differences of test accuracy in
  percentage points, each momentum minus momentum 0 and minus its control, a panel per (batch
  size, lr), and a panel per batch size for each line at its best lr minus plain SGD at its best.
  Steps: the ratio of tuned plain SGD's steps to each line's against batch size (and of its
  control's), 1 marked.
- effective_step.png: the measure against the effective step lr/(1 - mu), one line per line
  (plain SGD's holds its controls), a panel per batch size. If momentum were only a larger step,
  the lines would fall on one curve.
- lr_momentum.png: the measure over the (lr, line) grid, a panel per batch size, each line's
  best lr outlined (red; orange where it is on the grid's edge).
- batch_size.png: the measure at each line's tuned lr against batch size; with steps, log-log
  with the perfect-scaling line (steps halve as the batch doubles).
- memory.png, time.png: the cost of the passes, one line per batch size.

Colours, markers, bands and the PNG write are shared with every figure (``figures``).
"""

import numpy as np
from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

from ..vocabulary.arms import FAMILIES, Arm, arm_of, line_name, pairs
from ..vocabulary.measure import Measure
from . import accuracy, epochs, statistics
from .figures import (LINESTYLES, arm_style, draw_band, draw_interval, legend, line_styles, note,
                      plt)

PANEL_COLUMNS = 4  # curve panels across, before they wrap
CURVES = {
    "accuracy": [("val_accuracy", "validation accuracy"), ("test_accuracy", "test accuracy")],
    "loss": [("train_loss", "training loss (mean since the last evaluation)"),
             ("test_loss", "test loss")],
}
# With a target the test split is evaluated only where a model stops: the curves are these.
STEP_CURVES = {"accuracy": [("val_accuracy", "validation accuracy")],
               "loss": [("train_loss", "training loss (mean since the last evaluation)"),
                        ("val_loss", "validation loss")]}
COSTS = {
    "memory": [("cpu_peak_rss_mib", "CPU peak resident memory (MiB)"),
               ("cuda_peak_allocated_mib", "CUDA peak allocated (MiB)"),
               ("cuda_peak_reserved_mib", "CUDA peak reserved (MiB)")],
    "time": [("train_seconds", "seconds of training per evaluation"),
             ("samples_per_second", "training samples per second")],
}
FIGURES = [*CURVES, "final_accuracy", "differences", "effective_step", "lr_momentum",
           "batch_size", *COSTS]


def batch_axis(ax, batches):
    """A log-scale x axis of batch sizes, labelled with the batch sizes themselves."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sorted(batches)))
    ax.xaxis.set_major_formatter("{x:g}")
    ax.xaxis.set_minor_locator(NullLocator())


def plain_log(axis):
    """A log axis without labels on its minor ticks (they crowd a short range)."""
    axis.set_minor_formatter(NullFormatter())


def grid(count, width, height):
    """A figure of ``count`` panels, PANEL_COLUMNS across at most, and its axes (unused ones
    removed)."""
    columns = min(max(count, 1), PANEL_COLUMNS)
    rows = -(-max(count, 1) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns + 0.6, height * rows),
                             squeeze=False, layout="constrained")
    for ax in axes.ravel()[count:]:
        ax.remove()
    return fig, axes.ravel()[:count]


def arm_label(arm, rows=None):
    """The arm's label, and how many of its replicates diverged, if any did."""
    label = arm.label
    if rows is not None:
        diverged = int(rows["diverged"].sum())
        if diverged:
            label += f" ({diverged} of {rows['replicate'].nunique()} diverged)"
    return label


def curve_panels(table, summary, measure):
    """[(title, [(arm, role)])]: with steps, per batch size each line at its tuned lr; else per
    listed arm with mu > 0: the arm, its control ("control") and momentum 0 at its lr and batch
    size ("reference")."""
    arms = epochs.arms_of(table)
    if measure.by_steps:
        tuned = [Arm.from_name(a["arm"]) for a in summary["arms"] if a["best_lr_of_line"]]
        return [(f"batch {b}, each line at its tuned lr",
                 [(a, "arm") for a in tuned if a.batch_size == b])
                for b in sorted({a.batch_size for a in tuned})]
    compared = pairs(arms)
    controls, zeros = dict(compared["vs_control"]), dict(compared["vs_zero"])
    panels = [(arm_label(a), [(a, "arm"), *([(controls[a], "control")] if a in controls else []),
                              *([(zeros[a], "reference")] if a in zeros else [])])
              for a in arms if not a.control and a.momentum != 0]
    return panels or [(arm_label(a), [(a, "arm")]) for a in arms if not a.control]


def draw_curves(ax, table, column, panel, styles, x):
    for arm, role in panel:
        rows = table[(table["arm"] == arm.name) & table[column].notna()]
        colour, marker, dash = arm_style(arm, styles)
        if role == "reference":
            colour, marker = "grey", "o"
        if role == "control":  # dashed in its arm's colour, a grid arm in that role too
            colour, dash = arm_style(panel[0][0], styles)[0], LINESTYLES["control"]
        points = sorted(rows[x].unique())
        draw_band(ax, points, statistics.band(rows.loc[rows[x] == p, column] for p in points),
                  colour, arm_label(arm, table[table["arm"] == arm.name]), dash,
                  None if role == "control" or len(points) > 20 else marker,
                  alpha=0.12 if role == "control" else 0.22)
        diverged = table[(table["arm"] == arm.name) & (table["diverged"] == 1)]
        for point in diverged[x]:
            ax.plot([point], [np.nanmin(rows[column]) if len(rows) else 0], marker="x",
                    markersize=11, mew=2.5, color=colour, linestyle="none")
    ax.grid(alpha=0.3)
    legend(ax, fontsize=7)


def curves_figure(table, summary, measure, rows, styles):
    """A block of panels per (column, title) of ``rows``."""
    steps = measure.by_steps
    panels = curve_panels(table, summary, measure)
    x = "step" if steps else "epoch"
    fig, axes = grid(len(panels) * len(rows), 4.2, 3.4)
    for r, (column, title) in enumerate(rows):
        for i, (name, panel) in enumerate(panels):
            ax = axes[r * len(panels) + i]
            draw_curves(ax, table, column, panel, styles, x)
            if column.endswith("accuracy"):
                ax.set_ylim(max(ax.get_ylim()[0], 0), min(ax.get_ylim()[1], 1))
            if steps:
                ax.set_xscale("log")
                if column == "val_accuracy":
                    ax.axhline(measure.target, color="k", lw=0.8, ls=":")
            ax.set_title(f"{title}: {name}", fontsize=9)
            ax.set(xlabel="training steps (log)" if steps else "epoch", ylabel=title)
    captions = ["mean over replicates with 95% interval"]
    if steps:
        captions.append("dotted: the target; models stop there, so later points are those "
                      "still training")
    else:
        captions += ["dashed: plain SGD at lr/(1 - momentum)", "grey: momentum 0 at the same lr"]
    fig.suptitle("; ".join(captions), fontsize=9)
    return fig


def draw_final(ax, finals, column, title, styles, arms):
    rng = np.random.default_rng(0)  # jitter only, fixed so the figure is reproducible
    for x, arm in enumerate(arms):
        values = finals.loc[finals["arm"] == arm.name, column].dropna().to_numpy()
        colour, marker, _ = arm_style(arm, styles)
        ax.scatter(x + rng.uniform(-0.12, 0.12, len(values)), values, s=18, color=colour,
                   facecolors="none" if arm.control else colour, alpha=0.7, marker=marker,
                   zorder=2)
        draw_interval(ax, x + 0.3, statistics.describe(values.tolist()), "black", size=14)
    several = len({a.lr for a in arms}) > 1
    ax.set_xticks(range(len(arms)),
                  [("ctrl " if a.control else "n " if a.nesterov else "") + f"{a.momentum:g}"
                   + (f" {a.listed_as} {a.lr:g}" if several else "") for a in arms],
                  rotation=0 if len(arms) <= 12 else 90)
    ax.set(title=title, xlabel="momentum (ctrl: SGD at lr/(1 - momentum); n: Nesterov)",
           ylabel=title.split(",")[0])
    ax.grid(alpha=0.3, axis="y")


def final_figure(table, styles):
    """A row per batch size, a column per final accuracy (validation, test)."""
    finals = epochs.final_rows(table)
    arms = epochs.arms_of(table)
    batches = sorted({a.batch_size for a in arms})
    ordered = sorted(arms, key=lambda a: (a.lr, a.momentum, a.nesterov, a.control))
    widest = max(sum(a.batch_size == b for a in arms) for b in batches)
    width = max(6.2, 0.25 * widest)
    fig, axes = plt.subplots(len(batches), 2, figsize=(2 * width, 4.4 * len(batches)),
                             squeeze=False, layout="constrained")
    for row, batch in zip(axes, batches):
        for ax, (column, title) in zip(row, CURVES["accuracy"]):
            draw_final(ax, finals, column, f"{title}, batch {batch} (at the end or the stop)",
                       styles, [a for a in ordered if a.batch_size == batch])
    return fig


# A ratio that is a bound: the arrowhead points to its open side.
BOUND_MARKERS = {"at least": "^", "at most": "v"}


def end(row, side, open_value):
    """One end of a ratio's interval: ``open_value`` where it is open or missing."""
    ci = row["ratio_ci"]
    return np.nan if ci is None else open_value if ci[side] is None else ci[side]


def ratio_figure(summary, styles):
    """With steps: each family's ratios against batch size, a panel per family."""
    names = {"tuned_vs_zero": "tuned plain SGD's steps / the line's (each at its tuned lr)",
             "tuned_vs_control": "its control's steps / the line's (plain SGD at lr/(1 - mu))",
             "vs_zero": "momentum 0's steps / the line's, same lr",
             "vs_control": "its control's steps / the line's, same lr"}
    rows = summary["comparisons"]
    families = [f for f in names if any(r["family"] == f for r in rows)]
    fig, axes = grid(len(families), 5.6, 4.4)
    for ax, family in zip(axes, families):
        found = [r for r in rows if r["family"] == family and r["ratio"] is not None]
        for line in dict.fromkeys((r["momentum"], r["nesterov"]) for r in found):
            mine = sorted((r for r in found if (r["momentum"], r["nesterov"]) == line),
                          key=lambda r: r["batch_size"])
            colour, marker = styles[line]
            x = [r["batch_size"] for r in mine]
            ratio = np.array([r["ratio"] for r in mine])
            # an open end (a model that did not reach the target) is drawn as no bar on that
            # side, and the point as an arrowhead pointing to it: a bound, not a measurement
            low = np.array([end(r, 0, r["ratio"]) for r in mine])
            high = np.array([end(r, 1, r["ratio"]) for r in mine])
            ax.errorbar(x, ratio, yerr=[ratio - low, high - ratio], color=colour, marker=marker,
                        capsize=4, linestyle=LINESTYLES["nesterov" if line[1] else "momentum"],
                        label=line_name(line))
            for r in mine:
                if r.get("bound") in BOUND_MARKERS:
                    ax.plot([r["batch_size"]], [r["ratio"]], linestyle="none", markersize=11,
                            marker=BOUND_MARKERS[r["bound"]], color=colour)
        ax.axhline(1, color="grey", linewidth=1)
        batch_axis(ax, {r["batch_size"] for r in rows})
        ax.set_yscale("log")
        plain_log(ax.yaxis)
        ax.set(title=names[family], xlabel="batch size (log)",
               ylabel="ratio of steps (log; above 1: the line needs fewer)")
        ax.grid(alpha=0.3, which="both")
        legend(ax, fontsize=8)
    fig.suptitle("steps to the target, paired by replicate: geometric mean ratio with 95% "
                 "interval, never narrower than the evaluations resolve; arrowhead: a bound "
                 "(up: at least, down: at most), as models did not reach the target", fontsize=9)
    return fig


def difference_panels(summary):
    """[(title, comparisons)]: a panel per (batch size, lr) of the differences from momentum 0
    and from the control, and per batch size one of the lines at their best lrs."""
    rows = summary["comparisons"]
    panels = []
    for batch, lr in sorted({(c["batch_size"], c["lr"]) for c in rows
                             if c["family"] in FAMILIES}):
        panels.append((f"batch {batch}, lr {lr:g}",
                       [c for c in rows if (c["batch_size"], c["lr"]) == (batch, lr)
                        and c["family"] in FAMILIES]))
    for batch in sorted({c["batch_size"] for c in rows if c["family"] == "tuned_vs_zero"}):
        panels.append((f"batch {batch}, with lr tuned",
                       [c for c in rows if c["family"] == "tuned_vs_zero"
                        and c["batch_size"] == batch]))
    return panels


DIFFERENCES = {"vs_zero": ("minus momentum 0", "o", -0.12, False),
               "vs_control": ("minus its lr control", "s", 0.12, True),
               "tuned_vs_zero": ("at its best lr minus momentum 0 at its best", "D", 0.0,
                                 False)}


def draw_differences(ax, rows, styles, title):
    """rows: comparisons of the DIFFERENCES families, one slot per line."""
    lines = sorted({(c["momentum"], c.get("nesterov", False)) for c in rows})
    for family, (label, marker, shift, hollow) in DIFFERENCES.items():
        found = [c for c in rows if c["family"] == family and c["n"]]
        for i, c in enumerate(found):
            line = (c["momentum"], c.get("nesterov", False))
            d = {"mean": 100 * c["mean_difference"],
                 "ci": c["ci"] and [100 * v for v in c["ci"]]}
            draw_interval(ax, lines.index(line) + shift, d, styles[line][0], marker=marker,
                          size=6, hollow=hollow, label=label if i == 0 else None)
    ax.axhline(0, color="grey", linewidth=1)
    ax.set_xticks(range(len(lines)), [line_name(line) for line in lines], fontsize=8)
    ax.set_xlim(-0.6, max(len(lines), 2) - 0.4)
    ax.set(title=title, xlabel="line", ylabel="difference (percentage points)")
    ax.grid(alpha=0.3)
    legend(ax, fontsize=8)


def differences_figure(summary, measure, styles):
    if measure.by_steps:
        return ratio_figure(summary, styles)
    panels = difference_panels(summary)
    if not panels:
        return note("no comparisons: list momentum 0 and another momentum")
    fig, axes = grid(len(panels), 5.2, 4.4)
    for ax, (title, found) in zip(axes, panels):
        draw_differences(ax, found, styles, title)
    fig.suptitle("paired difference of final test accuracy (95% interval)", fontsize=10)
    return fig


def measure_of(entry, steps):
    """What the figures draw of an arm: the geometric mean of its steps, a model not reached
    counted as its budget (steps), or its mean validation accuracy."""
    return entry["steps_counted"] if steps else entry["val_accuracy"]


def measure_label(measure) -> str:
    if measure.by_steps:
        return f"steps to validation accuracy {measure.target:g} (log)"
    return "mean final validation accuracy"


def draw_points(ax, x, found, colour, marker, dash, label):
    """Means with their 95% interval as a band, at ``x`` (one point: an error bar): ``found``,
    describe() dicts."""
    if all(d["mean"] is None for d in found):  # nothing measured: every model diverged
        return
    if len(found) == 1:
        draw_interval(ax, x[0], found[0], colour, marker=marker, size=6, label=label)
        return
    draw_band(ax, x, statistics.band_of(found), colour, label, dash, marker, alpha=0.15)


def effective_step_figure(summary, measure, styles):
    """The measure against lr/(1 - mu), one line per line, a panel per batch size."""
    steps = measure.by_steps
    batches = sorted({a["batch_size"] for a in summary["arms"]})
    fig, axes = grid(len(batches), 5.6, 4.4)
    for ax, batch in zip(axes, batches):
        entries = [a for a in summary["arms"] if a["batch_size"] == batch]
        for line in sorted({arm_of(a).line for a in entries}):
            mine = sorted((a for a in entries if arm_of(a).line == line),
                          key=lambda a: a["effective_lr"])
            colour, marker = styles[line]
            label = line_name(line) + (" (and the controls)" if line == (0.0, False)
                                       and any(a["control"] for a in mine) else "")
            draw_points(ax, [a["effective_lr"] for a in mine],
                        [measure_of(a, steps) for a in mine], colour, marker,
                        LINESTYLES["nesterov" if line[1] else "momentum"], label)
        ax.set_xscale("log")
        plain_log(ax.xaxis)
        if steps:
            ax.set_yscale("log")
            plain_log(ax.yaxis)
        ax.set(title=f"batch {batch}", xlabel="effective step lr / (1 - momentum) (log)",
               ylabel=measure_label(measure) if ax is axes[0] else None)
        ax.grid(alpha=0.3, which="both")
        legend(ax, fontsize=7)
    fig.suptitle("momentum as a larger step: one curve if that is all it is (mean over "
                 "replicates, 95% band"
                 + ("; a model that does not reach the target counts as its budget)" if steps
                    else ")"), fontsize=10)
    return fig


def lr_momentum_figure(summary, measure):
    """The measure over the grid, a panel per batch size, each line's best lr outlined."""
    steps = measure.by_steps
    listed = [a for a in summary["arms"] if not a["control"]]
    batches = sorted({a["batch_size"] for a in listed})
    lines = sorted({arm_of(a).line for a in listed})
    most = max(len({a["lr"] for a in listed if a["batch_size"] == b}) for b in batches)
    fig, axes = grid(len(batches), 1.1 * len(lines) + 2.2, max(3.2, 0.45 * most + 1.8))
    for ax, batch in zip(axes, batches):
        lrs = sorted({a["lr"] for a in listed if a["batch_size"] == batch})
        values = np.full((len(lrs), len(lines)), np.nan)
        for a in listed:
            d = measure_of(a, steps)
            if a["batch_size"] == batch and d["mean"] is not None:
                values[lrs.index(a["lr"]), lines.index(arm_of(a).line)] = d["mean"]
        shown = np.log10(values) if steps else 100 * values
        image = ax.imshow(shown, cmap="viridis_r" if steps else "viridis", aspect="auto",
                          origin="lower")
        for a in listed:
            if a["batch_size"] != batch:
                continue
            i, j = lrs.index(a["lr"]), lines.index(arm_of(a).line)
            if np.isnan(values[i, j]):
                continue
            text = (f"{values[i, j]:.0f}" + (f"\n{a['not_reached']} not reached"
                                              if a["not_reached"] else "")) if steps \
                else f"{100 * values[i, j]:.2f}"
            dark = image.norm(shown[i, j]) < 0.5  # the dark end of the colour map
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="white" if dark != steps else "black")
            if a["best_lr_of_line"]:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False,
                                           edgecolor="orange" if accuracy.on_edge(a) else "red",
                                           linewidth=2))
        ax.set_xticks(range(len(lines)), [line_name(line).replace(" ", "\n") for line in lines],
                      fontsize=8)
        ax.set_yticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
        ax.set(xlabel="line", title=f"batch {batch}",
               ylabel="step lr/(1 - mu)" if arm_of(listed[0]).effective else "learning rate")
        fig.colorbar(image, ax=ax, label="log10 mean steps" if steps else "%")
    fig.suptitle(f"{measure_label(measure)}; red: each line's best lr (orange: on the edge "
                 f"of the grid)", fontsize=9)
    return fig


def batch_figure(summary, measure, styles):
    """The measure at each line's tuned lr (its one lr, if one is listed) against batch size."""
    steps = measure.by_steps
    chosen = [a for a in summary["arms"] if not a["control"] and
              (a["best_lr_of_line"] or len({b["lr"] for b in summary["arms"]}) == 1)]
    fig, ax = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
    for line in sorted({arm_of(a).line for a in chosen}):
        mine = sorted((a for a in chosen if arm_of(a).line == line), key=lambda a: a["batch_size"])
        colour, marker = styles[line]
        draw_points(ax, [a["batch_size"] for a in mine], [measure_of(a, steps) for a in mine],
                    colour, marker, LINESTYLES["nesterov" if line[1] else "momentum"],
                    line_name(line))
        for a in mine:  # a mean that counts models not reached as their budget: a lower bound
            if steps and a["not_reached"] and a["steps_counted"]["mean"] is not None:
                ax.plot([a["batch_size"]], [a["steps_counted"]["mean"]], linestyle="none",
                        marker="^", markersize=11, color=colour)
    batch_axis(ax, {a["batch_size"] for a in chosen})
    draw_fits(ax, summary.get("scaling", []), {a["batch_size"] for a in chosen}, styles)
    if steps:
        sgd = sorted((a for a in chosen if arm_of(a).line == (0.0, False)),
                     key=lambda a: a["batch_size"])
        if sgd and sgd[0]["steps_counted"]["mean"] is not None:
            b0, s0 = sgd[0]["batch_size"], sgd[0]["steps_counted"]["mean"]
            batches = np.array(sorted({a["batch_size"] for a in chosen}))
            ax.plot(batches, s0 * b0 / batches, color="grey", linestyle=":",
                    label="perfect scaling from plain SGD's smallest batch")
        ax.set_yscale("log")
    tuned = "its tuned lr" if accuracy.several_lrs(summary["arms"]) else "its lr"
    ax.set(xlabel="batch size (log)", ylabel=measure_label(measure),
           title=f"each line at {tuned} (mean over replicates, 95% band)"
                 + ("\narrowhead: at least (models that did not reach the target); dotted: "
                    "S(B) = S_min (1 + B_crit / B) fitted" if steps else ""))
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3, which="both")
    legend(ax, fontsize=8)
    return fig


def draw_fits(ax, fitted, batches, styles):
    """Each line's fitted S(B) = S_min (1 + B_crit / B), dotted in its colour (``scaling``)."""
    grid_of = np.geomspace(min(batches), max(batches), 200) if batches else []
    for row in fitted:
        s_min, b_crit = row["s_min"]["value"], row["b_crit"]["value"]
        if s_min is None or b_crit is None:
            continue
        colour, _ = styles[(row["momentum"], row["nesterov"])]
        ax.plot(grid_of, s_min * (1 + b_crit / grid_of), color=colour, linestyle=":",
                linewidth=1.2, label=f"fit: S_min {s_min:.0f}, B_crit {b_crit:.0f}")


def costs_figure(table, panels):
    """Each pass's cost, one line per batch size (its models share the pass's cost)."""
    x = "epoch"
    panels = [(c, t) for c, t in panels if c in table and table[c].notna().any()]
    if not panels:
        return note("no cost was recorded with these results")
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.4), squeeze=False,
                             layout="constrained")
    for ax, (column, title) in zip(axes[0], panels):
        for batch, rows in table.groupby("batch_size"):
            found = rows.groupby(x)[column].mean()
            ax.plot(found.index, found.values, marker="o", markersize=3, label=f"batch {batch}")
        ax.set(title=title, xlabel="epoch", ylabel=title)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        legend(ax, fontsize=8)
    return fig


def figures(table, summary) -> dict:
    """{name: figure} of every FIGURES name."""
    styles = line_styles([*{Arm.from_name(a).line for a in table["arm"].unique()},
                          *{(Arm.from_name(a).momentum, Arm.from_name(a).nesterov)
                            for a in table["arm"].unique()}])
    measure = Measure.of_summary(summary)
    curves = STEP_CURVES if measure.by_steps else CURVES
    found = {name: curves_figure(table, summary, measure, rows, styles)
             for name, rows in curves.items()}
    found["final_accuracy"] = final_figure(table, styles)
    found["differences"] = differences_figure(summary, measure, styles)
    found["effective_step"] = effective_step_figure(summary, measure, styles)
    found["lr_momentum"] = lr_momentum_figure(summary, measure)
    found["batch_size"] = batch_figure(summary, measure, styles)
    for name, panels in COSTS.items():
        found[name] = costs_figure(table, panels)
    return found



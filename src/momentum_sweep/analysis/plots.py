"""Stage `plot`: PNG figures from metrics/epochs.tsv and metrics/summary.json.

- accuracy.png, loss.png: learning curves, one panel per listed (momentum, lr) with mu > 0 (four
  across, then wrapped): the momentum (solid), its control (dashed, same colour) and momentum 0
  at the same lr (grey), each the mean over replicates with its 95% interval as a band. One
  panel per pair keeps the bands readable.
- final_accuracy.png: the final accuracies, one dot per replicate, with each arm's mean and 95%
  interval; a quarter of an inch per arm, the two panels stacked when that gets wide.
- differences.png: the paired differences of final test accuracy, each momentum minus momentum 0
  and minus its control, with 95% intervals and a zero line; one panel per lr (three across, then
  wrapped), and with several lrs one more for each momentum at its best lr minus momentum 0 at
  its best.
- effective_step.png: mean final validation accuracy against the effective step lr/(1 - mu), log
  scale, one line per momentum with its 95% band; plain SGD's line holds its controls too. If
  momentum were only a larger step, the lines would fall on one curve.
- lr_momentum.png: mean final validation accuracy over the (lr, momentum) grid, each
  momentum's best lr outlined.
- memory.png, time.png: the cost of the pass that trained each arm.

Colours, markers and the PNG write are shared with every figure (``figures``).
"""

import json
from pathlib import Path

import numpy as np

from ..atomic import check_writable_folder
from ..errors import SweepError
from ..training.arms import momentum_name, pairs, several_lrs
from . import metrics, statistics
from .figures import PLOTS_DIR, momentum_styles, plt, save

PANEL_COLUMNS = 4  # curve panels across, before they wrap
DIFFERENCE_COLUMNS = 3  # panels of differences.png across, before they wrap
CURVES = {
    "accuracy": [("val_accuracy", "validation accuracy"), ("test_accuracy", "test accuracy")],
    "loss": [("train_loss", "training loss (mean over epoch)"), ("test_loss", "test loss")],
}
COSTS = {
    "memory": [("cpu_peak_rss_mib", "CPU peak resident memory (MiB)"),
               ("cuda_peak_allocated_mib", "CUDA peak allocated (MiB)"),
               ("cuda_peak_reserved_mib", "CUDA peak reserved (MiB)")],
    "time": [("epoch_seconds", "seconds per epoch"),
             ("samples_per_second", "training samples per second")],
}
FIGURES = [*CURVES, "final_accuracy", "differences", "effective_step", "lr_momentum", *COSTS]


def arm_label(arm, rows=None):
    """The arm's label, and how many of its replicates diverged, if any did."""
    label = arm.label
    if rows is not None:
        diverged = int(rows["diverged"].sum())
        if diverged:
            label += f" ({diverged} of {rows['replicate'].nunique()} diverged)"
    return label


def band(rows, column):
    """Per epoch: the epochs, the mean over replicates, and the 95% interval (NaN if none)."""
    epochs, means, lows, highs = [], [], [], []
    for epoch, at in rows.groupby("epoch", sort=True):
        d = statistics.describe(at[column].tolist())
        if d["mean"] is None:
            continue
        epochs.append(epoch)
        means.append(d["mean"])
        lows.append(d["ci"][0] if d["ci"] else np.nan)
        highs.append(d["ci"][1] if d["ci"] else np.nan)
    return np.array(epochs), np.array(means), np.array(lows), np.array(highs)


def curve_panels(table):
    """Each panel's arms as (arm, role): a listed pair with mu > 0 ("arm"), its control
    ("control", dashed; a momentum-0 arm of the grid when that is its control) and momentum 0 at
    its lr ("reference", grey)."""
    arms = metrics.arms_of(table)
    compared = pairs(arms)
    controls, zeros = dict(compared["vs_control"]), dict(compared["vs_zero"])
    panels = [[(a, "arm"), *([(controls[a], "control")] if a in controls else []),
               *([(zeros[a], "reference")] if a in zeros else [])]
              for a in arms if not a.control and a.momentum != 0]
    return panels or [[(a, "arm")] for a in arms if not a.control]


def draw_curves(ax, table, column, panel, styles):
    for arm, role in panel:
        rows = table[table["arm"] == arm.name]
        colour, marker = ("grey", "o") if role == "reference" else styles[arm.momentum]
        dashed = role == "control"
        if dashed:
            colour = styles[panel[0][0].momentum][0]
        epochs, means, lows, highs = band(rows, column)
        ax.plot(epochs, means, color=colour, marker=None if dashed else marker,
                markersize=4, linewidth=1.6, linestyle="--" if dashed else "-",
                label=arm_label(arm, rows))
        ax.fill_between(epochs, lows, highs, color=colour, alpha=0.12 if dashed else 0.25,
                        linewidth=0)
        for epoch in rows.loc[rows["diverged"] == 1, "epoch"]:
            at = means[epochs <= epoch]
            ax.plot([epoch], [at[-1] if len(at) else 0], marker="x", markersize=11, mew=2.5,
                    color=colour, linestyle="none")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    if table["epoch"].max() <= 20:
        ax.set_xticks(range(1, int(table["epoch"].max()) + 1, 1 if table["epoch"].max() <= 10
                            else 2))


def curves_figure(table, rows, styles):
    """rows: [(column, title)]; a block of panels per row, one panel per momentum, wrapped at
    PANEL_COLUMNS panels across so that any number of momenta stays readable."""
    panels = curve_panels(table)
    columns = min(len(panels), PANEL_COLUMNS)
    lines = -(-len(panels) // columns)                        # grid rows per block
    fig, axes = plt.subplots(len(rows) * lines, columns,
                             figsize=(4.2 * columns + 0.6, 3.4 * len(rows) * lines),
                             squeeze=False, layout="constrained")
    for r, (column, title) in enumerate(rows):
        block = axes[r * lines:(r + 1) * lines].ravel()
        for i, (ax, panel) in enumerate(zip(block, panels)):
            draw_curves(ax, table, column, panel, styles)
            ax.set_title(f"{title}: {arm_label(panel[0][0])}", fontsize=10)
            ax.set(xlabel="epoch" if i + columns >= len(panels) else None,
                   ylabel=title if i % columns == 0 else None)
            if i:
                ax.sharey(block[0])
        for ax in block[len(panels):]:
            ax.remove()
    roles = {role for panel in panels for _, role in panel}
    legend = ["mean over replicates with 95% interval"]
    if "control" in roles:
        legend.append("dashed: plain SGD at lr/(1 - momentum)")
    if "reference" in roles:
        legend.append("grey: momentum 0 at the same lr")
    # One panel is too narrow for the line: one item per line there.
    fig.suptitle(("; " if len(panels) > 1 else "\n").join(legend), fontsize=9)
    return fig


def draw_costs(ax, table, column, title, styles):
    for arm in metrics.arms_of(table):
        rows = table[table["arm"] == arm.name].groupby("epoch")[column].mean()
        colour, marker = styles[arm.momentum]
        ax.plot(rows.index, rows.values, color=colour, marker=marker, markersize=4,
                linestyle="--" if arm.control else "-", label=arm_label(arm))
    ax.set(title=title, xlabel="epoch", ylabel=title)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)


def draw_final(ax, finals, column, title, styles):
    arms = metrics.arms_of(finals)
    several = several_lrs(arms)
    order = sorted(arms, key=lambda a: (a.lr, a.momentum, a.control))
    rng = np.random.default_rng(0)  # jitter only, fixed so the figure is reproducible
    for x, arm in enumerate(order):
        values = finals.loc[finals["arm"] == arm.name, column].dropna().to_numpy()
        colour, marker = styles[arm.momentum]
        face = "none" if arm.control else colour
        ax.scatter(x + rng.uniform(-0.12, 0.12, len(values)), values, s=18, color=colour,
                   facecolors=face, alpha=0.7, marker=marker, zorder=2)
        d = statistics.describe(values.tolist())
        if d["mean"] is not None:
            error = (None if d["ci"] is None
                     else [[d["mean"] - d["ci"][0]], [d["ci"][1] - d["mean"]]])
            ax.errorbar([x + 0.3], [d["mean"]], yerr=error, fmt="_", markersize=14, capsize=4,
                        color="black", zorder=3)
    ax.set_xticks(range(len(order)),
                  [("ctrl " if a.control else "") + momentum_name(a.momentum)
                   + (f" lr {a.lr:g}" if several else "") for a in order],
                  rotation=0 if len(order) <= 12 else 90)
    ax.set(title=title, xlabel="momentum (ctrl: SGD at lr/(1 - momentum))", ylabel=title)
    ax.grid(alpha=0.3, axis="y")


DIFFERENCES = {"vs_zero": ("minus momentum 0", "o", -0.12),
               "vs_control": ("minus its lr control", "s", 0.12),
               "tuned_vs_zero": ("at its best lr minus momentum 0 at its best", "D", 0.0)}


def draw_differences(ax, rows, styles, title):
    """rows: comparisons of one or more DIFFERENCES families, one slot per momentum."""
    momenta = sorted({c["momentum"] for c in rows})
    for family, (label, marker, shift) in DIFFERENCES.items():
        found = [c for c in rows if c["family"] == family and c["n"]]
        for i, c in enumerate(found):
            colour = styles[c["momentum"]][0]
            y = 100 * c["mean_difference"]
            error = (None if c["ci"] is None else
                     [[y - 100 * c["ci"][0]], [100 * c["ci"][1] - y]])
            ax.errorbar([momenta.index(c["momentum"]) + shift], [y], yerr=error, fmt=marker,
                        color=colour, markerfacecolor="white" if family == "vs_control"
                        else colour, capsize=4, label=label if i == 0 else None)
    ax.axhline(0, color="grey", linewidth=1)
    ax.set_xticks(range(len(momenta)), [momentum_name(m) for m in momenta])
    ax.set_xlim(-0.6, max(len(momenta), 2) - 0.4)
    ax.set(title=title, xlabel="momentum", ylabel="difference (percentage points)")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)


def differences_figure(summary, styles):
    """One panel per lr; with several lrs, one more for the tuned comparison."""
    rows = summary["comparisons"]
    lrs = sorted({c["lr"] for c in rows if c["family"] in ("vs_zero", "vs_control")})
    panels = [(f"at lr {lr:g}", [c for c in rows if c["lr"] == lr
                                 and c["family"] in ("vs_zero", "vs_control")]) for lr in lrs]
    if any(c["family"] == "tuned_vs_zero" for c in rows):
        panels.append(("with lr tuned", [c for c in rows if c["family"] == "tuned_vs_zero"]))
    panels = panels or [("no comparisons", [])]
    columns = min(len(panels), DIFFERENCE_COLUMNS)
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns + 1, 4.4 * rows),
                             squeeze=False, sharey=True, layout="constrained")
    for ax, (title, found) in zip(axes.ravel(), panels):
        draw_differences(ax, found, styles, title)
    for ax in axes.ravel()[len(panels):]:
        ax.remove()
    fig.suptitle("paired difference of final test accuracy (95% interval)", fontsize=10)
    return fig


def effective_step_figure(finals, styles):
    """Mean final validation accuracy against lr/(1 - mu), one line per momentum (the listed
    arms; plain SGD's line also holds the controls, which are plain SGD at those steps)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.6), layout="constrained")
    finals = finals.assign(line=finals["momentum"].where(finals["control"] == 0, 0.0))
    for momentum, rows in finals.groupby("line", sort=True):
        steps = sorted(rows["effective_lr"].unique())
        found = [statistics.describe(rows.loc[rows["effective_lr"] == x, "val_accuracy"]
                                     .tolist()) for x in steps]
        x = [s for s, d in zip(steps, found) if d["mean"] is not None]
        found = [d for d in found if d["mean"] is not None]
        if not found:
            continue
        colour, marker = styles.get(momentum, ("grey", "o"))  # only controls: SGD in grey
        ax.plot(x, [d["mean"] for d in found], color=colour, marker=marker, markersize=5,
                label=f"momentum {momentum_name(momentum)}"
                      + (" (and the controls)" if momentum == 0 and rows["control"].any()
                         else ""))
        ax.fill_between(x, [d["ci"][0] if d["ci"] else np.nan for d in found],
                        [d["ci"][1] if d["ci"] else np.nan for d in found], color=colour,
                        alpha=0.15, linewidth=0)
    ax.set_xscale("log")
    ax.set(xlabel="effective step lr / (1 - momentum) (log scale)",
           ylabel="mean final validation accuracy",
           title="momentum as a larger step: one curve if that is all it is\n(mean over "
                 "replicates, 95% band)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(frameon=False, fontsize=8)
    return fig


def lr_momentum_figure(summary):
    """Mean final validation accuracy over the grid, each momentum's best lr outlined."""
    listed = [a for a in summary["arms"] if not a["control"]]
    lrs = sorted({a["lr"] for a in listed})
    momenta = sorted({a["momentum"] for a in listed})
    grid = np.full((len(lrs), len(momenta)), np.nan)
    for a in listed:
        if a["val_accuracy"]["mean"] is not None:
            grid[lrs.index(a["lr"]), momenta.index(a["momentum"])] = a["val_accuracy"]["mean"]
    fig, ax = plt.subplots(figsize=(1.3 * len(momenta) + 2.4, max(3.2, 0.8 * len(lrs) + 1.8)),
                           layout="constrained")
    image = ax.imshow(100 * grid, cmap="viridis", aspect="auto", origin="lower")
    for i, j in np.ndindex(grid.shape):
        if not np.isnan(grid[i, j]):
            ax.text(j, i, f"{100 * grid[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if grid[i, j] < np.nanmean(grid) else "black")
    for a in listed:
        if a["best_lr_of_momentum"]:
            ax.add_patch(plt.Rectangle((momenta.index(a["momentum"]) - 0.5,
                                        lrs.index(a["lr"]) - 0.5), 1, 1, fill=False,
                                       edgecolor="red", linewidth=2))
    ax.set_xticks(range(len(momenta)), [momentum_name(m) for m in momenta])
    ax.set_yticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
    ax.set(xlabel="momentum", ylabel="learning rate",
           title="mean final validation accuracy (%)\nred: each momentum's best lr")
    fig.colorbar(image, ax=ax, label="%")
    return fig


def panels_figure(table, panels, draw, styles, width=6.2):
    """Panels side by side, or one above the other when each is wider than a page's half."""
    # CUDA memory columns are empty on the CPU: leave those panels out.
    panels = [(c, t) for c, t in panels
              if c in table and (table[c].notna().any() or not c.startswith("cuda"))]
    shape = (1, len(panels)) if width <= 8 else (len(panels), 1)
    fig, axes = plt.subplots(*shape, figsize=(width * shape[1], 4.4 * shape[0]), squeeze=False)
    for ax, (column, title) in zip(axes.ravel(), panels):
        draw(ax, table, column, title, styles)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right center", frameon=False, fontsize=8)
    fig.set_layout_engine("constrained")
    return fig


def render(epochs_file=metrics.EPOCHS_FILE, summary_file=metrics.SUMMARY_FILE,
           plots_dir=PLOTS_DIR):
    table = metrics.read_epochs(epochs_file)
    try:
        summary = json.loads(Path(summary_file).read_text())
    except (OSError, ValueError) as error:
        raise SweepError(f"{summary_file}: cannot read it ({error}); run `dvc repro summarize`")
    check_writable_folder(plots_dir)
    styles = momentum_styles(table["momentum"])
    figures = {name: curves_figure(table, rows, styles) for name, rows in CURVES.items()}
    finals = metrics.final_rows(table)
    # a quarter of an inch per arm's dots and interval, at least the usual width
    figures["final_accuracy"] = panels_figure(finals, CURVES["accuracy"], draw_final, styles,
                                              width=max(6.2, 0.25 * finals["arm"].nunique()))
    figures["differences"] = differences_figure(summary, styles)
    figures["effective_step"] = effective_step_figure(finals, styles)
    figures["lr_momentum"] = lr_momentum_figure(summary)
    for name, panels in COSTS.items():
        figures[name] = panels_figure(table, panels, draw_costs, styles)
        figures[name].suptitle("models trained in the same pass share its cost, so their lines "
                               "coincide", fontsize=9)
    for name, fig in figures.items():
        save(fig, Path(plots_dir) / f"{name}.png")
        print(f"plot: {Path(plots_dir) / name}.png", flush=True)


def run(p):
    """Stage `plot`."""
    render()

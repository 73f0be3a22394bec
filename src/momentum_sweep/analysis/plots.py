"""Stage `plot`: PNG figures from metrics/epochs.tsv and metrics/summary.json.

- accuracy.png, loss.png: learning curves, one panel per momentum (four across, then wrapped):
  the momentum (solid), its control (dashed, same colour) and momentum 0 (grey), each the mean
  over replicates with its 95% interval as a band. One panel per momentum keeps the bands
  readable.
- final_accuracy.png: the final accuracies, one dot per replicate, with each arm's mean and 95%
  interval; a quarter of an inch per arm, the two panels stacked when that gets wide.
- differences.png: the paired differences of final test accuracy, each momentum minus momentum 0
  and minus its control, with 95% intervals and a zero line.
- memory.png, time.png: the cost of the pass that trained each arm.

Colours, markers and the PNG write are shared with every figure (``figures``).
"""

import json
from pathlib import Path

import numpy as np

from ..atomic import check_writable_folder
from ..errors import SweepError
from ..training.arms import momentum_name
from . import metrics, statistics
from .figures import PLOTS_DIR, momentum_styles, plt, save

PANEL_COLUMNS = 4  # curve panels across, before they wrap
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
FIGURES = [*CURVES, "final_accuracy", "differences", *COSTS]


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
    """The arms of each panel: momentum m, its control, and momentum 0 as the reference."""
    arms = metrics.arms_of(table)
    zero = [a for a in arms if not a.control and a.momentum == 0.0]
    panels = [[a, *[c for c in arms if c.control and c.momentum == a.momentum], *zero]
              for a in arms if not a.control and a.momentum != 0.0]
    return panels or [zero]


def is_reference(arm, panel) -> bool:
    """Momentum 0 drawn in grey beside another momentum's curves."""
    return len(panel) > 1 and arm == panel[-1] and arm.momentum == 0.0 and not arm.control


def draw_curves(ax, table, column, arms, styles):
    for arm in arms:
        rows = table[table["arm"] == arm.name]
        colour, marker = ("grey", "o") if is_reference(arm, arms) else styles[arm.momentum]
        epochs, means, lows, highs = band(rows, column)
        ax.plot(epochs, means, color=colour, marker=None if arm.control else marker,
                markersize=4, linewidth=1.6, linestyle="--" if arm.control else "-",
                label=arm_label(arm, rows))
        ax.fill_between(epochs, lows, highs, color=colour, alpha=0.12 if arm.control else 0.25,
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
        for i, (ax, arms) in enumerate(zip(block, panels)):
            draw_curves(ax, table, column, arms, styles)
            ax.set_title(f"{title}: {arm_label(arms[0])}", fontsize=10)
            ax.set(xlabel="epoch" if i + columns >= len(panels) else None,
                   ylabel=title if i % columns == 0 else None)
            if i:
                ax.sharey(block[0])
        for ax in block[len(panels):]:
            ax.remove()
    arms = {arm for panel in panels for arm in panel}
    legend = ["mean over replicates with 95% interval"]
    if any(arm.control for arm in arms):
        legend.append("dashed: plain SGD at lr/(1 - momentum)")
    if any(is_reference(panel[-1], panel) for panel in panels):
        legend.append("grey: momentum 0")
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
    order = sorted(arms, key=lambda a: (a.momentum, a.control))
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
                  [("ctrl " if a.control else "") + momentum_name(a.momentum) for a in order],
                  rotation=0 if len(order) <= 12 else 90)
    ax.set(title=title, xlabel="momentum (ctrl: SGD at lr/(1 - momentum))", ylabel=title)
    ax.grid(alpha=0.3, axis="y")


def draw_differences(ax, summary, styles):
    families = {"vs_zero": ("minus momentum 0", "o", 0.0),
                "vs_control": ("minus its lr control", "s", 0.15)}
    arms = {a["arm"]: a for a in summary["arms"]}
    for family, (label, marker, shift) in families.items():
        rows = [c for c in summary["comparisons"] if c["family"] == family and c["n"]]
        for i, c in enumerate(rows):
            m = arms[c["arm"]]["momentum"]
            colour = styles[m][0]
            y = 100 * c["mean_difference"]
            error = (None if c["ci"] is None else
                     [[y - 100 * c["ci"][0]], [100 * c["ci"][1] - y]])
            ax.errorbar([m + shift * 0.1], [y], yerr=error, fmt=marker, color=colour,
                        markerfacecolor=colour if family == "vs_zero" else "white",
                        capsize=4, label=label if i == 0 else None)
    ax.axhline(0, color="grey", linewidth=1)
    ax.set(title="paired difference of final test accuracy (95% interval)",
           xlabel="momentum", ylabel="difference (percentage points)")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)


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
    fig, ax = plt.subplots(figsize=(7.5, 4.4), layout="constrained")
    draw_differences(ax, summary, styles)
    figures["differences"] = fig
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

"""plots/surface_*.png, from what results/surface.json holds. Each line has its colour and marker
(as in every figure); a control is drawn dashed or hollow in its momentum's colour. Means carry
their 95% intervals, drawn as every figure draws them (``analysis.figures``).

- surface_escape.png: the early training loss per arm (mean over replicates, 95% band, linear
  steps) with the escape threshold; the escape steps per arm, a dot per replicate, the mean and
  its 95% interval.
- surface_curvature.png: per checkpoint epoch, the Hessian's largest and smallest eigenvalues,
  the gradient's norm, and the largest eigenvalue over its update's stability threshold.
- surface_lines.png: the probe loss along the straight lines, mean per arm: from the initial to
  the final weights, and between final weights (each momentum and momentum 0; and its control).
- surface_barriers.png: the barriers on the lines between final weights, dots per replicate,
  mean and 95% interval, and the tolerance that separates one basin from separate minima.
"""

import numpy as np

from ..analysis import statistics
from ..analysis.figures import (LINESTYLES, PLOTS_DIR, arm_style, draw_band, draw_interval, legend,
                                line_styles,
                                plt, save)
from ..finite import finite
from ..vocabulary.arms import arm_of, in_order

__all__ = ["PLOTS_DIR", "draw", "save"]

NAMES = ["surface_escape", "surface_curvature", "surface_lines", "surface_barriers"]
CURVATURE_PANELS = [("lambda_max", "largest Hessian eigenvalue"),
                    ("lambda_min", "smallest Hessian eigenvalue"),
                    ("grad_norm", "gradient norm"),
                    ("sharpness_over_threshold", "largest eigenvalue / its stability threshold"),
                    ("noise_scale", "gradient noise scale B_simple"),
                    ("batch_sharpness_over_step_edge", "batch sharpness / 2(1-mu)/lr")]
ON_EDGE = {"sharpness_over_threshold", "batch_sharpness_over_step_edge"}  # 1: at that edge


def columns(rows):
    """Replicates x points (None allowed) as one group of values per point."""
    width = max(len(r) for r in rows)
    return [[r[i] if i < len(r) else None for r in rows] for i in range(width)]


def draw_curve(ax, x, rows, arm, styles, label):
    colour, _, _ = arm_style(arm, styles)
    found = statistics.band(columns(rows))
    draw_band(ax, x[:len(found[0])], found, colour, label, LINESTYLES[arm.kind], alpha=0.15)


def by_arm(models):
    grouped = {}
    for m in models:
        grouped.setdefault(arm_of(m), []).append(m)
    return dict(sorted(grouped.items(), key=lambda item: in_order(item[0])))


def dots_and_interval(ax, position, values, description, colour, marker, hollow=False):
    """One dot per replicate, then the mean with its 95% interval."""
    measured = finite(values)
    ax.scatter([position] * len(measured), measured, s=14, alpha=0.6, marker=marker,
               facecolors="none" if hollow else colour, edgecolors=colour)
    draw_interval(ax, position + 0.25, description, colour)


def escape_figure(result, styles):
    models, every = result["models"], None
    threshold = result["settings"]["surface"]["escape_loss"]
    fig, (curves, dots) = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained",
                                       gridspec_kw={"width_ratios": [1.6, 1]})
    groups = by_arm(models)
    for arm, found in groups.items():
        every = found[0]["train_loss_every"]
        rows = [m["early_train_loss"] for m in found]
        width = max(len(r) for r in rows)
        draw_curve(curves, every * np.arange(1, width + 1), rows, arm, styles, arm.label)
    curves.axhline(threshold, color="k", lw=0.8, ls=":", label=f"escape: loss < {threshold:g}")
    curves.set(xlabel="training steps", ylabel=f"training loss (mean of {every} steps)",
               title="Early training loss (mean over replicates, 95% band)")
    legend(curves, fontsize=7)
    arms = list(groups)
    for i, arm in enumerate(arms):
        entry = next(a for a in result["arms"] if arm_of(a) == arm)
        colour, marker, _ = arm_style(arm, styles)
        dots_and_interval(dots, i, [m["escape_steps"] for m in groups[arm]],
                          entry["escape_steps"], colour, marker, hollow=arm.control)
        if entry["never_escaped"]:
            dots.annotate(f"{entry['never_escaped']} never", (i, 0), ha="center", fontsize=7,
                          xycoords=("data", "axes fraction"), xytext=(0, 4),
                          textcoords="offset points")
    dots.set_xticks(range(len(arms)), [short(a) for a in arms], rotation=45, ha="right")
    dots.set_xlim(-0.5, len(arms) - 0.25)  # one slot per arm, however few
    dots.set(ylabel="steps until the loss is below the threshold",
             title="Escape steps (dots: replicates; bar: mean, 95% CI)")
    return fig


def short(arm) -> str:
    return f"{arm.kind} {arm.momentum:g}, {arm.listed_as} {arm.lr:g}, batch {arm.batch_size}"


def curvature_figure(result, styles):
    epochs = sorted({c["epoch"] for m in result["models"] for c in m["curvature"]})
    fig, axes = plt.subplots(1, len(CURVATURE_PANELS), figsize=(4 * len(CURVATURE_PANELS), 4),
                             layout="constrained")
    groups = by_arm(result["models"])
    for ax, (name, title) in zip(axes, CURVATURE_PANELS):
        for j, (arm, found) in enumerate(groups.items()):
            colour, marker, _ = arm_style(arm, styles)
            at = [{c["epoch"]: c[name] for c in m["curvature"]} for m in found]
            mean, low, high = statistics.band([[a.get(e) for a in at] for e in epochs])
            x = np.arange(len(epochs)) + 0.04 * (j - len(groups) / 2)  # side by side
            ax.errorbar(x, mean, yerr=[mean - low, high - mean], color=colour, marker=marker,
                        ls=LINESTYLES[arm.kind], ms=4, capsize=2, lw=1,
                        mfc="none" if arm.control else colour, label=short(arm))
        if name in ON_EDGE:
            ax.axhline(1, color="k", lw=0.8, ls=":")
        ax.set_xticks(range(len(epochs)), [str(e) for e in epochs])
        ax.set(xlabel="epoch (0: initial weights)", title=title)
    legend(axes[0], fontsize=6)
    fig.suptitle("Curvature on the probe along training; noise scale and batch sharpness on the "
                 "training images (mean over replicates, 95% CI)")
    return fig


def lines_figure(result, styles):
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), sharey=True, layout="constrained")
    points = result["settings"]["surface"]["line_points"]
    a = np.linspace(0, 1, points)
    for arm, found in by_arm(result["models"]).items():
        rows = [m["line_from_initial"]["losses"] for m in found
                if m["line_from_initial"]["losses"] is not None]
        if rows:
            draw_curve(axes[0], a, rows, arm, styles, short(arm))
    axes[0].set(title="From the initial weights:\ninitial (a = 0) to final (a = 1)", yscale="log",
                ylabel="probe loss", xlabel="a")
    for ax, family, title in ((axes[1], "vs_zero", "momentum 0"),
                            (axes[2], "vs_control", "its control")):
        grouped = {}
        for loss_line in result["lines"]:
            if loss_line["family"] == family and loss_line["losses"] is not None:
                grouped.setdefault(arm_of(loss_line), []).append(loss_line["losses"])
        for arm, rows in sorted(grouped.items(), key=lambda g: in_order(g[0])):
            draw_curve(ax, a, rows, arm, styles, short(arm))
        ax.set(title=f"Between final weights:\nmomentum (a = 0) to {title} (a = 1)", xlabel="a",
               yscale="log")
        legend(ax, fontsize=7)
    legend(axes[0], fontsize=6)
    fig.suptitle("Probe loss along straight lines between weights (mean over replicates, 95% "
                 "band)")
    return fig


def barriers_figure(result, styles):
    tolerance = result["settings"]["surface"]["barrier_tolerance"]
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    labels = []
    for i, row in enumerate(result["barriers"]):
        values = [loss_line["barrier"] for loss_line in result["lines"]
                  if (loss_line["family"], loss_line["arm"]) == (row["family"], row["arm"])]
        arm = arm_of(row)
        colour, marker, _ = arm_style(arm, styles)
        dots_and_interval(ax, i, values, row["barrier"], colour, marker,
                          hollow=row["family"] == "vs_control")
        labels.append(f"{short(arm)} vs "
                      f"{'0' if row['family'] == 'vs_zero' else 'control'}: {row['verdict']}")
    ax.axhline(tolerance, color="k", lw=0.8, ls=":", label=f"tolerance {tolerance:g}")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
    ax.set_xlim(-0.5, len(labels) - 0.25)  # one slot per line, however few
    ax.set(ylabel="barrier (probe loss)",
           title="Barriers between final weights (dots: replicates; bar: mean, 95% CI)")
    legend(ax, fontsize=7)
    return fig


def draw(result) -> dict:
    """{name: figure} of every surface figure (NAMES), drawn, not yet saved."""
    styles = line_styles({(a.momentum, a.nesterov) for a in map(arm_of, result["arms"])})
    made = {"surface_escape": escape_figure, "surface_curvature": curvature_figure,
            "surface_lines": lines_figure, "surface_barriers": barriers_figure}
    return {name: made[name](result, styles) for name in NAMES}

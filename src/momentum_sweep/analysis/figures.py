"""What every figure of the project shares: matplotlib without a display, each line's colour and
marker, the one way intervals are drawn (``draw_band``, ``draw_interval``, from
``statistics.band`` and ``statistics.describe``), and an atomic PNG write. The summarize stage, the
surface stage, the toy landscapes and the cross-experiment comparison all draw through it (the
surface stage and the toy landscapes import no other analysis figure module); it computes
nothing, so a change to the statistics reruns none of the figures that do not use them (the toy
landscapes).

A *line* is an update whatever its lr and batch size: (momentum, nesterov). Momentum is an
ordered quantity, so each momentum gets its colour from a sequential, colour-blind-safe map
(viridis, stopped before its pale yellow end); each line its own marker; Nesterov's update is
drawn dash-dotted, a control (plain SGD at a momentum's step) dashed in its momentum's colour.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..atomic import atomic_path  # noqa: E402

PLOTS_DIR = Path("plots")
MARKERS = "osD^v<>ph*"
LINESTYLES = {"momentum": "-", "nesterov": "-.", "control": "--"}


def line_styles(lines):
    """{(momentum, nesterov): (colour, marker)}, the same in every figure of a run."""
    ordered = sorted(set(lines))
    momenta = sorted({m for m, _ in ordered})
    cmap = plt.get_cmap("viridis")
    spread = max(len(momenta) - 1, 1)
    return {line: (cmap(0.9 * momenta.index(line[0]) / spread), MARKERS[i % len(MARKERS)])
            for i, line in enumerate(ordered)}


def arm_style(arm, styles):
    """(colour, marker, linestyle) of an arm: its momentum's colour and marker (a control's are
    its momentum's: it is that momentum's step), its kind's dash."""
    colour, marker = styles[(arm.momentum, arm.nesterov)]
    return colour, marker, LINESTYLES[arm.kind]


def draw_band(ax, x, found, colour, label, linestyle="-", marker=None, alpha=0.2):
    """Means (a line at ``x``) and their 95% intervals (a band): ``found`` is
    ``statistics.band``'s (mean, low, high); returns the means."""
    mean, low, high = found
    ax.plot(x, mean, color=colour, linestyle=linestyle, marker=marker, markersize=4,
            linewidth=1.5, label=label)
    ax.fill_between(x, low, high, color=colour, alpha=alpha, linewidth=0)
    return mean


def draw_interval(ax, x, description, colour, marker="_", size=12, hollow=False, label=None):
    """A mean with its 95% interval as an error bar (``statistics.describe``'s)."""
    if description["mean"] is None:
        return
    mean = description["mean"]
    low, high = description["ci"] or (mean, mean)
    ax.errorbar([x], [mean], yerr=[[mean - low], [high - mean]], fmt=marker, color=colour,
                markersize=size, capsize=4, markerfacecolor="white" if hollow else colour,
                label=label)


def legend(ax, **style):
    """The axes' legend, if anything drawn on it has a label (a run where every model diverged
    draws none)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(frameon=False, **style)


def save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def note(text, size=(7, 2.2)):
    """A figure that only says something: why a figure has nothing to draw in this run."""
    fig = plt.figure(figsize=size)
    fig.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=10)
    return fig

"""Stage `plot`: PNG comparison figures from metrics/epochs.tsv, one line per momentum.

Momentum is an ordered quantity, so each momentum gets its colour from a sequential,
colour-blind-safe map (viridis, stopped before its pale yellow end) plus its own marker, which
stays readable from 1 to 10 momenta. A diverged momentum's line ends in a cross at the epoch in
which its loss stopped being finite, and its legend entry says so.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from . import metrics  # noqa: E402
from .atomic import atomic_path  # noqa: E402
from .errors import stage_main  # noqa: E402
from .params import momentum_name  # noqa: E402

PLOTS_DIR = Path("plots")
MARKERS = "osD^v<>ph*"
FIGURES = {
    "loss": [("train_loss", "training loss (mean over epoch)"), ("test_loss", "test loss")],
    "accuracy": [("val_accuracy", "validation accuracy"), ("test_accuracy", "test accuracy")],
    "memory": [("cpu_peak_rss_mib", "CPU peak resident memory (MiB)"),
               ("cuda_peak_allocated_mib", "CUDA peak allocated (MiB)"),
               ("cuda_peak_reserved_mib", "CUDA peak reserved (MiB)")],
    "time": [("epoch_seconds", "seconds per epoch"),
             ("samples_per_second", "training samples per second")],
}
# Costs belong to a training pass, which momenta trained together share: their lines coincide.
COST_FIGURES = {"memory", "time"}


def momentum_styles(momenta):
    """{momentum: (colour, marker)}, the same in every figure of this project."""
    ordered = sorted(momenta)
    cmap = plt.get_cmap("viridis")
    spread = max(len(ordered) - 1, 1)
    return {m: (cmap(0.9 * i / spread), MARKERS[i % len(MARKERS)]) for i, m in enumerate(ordered)}


def legend_label(momentum, rows):
    diverged = rows.loc[rows["diverged"] == 1, "epoch"]
    label = f"momentum {momentum_name(momentum)}"
    return label + (f" (diverged, epoch {int(diverged.iloc[0])})" if len(diverged) else "")


def draw_panel(ax, table, column, title, styles):
    for momentum, rows in table.groupby("momentum", sort=True):
        colour, marker = styles[momentum]
        finite = rows.dropna(subset=[column])
        ax.plot(finite["epoch"], finite[column], color=colour, marker=marker, markersize=4,
                linewidth=1.6, label=legend_label(momentum, rows))
        for epoch in rows.loc[rows["diverged"] == 1, "epoch"]:
            y = finite[column].iloc[-1] if len(finite) else 0
            ax.plot([epoch], [y], marker="x", markersize=11, mew=2.5, color=colour,
                    linestyle="none")
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel(title)
    ax.grid(alpha=0.3)
    if table["epoch"].max() <= 20:
        ax.set_xticks(range(1, int(table["epoch"].max()) + 1))


def figure(table, panels, styles, from_zero=False):
    # CUDA memory columns are empty on the CPU: leave those panels out.
    panels = [(c, t) for c, t in panels
              if c in table and (table[c].notna().any() or not c.startswith("cuda"))]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.4), squeeze=False)
    for ax, (column, title) in zip(axes[0], panels):
        draw_panel(ax, table, column, title, styles)
        if from_zero:
            ax.set_ylim(bottom=0)
    if from_zero:
        fig.suptitle("momenta trained in the same pass share its cost, so their lines coincide",
                     fontsize=9)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", frameon=False)
    fig.set_layout_engine("constrained")
    return fig


def save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def render(epochs_file=metrics.EPOCHS_FILE, plots_dir=PLOTS_DIR):
    table = metrics.read_epochs(epochs_file)
    styles = momentum_styles(table["momentum"].unique())
    for name, panels in FIGURES.items():
        save(figure(table, panels, styles, from_zero=name in COST_FIGURES),
             Path(plots_dir) / f"{name}.png")
        print(f"plot: {Path(plots_dir) / name}.png", flush=True)


@stage_main
def main():
    render()


if __name__ == "__main__":
    main()

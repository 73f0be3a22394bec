"""What every figure of the project shares: matplotlib without a display, each momentum's colour
and marker, and an atomic PNG write. The plot stage, the toy landscapes and the cross-experiment
comparison import this module, not each other, so a change to the statistics reruns none of the
figures that do not use them.

Momentum is an ordered quantity, so each momentum gets its colour from a sequential,
colour-blind-safe map (viridis, stopped before its pale yellow end) and its own marker.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..atomic import atomic_path  # noqa: E402

PLOTS_DIR = Path("plots")
MARKERS = "osD^v<>ph*"


def momentum_styles(momenta):
    """{momentum: (colour, marker)}, the same in every figure of this project."""
    ordered = sorted(set(momenta))
    cmap = plt.get_cmap("viridis")
    spread = max(len(ordered) - 1, 1)
    return {m: (cmap(0.9 * i / spread), MARKERS[i % len(MARKERS)]) for i, m in enumerate(ordered)}


def save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)

"""The plot stage's PNGs: one curve and band per arm, panels that stay readable for any number of
momenta. DVC's own plots are tested in tests/dvc/test_commands.py."""

import json
import warnings

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from momentum_sweep.analysis import metrics, plots, summarize
from momentum_sweep.training.arms import Arm, control_of

from reference import identity_columns


def synthetic_epochs(momenta, replicates=3, epochs=4, diverged=None, controls=True, lrs=(0.1,)):
    """An epochs table as the summarize stage writes it; ``diverged`` (a momentum) stops in
    epoch 2 of replicate 0."""
    rng = np.random.default_rng(0)
    rows = []
    arms = [Arm(m, lr) for lr in lrs for m in momenta]
    arms += [Arm(a.momentum, a.lr, True) for a in arms if controls and a.momentum > 0
             and control_of(a, arms) is None]
    for i, arm in enumerate(arms):
        m, control = arm.momentum, arm.control
        for r in range(replicates):
            for epoch in range(1, epochs + 1):
                if m == diverged and not control and r == 0 and epoch > 2:
                    break
                blown = m == diverged and not control and r == 0 and epoch == 2
                value = None if blown else 0.9 + epoch / 100 + rng.normal(0, 0.003)
                rows.append({**identity_columns(arm, r), "epoch": epoch,
                             "train_loss": None if blown else 1 / (epoch + i),
                             "train_accuracy": value, "val_loss": None if blown else 0.2,
                             "val_accuracy": value, "test_loss": None if blown else 0.2,
                             "test_accuracy": value, "diverged": int(blown),
                             "epoch_seconds": 1.5, "samples_per_second": 1000.0,
                             "models_in_pass": len(arms) * replicates, "cpu_peak_rss_mib": 900.0})
    return pd.DataFrame(rows, columns=metrics.COLUMNS)


@pytest.mark.parametrize("momenta, diverged, lrs", [
    ([0.4], None, (0.1,)),
    ([round(0.1 * i, 1) for i in range(7)], None, (0.1,)),
    ([0.0, 0.5, 0.99], 0.99, (0.1,)),
    ([0.0, 0.5], None, (0.05, 0.1, 0.2)),
])
def test_every_figure_renders_with_one_curve_and_band_per_arm(tmp_path, momenta, diverged, lrs):
    table = synthetic_epochs(momenta, diverged=diverged, lrs=lrs)
    metrics.write_tsv(table, tmp_path / "epochs.tsv")
    (tmp_path / "summary.json").write_text(json.dumps(summarize.summary(table)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. matplotlib's "axes sizes collapsed"
        plots.render(tmp_path / "epochs.tsv", tmp_path / "summary.json", tmp_path)
    for name in plots.FIGURES:
        image = matplotlib.image.imread(tmp_path / f"{name}.png")
        assert image.ndim == 3 and image.shape[0] > 300 and image.std() > 0.01, name

    read = metrics.read_epochs(tmp_path / "epochs.tsv")
    fig = plots.curves_figure(read, plots.CURVES["accuracy"], plots.momentum_styles(momenta))
    panels = plots.curve_panels(read)
    assert len(fig.axes) == 2 * len(panels)
    for ax, panel in zip(fig.axes, panels):  # first row: validation accuracy
        lines = [line for line in ax.get_lines() if line.get_label()[0] in "mc"]
        assert len(lines) == len(panel) and len(ax.collections) == len(panel)  # one band each
        for line, (arm, role) in zip(lines, panel):
            assert (line.get_linestyle() == "--") == (role == "control")
            expected = read[read["arm"] == arm.name].groupby("epoch")["val_accuracy"].mean()
            assert np.allclose(line.get_ydata(), expected.dropna())
    crosses = [line for ax in fig.axes for line in ax.get_lines() if line.get_marker() == "x"]
    assert bool(crosses) == (diverged is not None)


def test_forty_momenta_wrap_into_panels_of_a_readable_size():
    """Laid out, not drawn (drawing 39 panels takes seconds); the layout is what collapsed."""
    momenta = [round(0.0245 * i, 4) for i in range(40)]
    table = synthetic_epochs(momenta, replicates=2, epochs=2)
    styles = plots.momentum_styles(momenta)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. matplotlib's "constrained_layout not applied"
        figures = [plots.curves_figure(table, plots.CURVES["accuracy"][:1], styles),
                   plots.panels_figure(metrics.final_rows(table), plots.CURVES["accuracy"],
                                       plots.draw_final, styles, width=0.25 * 79)]
        for fig in figures:
            fig.get_layout_engine().execute(fig)
    assert len(figures[0].axes) == 39
    for fig in figures:
        width, height = fig.get_size_inches()
        for ax in fig.axes:
            box = ax.get_position()                              # in fractions of the figure
            assert box.width * width > 2.5 and box.height * height > 1.8
        plots.plt.close(fig)


def test_one_momentum_without_momentum_0_is_drawn_with_its_control():
    """`dvc exp run -S momentum=0.4`: no momentum 0 to compare with, but the control is there."""
    panels = plots.curve_panels(synthetic_epochs([0.4]))
    assert panels == [[(Arm(0.4, 0.1), "arm"), (Arm(0.4, 0.1, control=True), "control")]]


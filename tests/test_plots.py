"""The summarize stage's figures, checked for what they draw: one line and band per arm, the
panels and their labels, the intervals, the outlined choices; for either measure, and readable
for any number of momenta. DVC's own plots are tested in tests/dvc/test_commands.py."""

import warnings

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from matplotlib.patches import Rectangle

from momentum_sweep.analysis import plots, summarize
from momentum_sweep.analysis.figures import line_styles, save
from momentum_sweep.vocabulary import schema
from momentum_sweep.vocabulary.arms import Arm, control_of
from momentum_sweep.vocabulary.measure import Measure

from reference import identity_columns
from test_steps import planted_table


def synthetic_epochs(momenta, replicates=3, n_epochs=4, diverged=None, controls=True,
                     lrs=(0.1,)):
    """An epochs table as the summarize stage writes it; ``diverged`` (a momentum) stops in
    epoch 2 of replicate 0."""
    rng = np.random.default_rng(0)
    rows = []
    arms = [Arm(m, lr, 20) for lr in lrs for m in momenta]
    arms += [Arm(a.momentum, a.lr, 20, control=True) for a in arms if controls and a.momentum > 0
             and control_of(a, arms) is None]
    for i, arm in enumerate(arms):
        m, control = arm.momentum, arm.control
        for r in range(replicates):
            for epoch in range(1, n_epochs + 1):
                if m == diverged and not control and r == 0 and epoch > 2:
                    break
                blown = m == diverged and not control and r == 0 and epoch == 2
                value = None if blown else 0.9 + epoch / 100 + rng.normal(0, 0.003)
                rows.append({**identity_columns(arm, r, 100 * n_epochs), "step": 100 * epoch,
                             "epoch": epoch, "examples": 2000 * epoch,
                             "train_loss": None if blown else 1 / (epoch + i),
                             "train_accuracy": value, "val_loss": None if blown else 0.2,
                             "val_accuracy": value, "test_loss": None if blown else 0.2,
                             "test_accuracy": value, "diverged": int(blown),
                             "stopped": ("diverged" if blown else "budget")
                             if blown or epoch == n_epochs else None,
                             "train_seconds": 1.5, "evaluation_seconds": 0.2,
                             "samples_per_second": 1000.0,
                             "models_in_pass": len(arms) * replicates, "cpu_peak_rss_mib": 900.0})
    return pd.DataFrame(rows, columns=schema.COLUMNS)


def drawn(table):
    plots.plt.close("all")  # the figures earlier tests left open
    summary = summarize.summary(table)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. matplotlib's "axes sizes collapsed"
        return summary, plots.figures(table, summary)


def labelled_lines(ax):
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


@pytest.mark.parametrize("momenta, diverged, lrs", [
    ([0.0, 0.4], None, (0.1,)),
    ([round(0.1 * i, 1) for i in range(7)], None, (0.1,)),
    ([0.0, 0.5, 0.99], 0.99, (0.1,)),
    ([0.0, 0.5], None, (0.05, 0.1, 0.2)),
])
def test_the_curves_draw_one_line_and_band_per_arm_of_each_panel(momenta, diverged, lrs, tmp_path):
    table = synthetic_epochs(momenta, diverged=diverged, lrs=lrs)
    summary, figures = drawn(table)
    assert set(figures) == set(plots.FIGURES)
    panels = plots.curve_panels(table, summary, Measure(None))
    fig = figures["accuracy"]
    assert len(fig.axes) == 2 * len(panels)  # validation, then test accuracy
    for ax, (title, panel) in zip(fig.axes, panels):
        lines = labelled_lines(ax)
        assert len(lines) == len(panel) and len(ax.collections) == len(panel)  # one band each
        assert title in ax.get_title()
        for line, (arm, role) in zip(lines, panel):
            assert line.get_label().startswith(arm.label)
            assert (line.get_linestyle() == "--") == (role == "control")
            assert (line.get_color() == "grey") == (role == "reference")
            expected = table[table["arm"] == arm.name].groupby("epoch")["val_accuracy"].mean()
            assert np.allclose(line.get_ydata(), expected.dropna())
    crosses = [line for ax in fig.axes for line in ax.get_lines() if line.get_marker() == "x"]
    assert bool(crosses) == (diverged is not None)
    if len(momenta) == 2:  # and every figure writes a PNG with something in it
        for name, figure in figures.items():
            save(figure, tmp_path / f"{name}.png")
            image = matplotlib.image.imread(tmp_path / f"{name}.png")
            assert image.ndim == 3 and image.std() > 0.01, name


def test_the_differences_draw_each_comparison_with_its_interval():
    table = synthetic_epochs([0.0, 0.2, 0.5], lrs=(0.05, 0.1))
    summary, figures = drawn(table)
    axes = figures["differences"].axes
    assert [ax.get_title() for ax in axes] == ["batch 20, lr 0.05", "batch 20, lr 0.1",
                                               "batch 20, with lr tuned"]
    for ax, (_, rows) in zip(axes, plots.difference_panels(summary)):
        bars = [c for c in ax.containers]  # one error bar per comparison
        assert len(bars) == len(rows)
        means = sorted(bar.lines[0].get_ydata()[0] for bar in bars)
        assert means == pytest.approx(sorted(100 * r["mean_difference"] for r in rows))


def test_the_grid_figures_outline_each_lines_best_lr_and_plot_the_effective_step():
    table = synthetic_epochs([0.0, 0.5], lrs=(0.05, 0.1, 0.2), controls=False)
    summary, figures = drawn(table)
    [ax] = [a for a in figures["lr_momentum"].axes if a.get_title()]
    outlined = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(outlined) == 2  # each line's best lr
    image = ax.get_images()[0].get_array()
    assert image.shape == (3, 2)  # lrs x lines
    [ax] = [a for a in figures["effective_step"].axes if a.get_title()]
    assert [line.get_label() for line in labelled_lines(ax)] == ["momentum 0.0", "momentum 0.5"]
    steps = sorted(labelled_lines(ax)[1].get_xdata())
    assert steps == pytest.approx([0.1, 0.2, 0.4])  # lr/(1 - 0.5)


def test_with_a_target_the_figures_draw_steps_against_batch_size_and_ratios_with_intervals():
    summary, figures = drawn(planted_table())
    [ax] = figures["batch_size"].axes
    labels = [line.get_label() for line in labelled_lines(ax)]
    assert labels == ["momentum 0.0", "momentum 0.9",
                      "perfect scaling from plain SGD's smallest batch"]
    assert ax.get_yscale() == "log" and ax.get_xscale() == "log"
    sgd = labelled_lines(ax)[0]
    assert list(sgd.get_xdata()) == [20, 1000]
    tuned = [a for a in summary["arms"] if a["best_lr_of_line"] and a["momentum"] == 0.0]
    assert list(sgd.get_ydata()) == pytest.approx([a["steps_counted"]["mean"] for a in tuned])
    titles = [ax.get_title() for ax in figures["differences"].axes]
    assert len(titles) == 2 and titles[0].startswith("tuned plain SGD's steps")
    for ax in figures["differences"].axes:
        assert ax.get_yscale() == "log"
        assert any(line.get_ydata()[0] == 1 for line in ax.get_lines())  # the 1 line
    [grid] = [a for a in figures["lr_momentum"].axes if a.get_title() == "batch 1000"]
    edges = [p.get_edgecolor() for p in grid.patches if isinstance(p, Rectangle)]
    assert len(edges) == 2 and (1.0, 0.6470588235294118, 0.0, 1.0) in edges  # orange: on edge


def test_forty_momenta_wrap_into_panels_of_a_readable_size():
    """Laid out, not drawn (drawing 39 panels takes seconds); the layout is what collapsed."""
    momenta = [round(0.0245 * i, 4) for i in range(40)]
    table = synthetic_epochs(momenta, replicates=2, n_epochs=2)
    summary = summarize.summary(table)
    styles = line_styles([Arm.from_name(a).line for a in table["arm"].unique()])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. matplotlib's "constrained_layout not applied"
        figures = [plots.curves_figure(table, summary, Measure(None),
                                       plots.CURVES["accuracy"][:1], styles),
                   plots.final_figure(table, styles)]
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
    """An experiment on one momentum whose momentum 0 is not in the table: its control is."""
    table = synthetic_epochs([0.4])
    assert plots.curve_panels(table, summarize.summary(table), Measure(None)) == [
        (Arm(0.4, 0.1, 20).label, [(Arm(0.4, 0.1, 20), "arm"),
                                    (Arm(0.4, 0.1, 20, control=True), "control")])]

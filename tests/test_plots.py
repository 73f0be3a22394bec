"""The plot stage's PNGs and DVC's plots through the repository's Vega-Lite template."""

import json
import re

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import vl_convert

from conftest import dvc, git, update_params
from momentum_sweep import metrics, plots


def synthetic_epochs(momenta, epochs=4, diverged=None):
    """An epochs table as the train stage writes it; ``diverged`` stops in epoch 2."""
    rows = []
    for i, m in enumerate(momenta):
        for epoch in range(1, epochs + 1):
            if m == diverged and epoch > 2:
                break
            blown = m == diverged and epoch == 2
            loss = None if blown else 1.0 / (epoch + i)
            rows.append({"momentum": m, "epoch": epoch, "train_loss": loss, "test_loss": loss,
                         "train_accuracy": 0.9, "val_accuracy": None if blown else 0.9 + i / 100,
                         "val_loss": loss, "test_accuracy": None if blown else 0.9 + i / 200,
                         "diverged": int(blown), "epoch_seconds": 1.5 + i,
                         "samples_per_second": 1000.0 * (i + 1), "models_in_pass": len(momenta),
                         "cpu_peak_rss_mib": 900.0 + i})
    return pd.DataFrame(rows, columns=metrics.COLUMNS)


@pytest.mark.parametrize("momenta, diverged", [
    ([0.4], None),
    ([0.0, 0.1, 0.2, 0.4, 0.5], None),
    ([round(0.1 * i, 1) for i in range(10)], None),
    ([0.0, 0.5, 0.99], 0.99),
])
def test_every_figure_has_one_line_per_momentum_with_its_data(tmp_path, momenta, diverged):
    table = synthetic_epochs(momenta, diverged=diverged)
    table.to_csv(tmp_path / "epochs.tsv", sep="\t", index=False)
    plots.render(tmp_path / "epochs.tsv", tmp_path)
    for name in plots.FIGURES:
        image = matplotlib.image.imread(tmp_path / f"{name}.png")
        assert image.ndim == 3 and image.shape[0] > 300 and image.std() > 0.01

    styles = plots.momentum_styles(table["momentum"].unique())
    assert len({colour for colour, _ in styles.values()}) == len(momenta)
    figure = plots.figure(metrics.read_epochs(tmp_path / "epochs.tsv"), plots.FIGURES["loss"],
                          styles)
    ax = figure.axes[0]
    lines = [line for line in ax.get_lines() if line.get_label().startswith("momentum")]
    assert len(lines) == len(momenta)
    for line, m in zip(lines, sorted(momenta)):
        expected = table[(table["momentum"] == m) & table["train_loss"].notna()]
        assert np.allclose(line.get_ydata(), expected["train_loss"])
        assert ("diverged, epoch 2" in line.get_label()) == (m == diverged)
    crosses = [line for line in ax.get_lines() if line.get_marker() == "x"]
    assert len(crosses) == (1 if diverged is not None else 0)


def rendered_lines(spec):
    """How many lines Vega-Lite draws for a filled spec, rendered offline to SVG."""
    svg = vl_convert.vegalite_to_svg(json.dumps(spec))
    return len(re.findall(r'aria-roledescription="line mark"', svg))


def test_dvc_plots_show_and_diff_draw_one_line_per_momentum_and_revision(repo):
    update_params(repo, {"momentum": [0.0, 0.4]})
    dvc(repo, "repro", "train")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "two momenta")

    shown = json.loads(dvc(repo, "plots", "show", "--json").stdout)["data"]
    spec = shown["test_accuracy"][0]["content"]
    points = spec["data"]["values"]
    assert {p["momentum"] for p in points} == {"0.0", "0.4"}
    assert {p["rev"] for p in points} == {"workspace"}
    assert spec["encoding"]["color"]["field"] == "momentum"
    assert rendered_lines(spec) == 2
    assert vl_convert.vegalite_to_png(json.dumps(spec))[:4] == b"\x89PNG"

    update_params(repo, {"momentum": [0.0, 0.4, 0.5]})
    dvc(repo, "repro", "train")
    diff = json.loads(dvc(repo, "plots", "diff", "HEAD", "--json").stdout)["data"]
    for name in ("train_loss", "test_loss", "val_accuracy", "test_accuracy"):
        spec = diff[name][0]["content"]
        points = spec["data"]["values"]
        groups = {(p["rev"], p["momentum"]) for p in points}
        assert groups == {("HEAD", "0.0"), ("HEAD", "0.4"), ("workspace", "0.0"),
                          ("workspace", "0.4"), ("workspace", "0.5")}
        assert spec["encoding"]["strokeDash"]["field"] == "rev"
        assert rendered_lines(spec) == 5

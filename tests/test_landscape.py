"""The landscape stage: PyTorch's update rule, and what the default surfaces show."""

import json

import numpy as np
import pytest
import torch

from clones import ROOT
from momentum_sweep import landscape, params
from momentum_sweep.vocabulary.arms import momentum_name

DEFAULT = params.load(ROOT / "params.yaml")


def with_momenta(momenta):
    return DEFAULT.model_copy(update={"momentum": momenta})


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9])
def test_update_rule_is_torch_optim_sgd(momentum):
    surface = landscape.minima_surface(0.3)
    loss = surface.loss
    path, _ = landscape.heavy_ball(surface, [2.2, 0.5], 0.05, momentum, 50)
    point = torch.tensor([2.2, 0.5], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.SGD([point], lr=0.05, momentum=momentum)
    for step in range(50):
        optimizer.zero_grad()
        loss(point[0], point[1]).backward()
        optimizer.step()
        np.testing.assert_allclose(path[step + 1], point.detach().numpy(), rtol=1e-12)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    out = tmp_path_factory.mktemp("landscape")
    return landscape.landscape(DEFAULT, plots_dir=out, out=out / "landscape.json"), out


def test_saddle_momentum_zero_lingers_and_larger_momenta_leave_sooner(table):
    saddle = table[0]["saddle"]
    steps = [saddle[momentum_name(m)]["escape_step"] for m in DEFAULT.momenta]
    assert all(saddle[k]["escaped"] for k in saddle)
    assert steps == sorted(steps, reverse=True) and len(set(steps)) == len(steps)
    assert saddle["0.0"]["steps_near_saddle"] > 1.5 * saddle["0.5"]["steps_near_saddle"]


def test_minima_small_momentum_is_caught_and_enough_reaches_the_global_minimum(table):
    ends = {m: row["ends_in"] for m, row in table[0]["minima"].items()}
    assert ends == {"0.0": "local", "0.1": "local", "0.2": "local", "0.4": "global",
                    "0.5": "global"}


def test_too_much_momentum_overshoots_the_global_minimum():
    settings = DEFAULT.landscape.minima
    path, losses = landscape.heavy_ball(landscape.minima_surface(settings.tilt), settings.start,
                                        settings.lr, 0.9, settings.steps)
    outcome = landscape.minima_outcome(path, losses, settings.tilt)
    assert outcome["passed_global_minimum"] and outcome["ends_in"] == "local"


def test_table_agrees_with_its_trajectories_and_pictures_exist(table):
    rows, out = table
    assert json.loads((out / "landscape.json").read_text()) == rows
    settings = DEFAULT.landscape
    for m in DEFAULT.momenta:
        path, losses = landscape.heavy_ball(landscape.SADDLE, settings.saddle.start,
                                            settings.saddle.lr, m, settings.saddle.steps)
        row = rows["saddle"][momentum_name(m)]
        assert row["final_loss"] == pytest.approx(losses[-1])
        assert losses[row["escape_step"]] < landscape.ESCAPE_LOSS <= losses[row["escape_step"] - 1]
    global_x, local_x = landscape.minima_of(settings.minima.tilt)
    for m, row in rows["minima"].items():
        target = global_x if row["ends_in"] == "global" else local_x
        assert abs(row["final_point"][0] - target) < 0.05 and abs(row["final_point"][1]) < 0.05
    for name in ("landscape_saddle", "landscape_minima"):
        assert (out / f"{name}.png").stat().st_size > 10_000


def test_a_path_that_leaves_the_float_range_is_reported_as_diverged(tmp_path):
    table = landscape.landscape(with_momenta([0.0, 0.999]), plots_dir=tmp_path,
                                out=tmp_path / "landscape.json")
    text = (tmp_path / "landscape.json").read_text()
    assert json.loads(text) == table and "NaN" not in text and "Infinity" not in text
    for surface in ("saddle", "minima"):
        assert table[surface]["0.0"]["diverged"] is False
    diverged = [s for s in ("saddle", "minima") if table[s]["0.999"]["diverged"]]
    assert diverged, table
    for surface in diverged:
        row = table[surface]["0.999"]
        assert row["diverged_step"] > 0 and row["final_loss"] is None
        assert row.get("ends_in") is None and row.get("escaped") is None


def test_the_figure_draws_each_momentums_trajectory_and_loss_as_computed():
    settings = DEFAULT.landscape.saddle
    runs = landscape.run_surface(landscape.SADDLE, settings, [0.0, 0.9])
    fig = landscape.figure(runs, landscape.SADDLE.loss, landscape.SADDLE_EXTENT, "saddle",
                           lambda m: f"outcome of {m}")
    contour_ax, loss_ax = fig.axes[:2]
    for m, (trajectory, losses) in runs.items():
        label = f"momentum {momentum_name(m)}: outcome of {m}"
        [path] = [line for line in contour_ax.get_lines() if line.get_label() == label]
        np.testing.assert_array_equal(path.get_xydata(), trajectory)
        [curve] = [line for line in loss_ax.get_lines() if line.get_label() == label]
        np.testing.assert_array_equal(curve.get_ydata(), losses)
        np.testing.assert_array_equal(curve.get_xdata(), np.arange(len(losses)))
    landscape.plt.close(fig)

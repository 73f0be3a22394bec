"""Stage `landscape`: the notebook's two claims about momentum, on 2-D surfaces.

- saddle: f = x^2/2 + y^4/4 - y^2/2 has a saddle at (0, 0), where the gradient vanishes, and
  minima at (0, +-1) with f = -0.25. Started next to the saddle, plain gradient descent lingers
  on its flat top; momentum builds up velocity and leaves it sooner.
- minima: f = (x^2 - 1)^2 + tilt*x + y^2 is a double well: a shallow local minimum at x > 0 and
  the deeper global one at x < 0. Started outside the local one, too little momentum is caught
  there, enough carries over the barrier, and too much can overshoot the global one as well.

Every momentum in params.yaml runs PyTorch's SGD rule (buf = mu*buf + grad; p -= lr*buf). A
path that leaves the floating-point range (momentum close to 1 with a large step) is reported as
diverged at the step where it did, not as a minimum it never reached.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .analysis.figures import PLOTS_DIR, legend, line_styles, plt, save
from .atomic import write_json
from .vocabulary.arms import momentum_name

LANDSCAPE_FILE = Path("results/landscape.json")
ESCAPE_LOSS = -0.1      # the saddle is at f = 0, the minima at -0.25: below -0.1 means "left it"
NEAR_SADDLE = 0.1       # distance from (0, 0) counted as "at the saddle"


@dataclass(frozen=True)
class Surface:
    """A 2-D loss and its gradient, both written out: numpy arrays or torch tensors alike."""
    loss: Callable
    gradient: Callable


SADDLE = Surface(loss=lambda x, y: x ** 2 / 2 + y ** 4 / 4 - y ** 2 / 2,
                 gradient=lambda x, y: (x, y ** 3 - y))


def minima_surface(tilt) -> Surface:
    return Surface(loss=lambda x, y: (x ** 2 - 1) ** 2 + tilt * x + y ** 2,
                   gradient=lambda x, y: (4 * x * (x ** 2 - 1) + tilt, 2 * y))


def heavy_ball(surface, start, lr, momentum, steps):
    """Trajectory [n + 1, 2] and losses of SGD with momentum, PyTorch's update rule; n = steps,
    or fewer if the path stops being finite (the last point is then the first non-finite one)."""
    point = np.array(start, dtype=np.float64)
    buffer = None
    path = [point]
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            grad = np.array(surface.gradient(*point))
            buffer = grad if buffer is None else momentum * buffer + grad
            point = point - lr * buffer
            path.append(point)
            if not (np.isfinite(point).all() and np.isfinite(surface.loss(*point))):
                break
        path = np.array(path)
        return path, surface.loss(path[:, 0], path[:, 1])


def divergence(path, losses):
    """The step at which the path stopped being finite, or None."""
    bad = ~(np.isfinite(path).all(axis=1) & np.isfinite(losses))
    return int(np.argmax(bad)) if bad.any() else None


def minima_of(tilt):
    """x of the two minima of (x^2-1)^2 + tilt*x along y = 0: (global, local)."""
    roots = sorted(r.real for r in np.roots([4, 0, -4, tilt]) if abs(r.imag) < 1e-9)
    return roots[0], roots[2]


def diverged_outcome(step):
    return {"diverged": True, "diverged_step": step, "final_loss": None, "final_point": None}


def saddle_outcome(path, losses):
    step = divergence(path, losses)
    if step is not None:
        return {"escaped": None, "escape_step": None, "steps_near_saddle": None,
                **diverged_outcome(step)}
    below = np.nonzero(losses < ESCAPE_LOSS)[0]
    near = np.linalg.norm(path, axis=1) < NEAR_SADDLE
    return {"escaped": bool(len(below)), "escape_step": int(below[0]) if len(below) else None,
            "steps_near_saddle": int(near.sum()), "diverged": False, "diverged_step": None,
            "final_loss": float(losses[-1]), "final_point": [float(v) for v in path[-1]]}


def minima_outcome(path, losses, tilt):
    step = divergence(path, losses)
    if step is not None:
        return {"ends_in": None, "passed_global_minimum": None, **diverged_outcome(step)}
    global_x, local_x = minima_of(tilt)
    final_x = path[-1, 0]
    ends_in = "global" if abs(final_x - global_x) < abs(final_x - local_x) else "local"
    return {"ends_in": ends_in, "passed_global_minimum": bool(path[:, 0].min() < global_x),
            "diverged": False, "diverged_step": None,
            "final_loss": float(losses[-1]), "final_point": [float(v) for v in path[-1]]}


def run_surface(surface, settings, momenta):
    return {m: heavy_ball(surface, settings.start, settings.lr, m, settings.steps)
            for m in momenta}


# The (x, y) ranges each figure shows: the start, the minima and the saddle.
SADDLE_EXTENT = [(-0.4, 0.4), (-0.3, 1.3)]
MINIMA_EXTENT = [(-1.8, 2.4), (-0.8, 0.8)]


def figure(runs, loss, extent, title, outcome_text):
    """A surface's contours with each momentum's trajectory ({momentum: (trajectory [steps + 1,
    2], losses [steps + 1])}, drawn where finite), and the loss along each."""
    styles = {m: style for (m, _), style in line_styles([(m, False) for m in runs]).items()}
    fig, (contour_ax, loss_ax) = plt.subplots(1, 2, figsize=(12.5, 4.8))
    xs, ys = np.meshgrid(np.linspace(*extent[0], 300), np.linspace(*extent[1], 300))
    zs = loss(xs, ys)
    # Levels over the lower part of the surface, where the minima and the saddle are.
    levels = np.linspace(zs.min(), np.percentile(zs, 60), 25)
    contour_ax.contourf(xs, ys, zs, levels=levels, cmap="Greys_r", alpha=0.55, extend="max")
    contour_ax.contour(xs, ys, zs, levels=levels, colors="grey", linewidths=0.4)
    for m, (trajectory, losses) in runs.items():
        colour, marker = styles[m]
        label = f"momentum {momentum_name(m)}: {outcome_text(m)}"
        finite = np.isfinite(trajectory).all(axis=1) & np.isfinite(losses)
        contour_ax.plot(trajectory[finite, 0], trajectory[finite, 1], color=colour,
                        linewidth=1.6, label=label)
        last = trajectory[finite][-1]
        contour_ax.plot(*last, marker=marker if finite.all() else "x", color=colour,
                        markersize=8, markeredgecolor="black" if finite.all() else colour)
        loss_ax.plot(np.nonzero(finite)[0], losses[finite], color=colour, linewidth=1.6,
                     label=label)
    start = next(iter(runs.values()))[0][0]
    contour_ax.plot(*start, marker="*", color="black", markersize=13, label="start")
    contour_ax.set(xlim=extent[0], ylim=extent[1], xlabel="x", ylabel="y", title=title)
    loss_ax.set(xlabel="step", ylabel="loss f(x, y)", title="loss along each trajectory")
    loss_ax.set_yscale("symlog", linthresh=1)  # linear near the minima, compressed above
    loss_ax.grid(alpha=0.3)
    legend(loss_ax, fontsize=8, loc="upper right")
    fig.set_layout_engine("constrained")
    return fig


def landscape(p, plots_dir=PLOTS_DIR, out=LANDSCAPE_FILE):
    settings = p.landscape
    tilt = settings.minima.tilt
    minima = minima_surface(tilt)
    saddle_runs = run_surface(SADDLE, settings.saddle, p.momenta)
    minima_runs = run_surface(minima, settings.minima, p.momenta)
    table = {
        "saddle": {momentum_name(m): saddle_outcome(*r) for m, r in saddle_runs.items()},
        "minima": {momentum_name(m): minima_outcome(*r, tilt) for m, r in minima_runs.items()},
    }

    def saddle_text(m):
        row = table["saddle"][momentum_name(m)]
        if row["diverged"]:
            return f"diverged at step {row['diverged_step']}"
        return f"left after {row['escape_step']} steps" if row["escaped"] else "stuck"

    def minima_text(m):
        row = table["minima"][momentum_name(m)]
        if row["diverged"]:
            return f"diverged at step {row['diverged_step']}"
        return f"ends in {row['ends_in']} minimum"

    save(figure(saddle_runs, SADDLE.loss, SADDLE_EXTENT,
                "saddle point at (0, 0): f = x²/2 + y⁴/4 − y²/2", saddle_text),
         Path(plots_dir) / "landscape_saddle.png")
    save(figure(minima_runs, minima.loss, MINIMA_EXTENT,
                f"local and global minimum: f = (x²−1)² + {tilt}·x + y²", minima_text),
         Path(plots_dir) / "landscape_minima.png")
    write_json(out, table)
    for surface, rows in table.items():
        for m, row in rows.items():
            print(f"landscape {surface} momentum {m}: " + ", ".join(
                f"{k} {v}" for k, v in row.items() if k != "final_point"), flush=True)
    return table


def run(p):
    """Stage `landscape`."""
    landscape(p)

"""Why the answer changes with the batch: the gradient noise scale and each update's stability
limit, measured on the tuned models of experiments joined by momentum-sweep-compare.

    momentum-sweep-dynamics SUMMARY [--repo .] [--names NAME ...] [--out dynamics]

SUMMARY is a joined steps summary (momentum-sweep-compare's summary.json). For each (batch
size, line) its tuned arm's models (``best_lr_of_line``), read from the experiments that trained
them through DVC's Python API, are measured with the surface stage's measures on the probe of
the fold each validates on (surface.probe_size training images, never validation ones):

- the gradient noise scale B_simple (``measures.noise_scale``, on every training image of the
  fold) at the initial weights and where the model reached the target;
- the largest Hessian eigenvalue there (``measures.curvature``: Lanczos on exact products) over
  its update's stability limit (``Arm.sharpness_limit``: 2/lr, 2(1 + mu)/lr, Nesterov's 2(1 +
  mu)/((1 + 2 mu) lr)): at 1 the step sits at its edge of stability.

Each figure per tuned arm is described over replicates (a 95% t-interval; the noise scale's on
the log scale), and plain SGD's B_simple at the target is set beside its fitted B_crit. Writes
<out>/dynamics.json and <out>/stability.png. Run in the repository, after `dvc repro flatten`
(the probe's images).
"""

import argparse
import io
import json
import sys
from pathlib import Path

import torch

from .. import params
from ..atomic import check_writable_folder, write_json
from ..data import splits as data_splits
from ..errors import SweepError
from ..analysis import statistics
from ..analysis.compare import check_repository, experiments
from ..analysis.figures import legend, line_styles, plt, save
from ..vocabulary.arms import arm_of, line_name
from . import measures
from .cache import weights_digest

FIGURES = ("noise_scale_initial", "noise_scale_at_target", "lambda_max_at_target",
           "sharpness_over_limit_at_target")
GEOMETRIC = ("noise_scale_initial", "noise_scale_at_target")
RULE = ("noise scale B_simple = tr(Sigma)/|G|^2 on the fold's training images (per-example "
        "gradients, unbiased estimators), at the initial weights and where each tuned model "
        "reached the target; "
        "sharpness over limit = the Hessian's largest eigenvalue there (Lanczos) over its "
        "update's stability limit on a quadratic (2/lr; 2(1 + mu)/lr heavy-ball; 2(1 + mu)/((1 "
        "+ 2 mu) lr) Nesterov's): 1 is the edge of stability; intervals: 95% t-intervals over "
        "replicates (the noise scale's on the log scale)")


def read_model(fs, folder) -> dict:
    """A model's record, initial and final weights, from a DVC filesystem at an experiment."""
    def load(name):
        with fs.open(f"{folder}/{name}", "rb") as f:
            return torch.load(io.BytesIO(f.read()), weights_only=True)

    with fs.open(f"{folder}/record.json", "r") as f:
        record = json.load(f)
    return {"record": record, "initial": load("checkpoints.pt")[0], "final": load("model.pt")}


def tuned_folders(summary) -> list:
    """[(arm, replicate)] of every tuned arm's models in a joined summary."""
    tuned = {a["arm"] for a in summary["arms"] if a["best_lr_of_line"]}
    return sorted({(m["arm"], m["replicate"]) for m in summary["models"] if m["arm"] in tuned})


def filesystems(repo, names) -> list:
    from dvc.api import DVCFileSystem

    return [DVCFileSystem(repo, rev=row["rev"]) for row in experiments(repo, names)
            if row.get("State") in (None, "Success")]


class Probes:
    """Each fold's probe (the curvature's) and training images (the noise scale's), loaded
    once."""

    def __init__(self, p):
        self.p, self.found, self.initial = p, {}, {}
        self.folds = data_splits.load_folds(p.train, "cpu")

    def initial_noise(self, state, hidden, training):
        """The noise scale at initial weights, once per set of them (every arm of a replicate
        starts from the same)."""
        digest = weights_digest(state)
        if digest not in self.initial:
            self.initial[digest] = noise(measures.network(state, hidden, "cpu"), training)
        return self.initial[digest]

    def of(self, fold):
        if fold not in self.found:
            probe = data_splits.load_probe(
                data_splits.probe_indices(self.p.train, self.p.surface.probe_size, fold), "cpu")
            self.found[fold] = (data_splits.scaled(probe.images), probe.labels,
                                self.folds.training(fold))
        return self.found[fold]


def measure(model, arm, p, probes) -> dict:
    """A tuned model's figures (FIGURES)."""
    images, labels, training = probes.of(model["record"]["inputs"]["fold"])
    hidden = model["record"]["inputs"]["model"]["hidden"]  # the experiment's network
    found = {"noise_scale_initial": probes.initial_noise(model["initial"], hidden, training)}
    if model["record"]["stopped"]["reason"] != "target":
        return {**found, **dict.fromkeys(FIGURES[1:])}
    final = measures.network(model["final"], hidden, "cpu")
    high = measures.curvature(final, images, labels, p.surface.lanczos_tol,
                              p.surface.lanczos_maxiter)["lambda_max"]
    return {**found,
            "noise_scale_at_target": noise(final, training),
            "lambda_max_at_target": high,
            "sharpness_over_limit_at_target": None if high is None
            else high / arm.sharpness_limit}


def noise(net, training):
    return measures.noise_scale(net, training.images, training.labels)["noise_scale"]


def describe(name, values) -> dict:
    return (statistics.describe_geometric if name in GEOMETRIC else statistics.describe)(values)


def dynamics(summary, repo=".", names=None, p=None) -> dict:
    """The measurements of every tuned arm of ``summary``, described over replicates."""
    check_repository(repo)
    p = p or params.load(Path(repo) / params.PARAMS_FILE)
    wanted = tuned_folders(summary)
    found, probes = {}, Probes(p)
    for fs in filesystems(repo, names):
        here = {Path(path).name for path in fs.ls("models", detail=False)}
        for name, replicate in wanted:
            folder = f"models/{name}/replicate_{replicate}"
            if name in here and (name, replicate) not in found and fs.exists(folder):
                found[(name, replicate)] = measure(read_model(fs, folder), arm_of({"arm": name}),
                                                   p, probes)
                print(f"dynamics: {folder}", flush=True)
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise SweepError(f"{repo}: no experiment holds the models {missing[:3]}... of the "
                         f"summary's tuned arms (`dvc exp pull` them, or name the experiments "
                         f"the summary joined)")
    arms = []
    for entry in (a for a in summary["arms"] if a["best_lr_of_line"]):
        mine = [v for (name, _), v in sorted(found.items()) if name == entry["arm"]]
        arms.append({**{k: entry[k] for k in ("arm", "line", "momentum", "nesterov", "lr",
                                               "sgd_lr", "batch_size")},
                     "sharpness_limit": arm_of(entry).sharpness_limit,
                     **{f: describe(f, [v[f] for v in mine]) for f in FIGURES}})
    sgd = next((row for row in summary.get("scaling", []) if row["line"] == "0p0"), None)
    return {"rules": [RULE], "arms": arms,
            "sgd_b_crit": None if sgd is None else sgd["b_crit"],
            "models": [{"arm": name, "replicate": r, **v}
                       for (name, r), v in sorted(found.items())]}


def figure(found):
    """Each update's sharpness over its limit at the target, and its noise scale there, against
    batch size; 1 (the edge of stability) and plain SGD's fitted B_crit marked."""
    lines = sorted({(a["momentum"], a["nesterov"]) for a in found["arms"]})
    styles = line_styles(lines)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained")
    for line in lines:
        mine = sorted((a for a in found["arms"] if (a["momentum"], a["nesterov"]) == line),
                      key=lambda a: a["batch_size"])
        colour, marker = styles[line]
        for ax, name in zip(axes, ("sharpness_over_limit_at_target", "noise_scale_at_target")):
            x = [a["batch_size"] for a in mine]
            mean, low, high = statistics.band_of([a[name] for a in mine])
            ax.errorbar(x, mean, yerr=[mean - low, high - mean], color=colour, marker=marker,
                        capsize=3, linestyle="-." if line[1] else "-", label=line_name(line))
    axes[0].axhline(1, color="k", linewidth=0.8, linestyle=":", label="edge of stability")
    axes[0].set(ylabel="largest eigenvalue / its update's stability limit",
                title="sharpness where each tuned model reached the target")
    b_crit = found["sgd_b_crit"]
    if b_crit and b_crit["value"]:
        axes[1].axvline(b_crit["value"], color="grey", linestyle=":",
                        label=f"plain SGD's fitted B_crit {b_crit['value']:.0f}")
        axes[1].plot(axes[1].get_xlim(), axes[1].get_xlim(), color="grey", linewidth=0.6,
                     label="B_simple = batch size")
    axes[1].set(ylabel="gradient noise scale B_simple (log)", yscale="log",
                title="noise scale where each tuned model reached the target")
    for ax in axes:
        ax.set(xscale="log", xlabel="batch size (log)")
        ax.grid(alpha=0.3, which="both")
        legend(ax, fontsize=7)
    fig.suptitle("mean over replicates with 95% interval", fontsize=9)
    return fig


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summary", help="a joined steps summary (momentum-sweep-compare's)")
    parser.add_argument("--repo", default=".", help="the repository (default: here)")
    parser.add_argument("--names", nargs="+", metavar="NAME",
                        help="the experiments to read models from (default: every one)")
    parser.add_argument("--out", default="dynamics", help="output folder (default dynamics)")
    args = parser.parse_args(argv)
    try:
        summary = json.loads(Path(args.summary).read_text())
    except (OSError, ValueError) as error:
        print(f"error: {args.summary}: cannot read it ({error})", file=sys.stderr)
        return 1
    out = Path(args.out)
    try:
        if not isinstance(summary, dict) or "target" not in summary.get("measure", {}):
            raise SweepError(f"{args.summary}: not a summary of steps to a target (a joined "
                             f"momentum-sweep-compare summary.json of a run with train.target)")
        check_writable_folder(out)
        found = dynamics(summary, args.repo, args.names)
        drawn = figure(found)
        write_json(out / "dynamics.json", found)
        save(drawn, out / "stability.png")
    except SweepError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"dynamics: {len(found['arms'])} tuned arm(s) -> {out}/dynamics.json, stability.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Stage `surface`: the notebook's claims, measured on the trained networks themselves.

For every model in models/ (its checkpoints, final weights and fine training-loss curve):
- escape: the steps until its training loss first falls below surface.escape_loss;
- curvature at each epoch of train.checkpoints it trained through, and, with a target, where it
  reached it (``at_target``): the Hessian's extreme eigenvalues, their ratio, the gradient's
  norm, the largest eigenvalue over the stability threshold of its update ((2 + 2 mu) / lr for
  heavy-ball, divided by 1 + 2 mu for Nesterov's; above 1: the step overshoots along that
  direction), the gradient noise scale B_simple (``measures.noise_scale``), and the batch
  sharpness at the model's batch size (``measures.batch_sharpness``) over that threshold and over
  plain SGD's at the update's steady-state step (2 (1 - mu) / lr: the edge of a larger step);
- the line from its initial to its final weights (does the loss ever rise on the way?);
and, per replicate, the lines between each listed arm's final weights and momentum 0's, and its
control's (the barrier between them: one basin, or separate minima?).

All on the probe, surface.probe_size training images of the fold the model validates on (so
never its validation images), recorded in the output; the noise scale and the batch sharpness
on all its training images. Writes results/surface.json (everything),
metrics/surface.json (its headline) and plots/surface_*.png (``figures``), all of them only once
every figure is drawn. Measurements are reused by ``cache``. It reads what `train` wrote and
never imports the trainer.
"""

import functools
import sys
import time

import torch
from tqdm import tqdm

from .. import sources
from ..atomic import check_writable_folder, write_json
from ..data import splits as data_splits
from ..errors import SweepError
from ..training import device as devices, results
from ..vocabulary.arms import ModelKey, arm_columns, in_order, pairs
from ..vocabulary.files import SURFACE_FILE, SURFACE_HEADLINE_FILE
from . import figures, measures, summary
from .cache import CACHE_DIR, NOISE_FIELDS, SurfaceCache, weights_digest


class ReadModel:
    """One model as this stage reads it: its key, record, checkpoints and final weights."""

    def __init__(self, folder, p):
        self.key, self.record, _ = results.read_trained(folder)
        budget = self.record["inputs"]["budget"]
        self.steps_per_epoch = budget["steps"] // budget["epochs"]  # its schedule's, recorded
        self.fold = self.record["inputs"]["fold"]
        self.steps = self.record["stopped"]["step"]
        try:
            results.check_weights(folder, p.model.hidden)
        except results.Damaged as damage:
            raise SweepError(f"{folder}: {damage}; run `dvc repro train` to rebuild it") from None
        self.final = torch.load(folder / "model.pt", weights_only=True)
        self.checkpoints = torch.load(folder / "checkpoints.pt", weights_only=True)
        # the checkpoint epochs this model trained through (with a target it may stop sooner)
        self.epochs = [e for e in self.record["inputs"]["checkpoints"]
                       if e * self.steps_per_epoch <= self.steps]
        missing = [e for e in {0, *self.epochs} if e not in self.checkpoints]
        if missing:
            raise SweepError(f"{folder}: holds no weights for epoch(s) {missing} of "
                             f"train.checkpoints; run `dvc repro train`")
        self.digests = {e: weights_digest(s) for e, s in self.checkpoints.items()}
        self.digests["final"] = weights_digest(self.final)


def read_models(models_dir, p) -> list[ReadModel]:
    found = [ReadModel(folder, p) for folder in results.trained_folders(models_dir)]
    return sorted(found, key=lambda m: (*in_order(m.key.arm), m.key.replicate))


def arms_trained(models) -> list:
    """The arms of ``models``, in order."""
    return sorted({m.key.arm for m in models}, key=in_order)


class Measurer:
    """The measures of ``measures`` on one fold's probe, through the cache."""

    def __init__(self, p, probe, training, device, cache):
        """``probe``: the fold's probe; ``training``: all its training images (the noise
        scale's)."""
        self.p, self.s, self.device, self.cache = p, p.surface, device, cache
        self.images = data_splits.scaled(probe.images)                    # [N, 784]
        self.labels = probe.labels                                         # [N]
        self.training = training                                           # uint8 [n, 784]

    @functools.cached_property
    def training_norms(self):
        """The training images' ``measures.image_norms``, for every noise scale of this fold."""
        return measures.image_norms(self.training.images)                  # [n]

    def at_weights(self, measurement, state, digest, settings, measure):
        """``measure(net)`` at one set of weights, through the cache; None for a diverged
        model's (weights no longer finite)."""
        def compute():
            if not measures.is_finite_state(state):
                return None
            return measure(measures.network(state, self.p.model.hidden, self.device))

        return self.cache.get(measurement, [digest], settings, compute)

    def curvature(self, state, digest, arm):
        found = self.at_weights(
            "curvature", state, digest,
            {"tol": self.s.lanczos_tol, "maxiter": self.s.lanczos_maxiter},
            lambda net: measures.curvature(net, self.images, self.labels, self.s.lanczos_tol,
                                           self.s.lanczos_maxiter))
        noise = self.at_weights(
            "noise", state, digest, {"images": "the fold's training images"},
            lambda net: measures.noise_scale(net, self.training.images, self.training.labels,
                                             self.training_norms))
        batch = self.at_weights(
            "batch_sharpness", state, digest,
            {"images": "the fold's training images", "batch_size": arm.batch_size,
             "batches": self.s.sharpness_batches},
            lambda net: measures.batch_sharpness(net, self.training.images, self.training.labels,
                                                 arm.batch_size, self.s.sharpness_batches))
        found = {**(found or dict.fromkeys(["lambda_max", "lambda_min", "grad_norm", "loss"])),
                 **(noise or dict.fromkeys(NOISE_FIELDS))}
        threshold = arm.sharpness_limit
        # Plain SGD's edge at the update's steady-state step lr/(1 - mu): 2(1 - mu)/lr, where a
        # momentum that acts as that larger step sits.
        step_edge = 2 / arm.effective_lr
        high, low = found["lambda_max"], found["lambda_min"]
        return {**found, "ratio": None if high is None or low is None else low / high,
                "threshold": threshold,
                "sharpness_over_threshold": None if high is None else high / threshold,
                "batch_sharpness": batch,
                "batch_sharpness_over_threshold": None if batch is None else batch / threshold,
                "batch_sharpness_over_step_edge": None if batch is None else batch / step_edge}

    def line(self, start, end, digests):
        def compute():
            if not (measures.is_finite_state(start) and measures.is_finite_state(end)):
                return None
            return measures.line(start, end, self.p.model.hidden, self.s.line_points,
                                 self.images, self.labels, self.device)

        return self.cache.get("line", digests, {"points": self.s.line_points}, compute)


def measure_model(model, measurers, p) -> dict:
    arm = model.key.arm
    measurer = measurers[model.fold]
    fine = model.record["fine_train_loss"]
    losses = measurer.line(model.checkpoints[0], model.final,
                           [model.digests[0], model.digests["final"]])
    return {
        "model": model.key.name,
        **arm_columns(arm, ("arm", "line", "momentum", "lr", "batch_size", "sgd_lr", "control")),
        "replicate": model.key.replicate,
        "fold": model.fold, "steps": model.steps,
        "escape_steps": measures.escape_step(fine["loss"], fine["every"], p.surface.escape_loss,
                                             model.steps),
        "train_loss_every": fine["every"],
        "curvature": [{"epoch": e, **measurer.curvature(model.checkpoints[e], model.digests[e],
                                                        arm)} for e in model.epochs],
        # with a target: where the model reached it, its final weights
        "at_target": measurer.curvature(model.final, model.digests["final"], arm)
        if model.record["stopped"]["reason"] == "target" else None,
        "line_from_initial": {
            "losses": losses,
            "largest_rise": None if losses is None else measures.largest_rise(losses)},
    }


def between_finals(models, measurers) -> list:
    """The lines between final weights, per replicate: each listed arm and momentum 0, and each
    and its control (on the probe of the replicate's fold)."""
    by_key = {m.key: m for m in models}
    found = []
    for family, compared in pairs(arms_trained(models)).items():
        for arm, other in compared:
            for model in [m for m in models if m.key.arm == arm]:
                partner = by_key.get(ModelKey(other, model.key.replicate))
                if partner is None:
                    continue
                losses = measurers[model.fold].line(
                    model.final, partner.final, [model.digests["final"], partner.digests["final"]])
                found.append({"family": family,
                              **arm_columns(arm, ("arm", "line", "momentum", "lr",
                                                  "batch_size")),
                              "replicate": model.key.replicate,
                              "model": model.key.name, "other": partner.key.name,
                              "losses": losses,
                              "barrier": None if losses is None else measures.barrier(losses)})
    return found


def early_points(measured, models, train_params) -> int:
    """How much of the fine curves the output keeps: half as long again as the slowest escape,
    or a whole epoch of the longest epoch where some model never escaped."""
    every = train_params.loss_every
    steps = [m["escape_steps"] for m in measured]
    if None in steps:
        last = max(m.steps_per_epoch for m in models)
    else:
        last = 1.5 * max(steps)
    return max(8, -(-int(last) // every))


def run(p, models_dir=results.MODELS_DIR, plots_dir=figures.PLOTS_DIR, cache_dir=CACHE_DIR):
    """Stage `surface`."""
    started = time.perf_counter()
    for folder in (SURFACE_FILE.parent, SURFACE_HEADLINE_FILE.parent, plots_dir):
        check_writable_folder(folder)
    models = read_models(models_dir, p)
    device = devices.resolve(p.train.device)
    common = {"torch": torch.version.__version__, "device_type": device.type,
              # the code that computes a measurement, not the figures' or the statistics':
              # editing those reuses every measurement
              "code": sources.digest(sources.files(measures.__name__))}
    indices = {fold: data_splits.probe_indices(p.train, p.surface.probe_size, fold)
               for fold in sorted({m.fold for m in models})}
    caches = {fold: SurfaceCache({"probe": probe, **common}, cache_dir)
              for fold, probe in indices.items()}
    folds = data_splits.load_folds(p.train, device)
    measurers = {fold: Measurer(p, data_splits.load_probe(probe, device),
                                folds.training(fold), device, caches[fold])
                 for fold, probe in indices.items()}
    print(f"surface: {len(models)} model(s), probe of {p.surface.probe_size} training images "
          f"per fold ({len(indices)} fold(s)), curvature at the epochs of train.checkpoints, on "
          f"{devices.describe(device)}", flush=True)
    with tqdm(models, desc="surface", unit="model", file=sys.stderr, mininterval=2,
              leave=False) as bar:  # closed before any message (Ctrl-C's) is printed
        measured = [(m.key, measure_model(m, measurers, p)) for m in bar]
    shown = early_points([m for _, m in measured], models, p.train)
    for model, (_, found) in zip(models, measured):
        found["early_train_loss"] = model.record["fine_train_loss"]["loss"][:shown]
    lines = between_finals(models, measurers)
    result = summary.summary(measured, lines, arms_trained(models),
                             p.surface.barrier_tolerance)
    result["settings"] = {"surface": p.surface.model_dump(), "init_scale": p.train.init_scale,
                          "checkpoints": p.train.checkpoints}
    result["probe"] = {"rule": "per fold: surface.probe_size training images of the models that "
                               "validate on it (never their validation or test images), drawn "
                               "with train.seed; indices into MNIST's 60,000 training images",
                       "mnist_train_indices": {str(f): i for f, i in indices.items()}}
    result["models"] = [m for _, m in measured]
    result["lines"] = lines
    drawn = figures.draw(result)  # before anything is written: a figure that fails leaves all
    write_json(SURFACE_FILE, result)
    write_json(SURFACE_HEADLINE_FILE, result["headline"])
    for name, fig in drawn.items():
        figures.save(fig, plots_dir / f"{name}.png")
    computed = sum(c.computed for c in caches.values())
    reused = sum(c.reused for c in caches.values())
    damaged = sum(c.damaged for c in caches.values())
    print(f"surface: {computed} measurement(s) computed, {reused} reused"
          + (f" ({damaged} cache entries damaged, recomputed)" if damaged else "")
          + f", {time.perf_counter() - started:.1f} s", flush=True)
    for figure, words in result["headline"].items():
        print(f"  {figure} (against momentum 0): {words}", flush=True)

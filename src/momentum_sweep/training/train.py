"""Stage `train`: every model params.yaml asks for, reusing each whose fingerprint still matches
(see ``reuse``); the others are trained together, in passes of whole replicates (``passes``), and
the log says why.

The stage never deletes a finished model before its replacement is in place: every sealed
folder in models/ is first kept in .model-cache/, the new models are trained and saved there,
and only then is models/ rebuilt to hold exactly the listed models.
"""

import math
import os
from collections import Counter

import numpy as np

from .. import sources
from ..atomic import check_folder_path, check_writable_folder
from ..data import splits as data_splits
from ..errors import SweepError
from . import arms, device as devices, results, trainer
from .batches import replicate_groups
from .device import GIB
from ..finite import mean, or_none
from .progress import LIVE_DIR, LiveLog, Progress, recorded as live_figures
from .reuse import data_hash, decide, fingerprint, fingerprint_inputs

# The most memory one pass is estimated to take (trainer.memory_needed): further replicates wait
# for the next pass, so that the stage's peak does not grow with train.replicates.
PASS_BYTES = GIB


def epoch_line(stats, keys):
    parts = [f"{arm.name}: val {mean(v):.4f}" if mean(v) is not None else f"{arm.name}: diverged"
             for arm, v in arms.by_arm(keys, stats.val_accuracy).items()]
    return (f"epoch {stats.epoch:>3}  {stats.train_seconds:6.2f}s train  "
            f"{stats.epoch_seconds:6.2f}s total  |  " + "  ".join(parts))


def pass_bytes(implementation, keys, hidden, train_params) -> int:
    return trainer.memory_needed(implementation, len(keys), len({k.replicate for k in keys}),
                                 hidden, train_params)


def passes(keys, implementation, p) -> list[list]:
    """``keys`` (ordered by replicate) cut into passes of whole replicates, each as many as fit
    in PASS_BYTES (one replicate at least), so that memory does not grow with the replicates."""
    found = []
    for group in replicate_groups(keys):
        replicate = keys[group.start:group.stop]
        if found and pass_bytes(implementation, found[-1] + replicate, p.model.hidden,
                                p.train) <= PASS_BYTES:
            found[-1] += replicate
        else:
            found.append(replicate)
    return found


def check_memory(implementation, keys, p, device):
    """Refuse, before allocating, a pass that cannot fit: say how wide a first layer would."""
    def needed(hidden):
        return pass_bytes(implementation, keys, hidden, p.train)

    available = devices.available_bytes(device)
    if needed(p.model.hidden) <= available:
        return
    width = p.model.hidden[0]
    while width > 1 and needed([width, *p.model.hidden[1:]]) > available:
        width //= 2
    raise SweepError(
        f"model.hidden = {p.model.hidden}: training {len(keys)} model(s) at once needs about "
        f"{needed(p.model.hidden) / GIB:.1f} GiB, but {available / GIB:.1f} GiB is available on "
        f"{device.type}; a first hidden layer of about {width} fits (or train fewer models: "
        f"momentum, train.replicates, train.lr_control)")


def fine_curve(step_losses, step_images, every) -> list:
    """The mean training loss over each run of ``every`` steps (the last run may be shorter),
    to six significant digits; None where it is not finite. step_losses: [steps] each step's
    summed loss; step_images: [steps] the images of each step's batch."""
    starts = np.arange(0, len(step_losses), every)
    means = np.add.reduceat(step_losses, starts) / np.add.reduceat(step_images, starts)
    return [or_none(float(f"{m:.6g}")) for m in means]


def step_sizes(train_params) -> np.ndarray:
    """[steps per epoch]: the images in each step's batch (the last batch may be smaller)."""
    n, b = train_params.train_size, train_params.batch_size
    return np.minimum(b, n - np.arange(0, n, b))


def train_pass(keys, inputs, p, folds, device, implementation, cache, live, done):
    """Train ``keys`` together and save each into the cache; {key: (record, timing)}.
    ``live`` gets every epoch's figures, those of the models ``done`` before ({key: (record,
    timing)}) from their records. Each model keeps its initial weights (epoch 0) and its
    weights at the epochs in train.checkpoints: copies taken between epochs, which the training
    never reads back."""
    fingerprints = {key: fingerprint(inputs[key]) for key in keys}
    records = {key: {"model": key.name, "fingerprint": fingerprints[key], "inputs": inputs[key],
                     "diverged_epoch": None, "epochs": []} for key in keys}
    model = trainer.make_trainer(implementation, keys, p.model.hidden, p.train, folds, device)
    kept = {key: {0: model.initial[k]} for k, key in enumerate(keys)}
    step_losses = []  # per epoch: [K, steps]
    described = f"{devices.describe(device)}, {model.description}"
    timings = {key: {"device": described, "models_in_pass": len(keys),
                     "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                     "epochs": []} for key in keys}
    print(f"train: {len(keys)} model(s) together, {p.train.train_size} training images each, "
          f"{p.train.epochs} epoch(s), batch {p.train.batch_size}, {described}", flush=True)
    progress = Progress(len(keys) * p.train.train_size, p.train.epochs)
    try:
        for stats in trainer.train_epochs(model, p.train, folds, devices.MemoryProbe(device),
                                          progress):
            for k, key in enumerate(keys):
                record = records[key]
                if record["diverged_epoch"] is not None:
                    continue
                quality = {name: getattr(stats, name)[k] for name in results.QUALITY}
                if not all(map(math.isfinite, quality.values())):
                    # A diverged model's figures are not results, even the finite ones (an
                    # accuracy of NaN logits is that of always answering class 0).
                    record["diverged_epoch"] = stats.epoch
                    quality = dict.fromkeys(quality)
                record["epochs"].append({"epoch": stats.epoch, **quality})
                timings[key]["epochs"].append({
                    "epoch": stats.epoch, "epoch_seconds": stats.epoch_seconds,
                    "samples_per_second": p.train.train_size / stats.train_seconds,
                    **stats.memory})
            step_losses.append(stats.step_losses)
            if stats.epoch in p.train.checkpoint_epochs:
                for k, key in enumerate(keys):
                    kept[key][stats.epoch] = model.state_dict(k)
            progress.line(epoch_line(stats, keys))
            figures = {key: live_figures(records[key], stats.epoch) for key in keys}
            figures.update({key: live_figures(r, stats.epoch) for key, (r, _) in done.items()})
            live.epoch(stats.epoch, figures)
    finally:
        progress.close()
        model.close()
    images = np.tile(step_sizes(p.train), len(step_losses))
    for k, key in enumerate(keys):
        losses = np.concatenate([epoch[k] for epoch in step_losses])
        records[key]["fine_train_loss"] = {
            "every": p.train.loss_every,
            "loss": fine_curve(losses, images, p.train.loss_every)}
        results.write_folder(cache.path(fingerprints[key]), model.state_dict(k), records[key],
                             timings[key], kept[key])
        if records[key]["diverged_epoch"] is not None:
            print(f"{key.label}: diverged in epoch {records[key]['diverged_epoch']} "
                  f"(loss not finite)", flush=True)
    return {key: (records[key], timings[key]) for key in keys}


def final_table(keys, found) -> str:
    def fmt(value):
        return "-" if value is None else f"{value:.4f}"

    lines = [f"{'arm':>22}  {'sgd lr':>7}  {'models':>6}  {'diverged':>8}  {'train loss':>10}  "
             f"{'val acc':>7}  {'test acc':>8}"]
    for arm, items in arms.by_arm(keys, [found[k][0] for k in keys]).items():
        finals = [r["epochs"][-1] for r in items if r["diverged_epoch"] is None]
        lines.append(
            f"{arm.name:>22}  {arm.sgd_lr:7.4g}  {len(items):>6}  "
            f"{sum(r['diverged_epoch'] is not None for r in items):>8}  "
            f"{fmt(mean([f['train_loss'] for f in finals])):>10}  "
            f"{fmt(mean([f['val_accuracy'] for f in finals])):>7}  "
            f"{fmt(mean([f['test_accuracy'] for f in finals])):>8}")
    return "\n".join(lines) + "\n(means over replicates; `dvc repro summarize` for intervals)"


def check_paths(keys, models_dir, cache_dir):
    """Clear errors for what a user may have put where folders belong, before any work."""
    arm_folders = sorted({models_dir / key.arm.name for key in keys})
    for folder in [models_dir, *arm_folders, *(models_dir / key.name for key in keys)]:
        check_folder_path(folder, "a folder of trained models")
    for folder in (models_dir, cache_dir, LIVE_DIR):
        check_writable_folder(folder)


def keep_in_cache(models_dir, cache):
    """Copy every sealed folder of models/ into the cache: nothing there is lost, whatever
    happens next (narrowing the list, Ctrl-C)."""
    for folder in results.model_folders(models_dir):
        try:
            record, _ = results.read_sealed(folder)
        except results.Damaged:
            continue
        cache.keep(folder, record["fingerprint"])


def rebuild_models_dir(keys, fingerprints, cache, models_dir):
    """models/ gets exactly the listed models, each folder replaced whole, from the cache."""
    for key in keys:
        target = models_dir / key.name
        try:
            current = results.read_sealed(target)[0]["fingerprint"]
        except results.Damaged:
            current = None
        if current != fingerprints[key]:
            results.copy_folder(cache.path(fingerprints[key]), target)
    results.remove_all_but({key.name for key in keys}, models_dir)


def run(p, models_dir=results.MODELS_DIR, cache_dir=results.CACHE_DIR):
    device = devices.resolve(p.train.device)
    implementation = trainer.implementation_for(device)
    keys = arms.models(p)
    check_paths(keys, models_dir, cache_dir)
    cache = results.ModelCache(cache_dir)
    code = sources.digest(sources.stage_files("train"))
    data = data_hash()
    inputs = {key: fingerprint_inputs(key, p, data, code, device.type, implementation)
              for key in keys}
    keep_in_cache(models_dir, cache)

    decisions = decide(keys, inputs, cache, models_dir)
    for key in keys:
        found, why = decisions[key]
        print(f"{key.label}: {why if found else 'trained (' + why + ')'}", flush=True)
    to_train = [key for key in keys if decisions[key][0] is None]
    found = {key: decisions[key][0] for key in keys if decisions[key][0] is not None}
    planned = passes(to_train, implementation, p)
    for keys_of_pass in planned:
        check_memory(implementation, keys_of_pass, p, device)
    live = LiveLog()
    if planned:
        folds = data_splits.load_folds(p.train, device)
        for number, keys_of_pass in enumerate(planned, 1):
            if len(planned) > 1:
                print(f"train: pass {number} of {len(planned)}", flush=True)
            found.update(train_pass(keys_of_pass, inputs, p, folds, device, implementation,
                                    cache, live, dict(found)))
    else:  # the live log still shows every listed model
        for epoch in range(1, p.train.epochs + 1):
            live.epoch(epoch, {key: live_figures(found[key][0], epoch) for key in keys})
    live.end()

    rebuild_models_dir(keys, {key: fingerprint(inputs[key]) for key in keys}, cache, models_dir)
    counts = Counter("reused" if decisions[k][0] is not None else "trained" for k in keys)
    print(f"train: {counts['trained']} trained, {counts['reused']} reused", flush=True)
    print(final_table(keys, found), flush=True)

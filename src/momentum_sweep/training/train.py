"""Stage `train`: every model params.yaml asks for, reusing each whose fingerprint still matches
(see ``reuse``); the others are trained together, in passes of whole replicates at one batch
size (``passes``), and the log says why.

The stage never deletes a finished model before its replacement is in place: every sealed
folder in models/ is first kept in .model-cache/, each new model is saved there as soon as it
stops training, and only at the end is models/ rebuilt to hold exactly the listed models. Two
arms that train the same model (a control and a grid arm with the same step) share one training
and one cache entry.
"""

from collections import Counter
from dataclasses import dataclass

from .. import sources
from ..atomic import check_folder_path, check_writable_folder
from ..data import splits as data_splits
from ..errors import SweepError
from ..finite import mean
from ..vocabulary import arms
from ..vocabulary.schedule import Schedule
from . import device as devices, results, trainer
from .batches import replicate_groups
from .device import GIB
from .progress import LIVE_DIR, LiveLog, Progress
from .records import PassRecords
from .reuse import data_hash, decide, fingerprint, fingerprint_inputs

# The most memory one pass is estimated to take (trainer.memory_needed): further replicates wait
# for the next pass, so that the stage's peak does not grow with train.replicates.
PASS_BYTES = GIB


@dataclass
class Pass:
    """Models trained together: one batch size (its ``schedule``), whole replicates, ``keys``
    ordered by replicate."""
    keys: list
    schedule: Schedule

    def bytes(self, implementation, hidden, train_params) -> int:
        """What it is estimated to take in memory with a network of ``hidden`` layers."""
        return trainer.memory_needed(implementation, len(self.keys),
                                     len({k.replicate for k in self.keys}), hidden, train_params,
                                     self.schedule)


def schedules_of(p) -> dict:
    """{batch size: its Schedule}: computed here once, and asked everywhere after."""
    return {batch: Schedule.of(p.train, batch) for batch in p.train.batch_sizes}


def passes(keys, implementation, p, schedules) -> list[Pass]:
    """``keys`` (ordered by replicate) cut into passes of one batch size and whole replicates,
    each as many replicates as fit in PASS_BYTES (one at least), so that memory does not grow
    with the replicates."""
    found = []
    for batch in dict.fromkeys(k.arm.batch_size for k in keys):
        of_batch = [k for k in keys if k.arm.batch_size == batch]
        first = len(found)
        for group in replicate_groups(of_batch):
            replicate = of_batch[group.start:group.stop]
            grown = Pass(found[-1].keys + replicate, schedules[batch]) if len(found) > first \
                else None
            if grown and grown.bytes(implementation, p.model.hidden, p.train) <= PASS_BYTES:
                found[-1] = grown
            else:
                found.append(Pass(replicate, schedules[batch]))
    return found


def check_memory(implementation, planned, p, device):
    """Refuse, before allocating, a pass that cannot fit: say which setting to change (the
    budget, when even the narrowest network does not fit; else how wide a first layer would)."""
    available = devices.available_bytes(device)
    hidden = p.model.hidden
    if planned.bytes(implementation, hidden, p.train) <= available:
        return
    needed = planned.bytes(implementation, hidden, p.train) / GIB
    schedule, models = planned.schedule, len(planned.keys)
    if planned.bytes(implementation, [1] * len(hidden), p.train) > available:
        t = p.train
        raise SweepError(
            f"train.min_steps = {t.min_steps}, train.epochs = {t.epochs}: a budget of "
            f"{schedule.total_steps} steps at batch size {schedule.batch_size} needs about "
            f"{needed:.1f} GiB for {models} model(s) at once (the step keeps tables of one entry "
            f"per step), but {available / GIB:.1f} GiB is available on {device.type}; lower "
            f"train.min_steps or train.epochs")
    width = hidden[0]
    while width > 1 and planned.bytes(implementation, [width, *hidden[1:]], p.train) > available:
        width //= 2
    raise SweepError(
        f"model.hidden = {hidden}: training {models} model(s) at once needs about "
        f"{needed:.1f} GiB, but {available / GIB:.1f} GiB is available on {device.type}; a "
        f"first hidden layer of about {width} fits. A pass is at least one replicate's models "
        f"at one batch size, so fewer arms also fit: fewer values in momentum, train.lr or "
        f"train.nesterov, or train.lr_control: false")


def train_pass(planned, inputs, fingerprints, p, folds, device, implementation, cache, live):
    """Train a Pass; each model is saved into the cache when it stops. {key: (record,
    timing)}."""
    keys, schedule = planned.keys, planned.schedule
    pass_trainer = trainer.make_trainer(implementation, keys, p.model.hidden, p.train, schedule,
                                        folds, device)
    described = f"{devices.describe(device)}, {pass_trainer.description}"
    print(f"train: {len(keys)} model(s) together, {p.train.train_size} training images each, "
          f"batch {schedule.batch_size}, up to {schedule.epochs} epoch(s) "
          f"({schedule.total_steps} steps), {described}", flush=True)
    recorded = PassRecords(keys, inputs, fingerprints, pass_trainer, p, schedule, described,
                           cache)
    progress = Progress(len(keys) * schedule.total_steps * schedule.batch_size,
                        schedule.total_steps)
    try:
        for end in trainer.segments(pass_trainer, folds, devices.MemoryProbe(device),
                                    progress):
            recorded.add(end)
            progress.advance(end.step, len(keys) * end.trained.images)
            if end.evaluated:
                progress.line(evaluation_line(end, keys))
                live.add(list(recorded.live().items()))
    finally:
        progress.close()
        pass_trainer.close()
    return {key: (recorded.records[key], recorded.timings[key]) for key in keys}


def evaluation_line(end, keys) -> str:
    found = {}
    for k, key in enumerate(keys):
        found.setdefault(key.arm, []).append(end.val_accuracy[k])
    parts = [f"{arm.name}: val {mean(v):.4f}" for arm, v in found.items()
             if mean(v) is not None]
    stopped = Counter(end.stopping.values())
    return (f"step {end.step:>6}  {end.train_seconds:6.2f}s train  "
            f"{end.evaluation_seconds:5.2f}s evaluation"
            + "".join(f"  {n} {why}" for why, n in sorted(stopped.items())) + "  |  "
            + "  ".join(parts))


def final_table(keys, found) -> str:
    def fmt(value):
        return "-" if value is None else f"{value:.4f}"

    lines = [f"{'arm':>34}  {'sgd lr':>7}  {'models':>6}  {'diverged':>8}  {'train loss':>10}  "
             f"{'val acc':>7}  {'test acc':>8}  stopped at (mean step)"]
    by_arm = {}
    for key in keys:
        by_arm.setdefault(key.arm, []).append(found[key][0])
    for arm, items in by_arm.items():
        finals = [r["evaluations"][-1] for r in items if r["stopped"]["reason"] != "diverged"]
        lines.append(
            f"{arm.name:>34}  {arm.sgd_lr:7.4g}  {len(items):>6}  "
            f"{sum(r['stopped']['reason'] == 'diverged' for r in items):>8}  "
            f"{fmt(mean([f['train_loss'] for f in finals])):>10}  "
            f"{fmt(mean([f['val_accuracy'] for f in finals])):>7}  "
            f"{fmt(mean([f['test_accuracy'] for f in finals])):>8}  "
            f"{mean([r['stopped']['step'] for r in items]):.0f}")
    return "\n".join(lines) + "\n(means over replicates; `dvc repro summarize` for intervals)"


def check_paths(keys, models_dir, cache_dir):
    """Clear errors for what a user may have put where folders belong, before any work."""
    arm_folders = sorted({models_dir / key.arm.name for key in keys})
    for folder in [models_dir, *arm_folders, *(models_dir / key.name for key in keys)]:
        check_folder_path(folder, "a folder of trained models")
    for folder in (models_dir, cache_dir, LIVE_DIR):
        check_writable_folder(folder)


def keep_in_cache(models_dir, cache):
    """Copy every sealed folder of models/ that holds weights into the cache: nothing there is
    lost, whatever happens next (narrowing the list, Ctrl-C)."""
    for folder in results.model_folders(models_dir):
        try:
            record, _ = results.read_sealed(folder)
            results.check_weights(folder, cache.hidden)
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


def preflight(p):
    """(device, step implementation, {batch size: Schedule}) after every check that can be made
    before training: the device exists, and each pass fits in memory were every model to train.
    The params stage runs it, so that such a setting stops `dvc repro` before DVC clears this
    stage's outputs."""
    device = devices.resolve(p.train.device)
    implementation = trainer.implementation_for(device, p.train.step)
    schedules = schedules_of(p)
    for planned in passes(arms.models(p), implementation, p, schedules):
        check_memory(implementation, planned, p, device)
    return device, implementation, schedules


def trainers_of(keys, decisions, fingerprints) -> dict:
    """{fingerprint: the one key that trains it} of the models to train: a control and a grid
    arm with the same step are one model, trained once."""
    found = {}
    for key in keys:
        if decisions[key].reused is None:
            found.setdefault(fingerprints[key], key)
    return found


def log_decisions(keys, decisions, fingerprints, trained_by):
    """A line per model: reused (and from where), or trained (and why)."""
    for key in keys:
        decision, trainer_key = decisions[key], trained_by.get(fingerprints[key])
        if decision.reused is not None:
            print(f"{key.label}: {decision.why}", flush=True)
        elif trainer_key is key:
            print(f"{key.label}: trained ({decision.why})", flush=True)
        else:
            print(f"{key.label}: trained once with {trainer_key.label} (the same model)",
                  flush=True)


def run(p, models_dir=results.MODELS_DIR, cache_dir=results.CACHE_DIR):
    device, implementation, schedules = preflight(p)
    keys = arms.models(p)
    check_paths(keys, models_dir, cache_dir)
    cache = results.ModelCache(cache_dir, p.model.hidden)
    code = sources.digest(sources.stage_files("train"))
    data = data_hash()
    inputs = {key: fingerprint_inputs(key, p, schedules[key.arm.batch_size], data, code,
                                      device.type, implementation) for key in keys}
    fingerprints = {key: fingerprint(inputs[key]) for key in keys}
    keep_in_cache(models_dir, cache)

    decisions = decide(keys, inputs, fingerprints, cache, models_dir)
    trained_by = trainers_of(keys, decisions, fingerprints)
    log_decisions(keys, decisions, fingerprints, trained_by)
    planned = passes(list(trained_by.values()), implementation, p, schedules)
    for each in planned:
        check_memory(implementation, each, p, device)
    outcome = {key: d.reused for key, d in decisions.items() if d.reused is not None}
    live = LiveLog(p.train.target)
    live.add([(key, row) for key, (record, _) in outcome.items() for row in record["evaluations"]])
    if planned:
        folds = data_splits.load_folds(p.train, device)
        for number, each in enumerate(planned, 1):
            if len(planned) > 1:
                print(f"train: pass {number} of {len(planned)}", flush=True)
            trained = train_pass(each, inputs, fingerprints, p, folds, device, implementation,
                                 cache, live)
            outcome.update({key: trained[trained_by[fingerprints[key]]] for key in keys
                            if trained_by.get(fingerprints[key]) in trained})
    live.end()

    rebuild_models_dir(keys, fingerprints, cache, models_dir)
    counts = Counter("reused" if decisions[k].reused is not None else "trained" for k in keys)
    print(f"train: {counts['trained']} trained, {counts['reused']} reused", flush=True)
    print(final_table(keys, outcome), flush=True)

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

from .. import sources
from ..atomic import check_folder_path, check_writable_folder
from ..data import splits as data_splits
from ..errors import SweepError
from ..finite import mean
from . import arms, device as devices, results, trainer
from .batches import replicate_groups
from .device import GIB
from .progress import LIVE_DIR, LiveLog, Progress
from .records import PassRecords
from .reuse import data_hash, decide, fingerprint, fingerprint_inputs

# The most memory one pass is estimated to take (trainer.memory_needed): further replicates wait
# for the next pass, so that the stage's peak does not grow with train.replicates.
PASS_BYTES = GIB


def pass_bytes(implementation, keys, hidden, train_params) -> int:
    return trainer.memory_needed(implementation, len(keys), len({k.replicate for k in keys}),
                                 hidden, train_params, keys[0].arm.batch_size)


def passes(keys, implementation, p) -> list[list]:
    """``keys`` (ordered by replicate) cut into passes of one batch size and whole replicates,
    each as many replicates as fit in PASS_BYTES (one at least), so that memory does not grow
    with the replicates."""
    found = []
    for batch in dict.fromkeys(k.arm.batch_size for k in keys):
        of_batch = [k for k in keys if k.arm.batch_size == batch]
        first = len(found)
        for group in replicate_groups(of_batch):
            replicate = of_batch[group.start:group.stop]
            if len(found) > first and pass_bytes(implementation, found[-1] + replicate,
                                                 p.model.hidden, p.train) <= PASS_BYTES:
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
    batch = keys[0].arm.batch_size
    if needed([1] * len(p.model.hidden)) > available:  # not the network: the budget's tables
        t = p.train
        raise SweepError(
            f"train.min_steps = {t.min_steps}, train.epochs = {t.epochs}: a budget of "
            f"{t.total_steps(batch)} steps at batch size {batch} needs about "
            f"{needed(p.model.hidden) / GIB:.1f} GiB for {len(keys)} model(s) at once (the "
            f"step keeps tables of one entry per step), but {available / GIB:.1f} GiB is "
            f"available on {device.type}; lower train.min_steps or train.epochs")
    width = p.model.hidden[0]
    while width > 1 and needed([width, *p.model.hidden[1:]]) > available:
        width //= 2
    raise SweepError(
        f"model.hidden = {p.model.hidden}: training {len(keys)} model(s) at once needs about "
        f"{needed(p.model.hidden) / GIB:.1f} GiB, but {available / GIB:.1f} GiB is available on "
        f"{device.type}; a first hidden layer of about {width} fits. A pass is at least one "
        f"replicate's models at one batch size, so fewer arms also fit: fewer values in "
        f"momentum, train.lr or train.nesterov, or train.lr_control: false")


def train_pass(keys, inputs, fingerprints, p, folds, device, implementation, cache, live):
    """Train ``keys`` (one batch size, ordered by replicate) together; each model is saved into
    the cache when it stops. {key: (record, timing)}."""
    model = trainer.make_trainer(implementation, keys, p.model.hidden, p.train, folds, device)
    described = f"{devices.describe(device)}, {model.description}"
    batch = keys[0].arm.batch_size
    total = p.train.total_steps(batch)
    print(f"train: {len(keys)} model(s) together, {p.train.train_size} training images each, "
          f"batch {batch}, up to {p.train.epochs_at(batch)} epoch(s) ({total} steps), "
          f"{described}", flush=True)
    recorded = PassRecords(keys, inputs, fingerprints, model, p, described, cache)
    progress = Progress(len(keys) * total * batch, total)
    try:
        for end in trainer.segments(model, p.train, folds, devices.MemoryProbe(device),
                                    progress):
            recorded.add(end)
            progress.advance(end.step, len(keys) * end.trained.images)
            if end.evaluated:
                progress.line(evaluation_line(end, keys))
                live.add(list(recorded.live().items()))
    finally:
        progress.close()
        model.close()
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
    """(device, step implementation) after every check that can be made before training: the
    device exists, and each pass fits in memory were every model to train. The params stage
    runs it, so that such a setting stops `dvc repro` before DVC clears this stage's outputs."""
    device = devices.resolve(p.train.device)
    implementation = trainer.implementation_for(device, p.train.step)
    for keys_of_pass in passes(arms.models(p), implementation, p):
        check_memory(implementation, keys_of_pass, p, device)
    return device, implementation


def run(p, models_dir=results.MODELS_DIR, cache_dir=results.CACHE_DIR):
    device, implementation = preflight(p)
    keys = arms.models(p)
    check_paths(keys, models_dir, cache_dir)
    cache = results.ModelCache(cache_dir, p.model.hidden)
    code = sources.digest(sources.stage_files("train"))
    data = data_hash()
    inputs = {key: fingerprint_inputs(key, p, data, code, device.type, implementation)
              for key in keys}
    fingerprints = {key: fingerprint(inputs[key]) for key in keys}
    keep_in_cache(models_dir, cache)

    decisions = decide(keys, inputs, fingerprints, cache, models_dir)
    # One training per fingerprint: a control and a grid arm with the same step share it.
    first = {}
    for key in keys:
        if decisions[key][0] is None:
            first.setdefault(fingerprints[key], key)
    for key in keys:
        found, why = decisions[key]
        same = first.get(fingerprints[key])
        if found:
            print(f"{key.label}: {why}", flush=True)
        elif same is key:
            print(f"{key.label}: trained ({why})", flush=True)
        else:
            print(f"{key.label}: trained once with {same.label} (the same model)", flush=True)
    planned = passes(list(first.values()), implementation, p)
    for keys_of_pass in planned:
        check_memory(implementation, keys_of_pass, p, device)
    found = {key: decisions[key][0] for key in keys if decisions[key][0] is not None}
    live = LiveLog(p.train.target)
    live.add([(key, row) for key, (record, _) in found.items() for row in record["evaluations"]])
    if planned:
        folds = data_splits.load_folds(p.train, device)
        for number, keys_of_pass in enumerate(planned, 1):
            if len(planned) > 1:
                print(f"train: pass {number} of {len(planned)}", flush=True)
            trained = train_pass(keys_of_pass, inputs, fingerprints, p, folds, device,
                                 implementation, cache, live)
            found.update({key: trained[first[fingerprints[key]]] for key in keys
                          if fingerprints[key] in {fingerprints[k] for k in trained}})
    live.end()

    rebuild_models_dir(keys, fingerprints, cache, models_dir)
    counts = Counter("reused" if decisions[k][0] is not None else "trained" for k in keys)
    print(f"train: {counts['trained']} trained, {counts['reused']} reused", flush=True)
    print(final_table(keys, found), flush=True)

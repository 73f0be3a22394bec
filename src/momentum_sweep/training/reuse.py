"""The reuse rule: a model's fingerprint, and the reason it must be trained when none matches.

A model's fingerprint is a hash of everything that decides it: the flattened data, the model
and training parameters, what it trains (``Arm.method``: its learning rate and momentum in
float32, the update, the batch size; not which arm asked for it, so a control and a grid arm with
the same step are one model), its replicate and fold, its budget (the epochs at its batch size,
and with a target the target and the evaluation schedule, where it may stop), the training code
(every source file the train stage runs, found by reading its imports), the step implementation,
the torch version (and, for the native step, the C compiler: a digest of its executable and the
flags given in ``CC``) and the device type. A sealed folder with the same fingerprint, in models/
or in .model-cache/, is reused byte for byte. The record keeps the fingerprint's inputs, so when
they differ the log can say which changed.
"""

import hashlib
from typing import NamedTuple, Optional

import torch

from ..data.mnist import FLAT_DIR, FLAT_FILES, MISSING_FLAT
from ..data.splits import fold_of
from ..digest import of_json
from ..errors import SweepError
from . import results

# Which fingerprint inputs, when they differ, give which reason to retrain.
REASONS = {"method": "parameters changed", "replicate": "parameters changed",
           "fold": "parameters changed", "budget": "parameters changed",
           "checkpoints": "parameters changed",
           "model": "parameters changed", "train": "parameters changed",
           "data": "data changed", "code": "code changed",
           "torch": "torch version or device changed", "compiler": "C compiler changed",
           "device_type": "torch version or device changed"}
# train.* keys that are not in the fingerprint as they are written: the device is in it as its
# type and the step as its implementation, the method holds the learning rate, update and batch
# size, the fold says what cross-validation changes, the budget what epochs, min_steps and
# target change at the model's batch size, the checkpoints as the epochs they are; the number of
# replicates and the control switch only decide which models there are.
NOT_PER_MODEL = {"device", "step", "lr", "effective_lr", "batch_size", "nesterov", "replicates",
                 "lr_control", "cross_validation", "epochs", "min_steps", "target",
                 "checkpoints"}


def data_hash(flat_dir=FLAT_DIR) -> str:
    digest = hashlib.sha256()
    for name in FLAT_FILES:
        path = flat_dir / name
        if not path.exists():
            raise SweepError(f"{path} is missing; {MISSING_FLAT}")
        digest.update(results.sha256_file(path).encode())
    return digest.hexdigest()


def library_versions(implementation) -> dict:
    versions = {"torch": torch.version.__version__}
    if implementation == "native":
        from .native_kernels import compiler_identity

        versions["compiler"] = compiler_identity()
    return versions


def fingerprint_inputs(key, p, schedule, data, code, device_type, implementation) -> dict:
    """Everything that decides model ``key`` (trained on ``schedule``, its batch size's), as a
    JSON-able dict (kept in its record)."""
    return {
        "method": key.arm.method,
        "replicate": key.replicate,
        "fold": fold_of(key.replicate, p.train.folds),
        "budget": schedule.budget,
        "checkpoints": list(schedule.checkpoints),
        "model": p.model.model_dump(),
        "train": p.train.model_dump(exclude=NOT_PER_MODEL),
        "data": data,
        "code": code,
        "implementation": implementation,
        "device_type": device_type,
        **library_versions(implementation),
    }


def fingerprint(inputs) -> str:
    return of_json(inputs)


def why_changed(old_inputs, new_inputs) -> str:
    changed = {k for k in new_inputs.keys() | old_inputs if old_inputs.get(k) != new_inputs.get(k)}
    reasons = set()
    if "implementation" in changed:  # the C compiler is an input of the native step only
        changed -= {"implementation", "compiler"}
        reasons.add(f"train.step changed: {old_inputs.get('implementation')} to "
                    f"{new_inputs.get('implementation')}")
    reasons |= {REASONS.get(k, "parameters changed") for k in changed}
    return ", ".join(sorted(reasons)) or "fingerprint changed"


def from_cache(cache, fp, otherwise):
    """(found, why): the cache's sealed folder for ``fp``, or why it must be trained:
    ``otherwise``, and what is wrong with the cache's entry if there is a damaged one."""
    found, damage = cache.lookup(fp)
    if found is not None:  # and why models/ did not hold it, unless it was simply not there
        return found, "reused from .model-cache" + ("" if otherwise == "new" else
                                                    f" (models/ held none: {otherwise})")
    if damage == "missing":
        return None, otherwise
    cached = f".model-cache entry damaged: {damage}"
    return None, cached if otherwise == "new" else f"{otherwise}; {cached}"


class Decision(NamedTuple):
    """What the train stage does with a model: reuse a sealed folder (``reused``: its (record,
    timing)) or, where it is None, train it; ``why``: where it was found, or why it trains."""
    reused: Optional[tuple]
    why: str


def decide(keys, inputs, fingerprints, cache, models_dir):
    """{key: its Decision}."""
    decisions = {}
    for key in keys:
        fp = fingerprints[key]
        try:
            record, timing = results.read_sealed(models_dir / key.name)
            if record["fingerprint"] == fp:
                results.check_weights(models_dir / key.name, inputs[key]["model"]["hidden"])
        except results.Damaged as damage:
            reason = "new" if str(damage) == "missing" else f"files missing or damaged: {damage}"
            decisions[key] = Decision(*from_cache(cache, fp, reason))
            continue
        if record["fingerprint"] == fp:
            decisions[key] = Decision((record, timing), "reused")
        else:
            decisions[key] = Decision(*from_cache(cache, fp, why_changed(record.get("inputs", {}),
                                                                         inputs[key])))
    return decisions

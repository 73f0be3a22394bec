"""The batched pass: every model of one batch size that needs training, trained together, segment
by segment, each model until it stops.

Two implementations share one interface (``TRAINER_INTERFACE``): ``TorchTrainer`` (the PyTorch
step, in ``torch_step``: CUDA, and the reference) and ``NativeTrainer`` (the fused sparse CPU
step, in ``native_step``). ``implementation_for`` picks one from ``train.step``; it is
part of every model's fingerprint, since the two agree only to float32 tolerance.

``segments`` runs a pass: it trains every active model to the end of each segment
(``Schedule.segment_ends``), evaluates them where the schedule says (``Schedule.evaluations``),
and says which models stop there: a model whose figures are no longer finite (diverged), one whose
validation accuracy reached ``train.target``, and every model at the end of its budget.
"""

import time
from dataclasses import dataclass, field
from typing import Optional

import torch

from ..errors import SweepError
from ..finite import all_finite
from ..vocabulary.measure import reached
from .batches import Trained
from .native_step import NativeTrainer
from .torch_step import TorchTrainer



def implementation_for(device: torch.device, setting: str) -> str:
    """The step ``train.step`` asks for on a device: ``auto`` is the native step on the CPU, where
    it is the faster at every batch size (docs/performance.md), and PyTorch's elsewhere."""
    if setting == "native" and device.type != "cpu":
        raise SweepError(f"train.step = 'native' runs on the CPU only, and train.device "
                         f"resolved to {device.type}; set train.step: auto or torch, or "
                         f"train.device: cpu")
    if setting == "auto":
        return "native" if device.type == "cpu" else "torch"
    return setting


TRAINERS = {"native": NativeTrainer, "torch": TorchTrainer}
# What a pass asks of a trainer, built by ``make_trainer(..., keys, hidden, train_params,
# schedule, folds, device)``: attributes, then methods (tests/test_layout.py holds both trainers
# to it).
TRAINER_INTERFACE = {
    "attributes": ["K", "schedule", "batch_size", "steps_per_epoch", "initial", "description"],
    "methods": ["train_until", "evaluate", "evaluate_validation", "stop", "state_dict", "close",
                "bytes_per_model"],
}


def memory_needed(implementation, n_models, n_replicates, hidden, train_params,
                  schedule) -> int:
    """A generous estimate of the bytes a pass allocates, to refuse before allocating them."""
    # images, orders, each replicate's views of its batches (the native step: two epochs')
    data = 100 * 2 ** 20 + 90 * 2 ** 20 * n_replicates
    return data + n_models * TRAINERS[implementation].bytes_per_model(hidden, train_params,
                                                                      schedule)


def make_trainer(implementation, keys, hidden, train_params, schedule, folds, device):
    """The trainer of ``keys`` (``schedule``'s batch size, ordered by replicate) on ``folds``
    (data.splits.Folds) for a step implementation."""
    sizes = sorted({key.arm.batch_size for key in keys})
    if sizes != [schedule.batch_size]:
        raise ValueError(f"a pass trains its schedule's batch size, {schedule.batch_size}, not "
                         f"{sizes}")
    return TRAINERS[implementation](keys, hidden, train_params, schedule, folds, device)


@dataclass
class SegmentEnd:
    """What a pass has at the end of one segment."""
    step: int                 # global steps taken
    epoch_ended: bool         # whether an epoch ends here (its weights may be kept)
    trained: Trained          # the segment's training figures
    evaluated: bool           # whether the models were evaluated here
    # [K] each; None where a model was not evaluated (it had stopped, or, with a target, the
    # test split is evaluated only where a model stops)
    val_loss: list
    val_accuracy: list
    test_loss: list
    test_accuracy: list
    stopping: dict            # {model index: "diverged" | "target" | "budget"}, stopping here
    train_seconds: float
    evaluation_seconds: float
    memory: dict = field(default_factory=dict)


def stops(k, trained, val_loss, val_accuracy, target, last) -> Optional[str]:
    """Why model k stops at a segment end (None: it goes on)."""
    if not all_finite(trained.loss[k], val_loss[k], val_accuracy[k]):
        return "diverged"
    if target is not None and reached(val_accuracy[k], target):
        return "target"
    return "budget" if last else None


def segments(trainer, folds, memory_probe, progress=None):
    """Train every model of ``trainer`` until it stops; yields a SegmentEnd at each segment's
    end (the models stopping there have stopped when the next is trained). ``progress(step,
    images)`` counts model-images within a segment."""
    evaluations = set(trainer.schedule.evaluations)
    ends = trainer.schedule.segment_ends
    target = trainer.schedule.target
    active = set(range(trainer.K))
    nothing = [None] * trainer.K
    for end in ends:
        memory_probe.start_epoch()
        started = time.perf_counter()
        report = None if progress is None else (lambda done, e=end: progress(e, done))
        trained = trainer.train_until(end, report)
        memory_probe.synchronize()
        train_seconds = time.perf_counter() - started
        evaluated = end in evaluations
        val = trainer.evaluate_validation(sorted(active)) if evaluated else (nothing, nothing)
        stopping = {k: why for k in sorted(active)
                    if (why := stops(k, trained, *val, target, end == ends[-1]))}
        # The final-accuracy measure evaluates the test split at every evaluation; with a
        # target, only where a model stops (a diverged one has no figures to give).
        tested = active if evaluated and target is None else \
            {k for k, why in stopping.items() if why != "diverged"}
        test = trainer.evaluate(folds.test, sorted(tested))
        for k in tested:
            if not all_finite(test[0][k], test[1][k]):
                stopping[k] = "diverged"
        for k in stopping:
            trainer.stop(k)
        active -= stopping.keys()
        memory_probe.synchronize()
        yield SegmentEnd(end, end % trainer.steps_per_epoch == 0, trained, evaluated, *val, *test,
                         stopping, train_seconds, time.perf_counter() - started - train_seconds,
                         memory_probe.peak())
        if not active:
            return

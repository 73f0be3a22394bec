"""The batched pass: every model of one batch size that needs training, trained together, segment
by segment, each model until it stops.

Two implementations share one interface (``initial``, ``train_until``, ``evaluate``,
``evaluate_validation``, ``stop``, ``state_dict``, ``close``, and ``bytes_per_model``):
``TorchTrainer`` (the PyTorch step: CUDA, and the reference) and ``NativeTrainer`` (the fused
sparse CPU step in ``native_step``). ``implementation_for`` picks one from ``train.step``; it is
part of every model's fingerprint, since the two agree only to float32 tolerance.

``segments`` runs a pass: it trains every active model to the end of each segment (see
``batches.segment_ends``), evaluates them where the schedule says (``train.evaluation_steps``),
and says which models stop there: a model whose figures are no longer finite (diverged), one whose
validation accuracy reached ``train.target``, and every model at the end of its budget.
"""

import math
import time
from dataclasses import dataclass, field
from typing import Optional

import torch

from ..data.splits import scaled
from ..errors import SweepError
from .batches import Replicates, Trained, batch_size_of, segment_ends
from .model import layer_sizes, parameter_count
from .native_step import NativeTrainer
from .torch_step import TorchStep, neg_onehot, with_ones

PROGRESS_EVERY = 100  # steps between progress reports
EVAL_CHUNK = 10_000   # images evaluated at once by the PyTorch step


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


class TorchTrainer:
    def __init__(self, keys, hidden, train_params, folds, device):
        """``keys``: models of one batch size, ordered by replicate."""
        self.train = folds.pool
        self.batch_size = batch_size_of(keys)
        self.steps_per_epoch = train_params.steps_per_epoch(self.batch_size)
        if len(folds.train_rows(0)) != train_params.train_size:
            raise ValueError(f"the folds hold {len(folds.train_rows(0))} training images, the "
                             f"parameters {train_params.train_size}")
        self.K = len(keys)
        replicates = Replicates.of(keys, hidden, train_params, folds)
        self.initial = replicates.initial
        self.validation = replicates.validation                                 # [G]
        self.torch_step = TorchStep(hidden, replicates.initial,
                                    [key.arm.sgd_momentum for key in keys],
                                    [key.arm.method["nesterov"] for key in keys],
                                    [key.arm.sgd_lr for key in keys],
                                    [(g.start, g.stop) for g in replicates.groups], device)
        self.orders = replicates.orders
        self.description = "PyTorch step"
        self.group_of_model = torch.tensor(replicates.group_of, device=device)     # [K]
        self.step = 0
        self._order = None                                                         # [G, N]
        self.stopped = {}  # {k: its weights when it stopped}; the step keeps computing it

    @staticmethod
    def bytes_per_model(hidden, train_params, batch_size) -> int:
        """Weights, velocities and gradients, and the activations of a batch and of an
        evaluation chunk."""
        sizes = layer_sizes(hidden)
        chunk = min(EVAL_CHUNK, train_params.validation_size)
        return 4 * (3 * parameter_count(hidden) + 3 * sizes[1]
                    + 2 * (chunk + batch_size) * sum(sizes[1:]))

    def train_until(self, end, progress=None) -> Trained:
        """Train every model from the current step to global step ``end``, within one epoch.
        ``progress(images)``: model-images so far in this call."""
        device = self.train.images.device
        if self.step % self.steps_per_epoch == 0:
            self._order = self.orders.next_epoch().to(device)                   # [G, N]
        n = self._order.shape[1]
        first = self.step % self.steps_per_epoch
        steps = range(first, first + end - self.step)
        step_losses = torch.zeros(len(steps), self.K, dtype=torch.float64, device=device)
        correct = torch.zeros(self.K, dtype=torch.int64, device=device)
        for i, step in enumerate(steps):
            batch = self._order[:, step * self.batch_size:(step + 1) * self.batch_size]  # [G, B]
            labels = self.train.labels[batch][self.group_of_model]     # [K, B]
            log_probs = self.torch_step.step(with_ones(self.train.images[batch]),
                                             neg_onehot(labels))
            picked = log_probs.gather(2, labels.unsqueeze(2)).squeeze(2)  # [K, B]
            step_losses[i] = -picked.double().sum(1)
            correct += (log_probs.argmax(2) == labels).sum(1)
            if progress is not None and (i + 1) % PROGRESS_EVERY == 0:
                progress(self.K * (i + 1) * self.batch_size)
        self.step = end
        images = min(steps.stop * self.batch_size, n) - first * self.batch_size
        step_losses = step_losses.T.cpu().numpy()                       # [K, steps]
        return Trained(step_losses.sum(1), correct.cpu().numpy().astype(float), images,
                       step_losses)

    def _evaluate(self, split):
        """Mean loss and accuracy of every model on a split, in chunks to bound memory."""
        device = split.images.device
        loss = torch.zeros(self.K, dtype=torch.float64, device=device)
        correct = torch.zeros(self.K, dtype=torch.int64, device=device)
        for start in range(0, len(split), EVAL_CHUNK):
            images = scaled(split.images[start:start + EVAL_CHUNK])            # [n, 784]
            log_probs = torch.log_softmax(self.torch_step.logits(images), -1)  # [K, n, 10]
            labels = split.labels[start:start + EVAL_CHUNK].expand(self.K, -1)  # [K, n]
            loss -= log_probs.gather(2, labels.unsqueeze(2)).squeeze(2).double().sum(1)
            correct += (log_probs.argmax(2) == labels).sum(1)
        return (loss / len(split)).tolist(), (correct.double() / len(split)).tolist()

    def evaluate(self, split, models):
        """Mean loss and accuracy of each model in ``models`` on ``split``; None for others."""
        models = set(models)
        if not models:
            return [None] * self.K, [None] * self.K
        loss, accuracy = self._evaluate(split)
        return ([loss[k] if k in models else None for k in range(self.K)],
                [accuracy[k] if k in models else None for k in range(self.K)])

    def evaluate_validation(self, models):
        """Mean loss and accuracy of each model in ``models`` on its replicate's validation
        fold (one evaluation per distinct fold among them); None for the others."""
        loss, accuracy = [None] * self.K, [None] * self.K
        groups = self.group_of_model.tolist()
        for split in {id(self.validation[groups[k]]): self.validation[groups[k]]
                      for k in models}.values():
            every_loss, every_accuracy = self._evaluate(split)
            for k in models:
                if self.validation[groups[k]] is split:
                    loss[k], accuracy[k] = every_loss[k], every_accuracy[k]
        return loss, accuracy

    def stop(self, k):
        """Model k trains no more: its weights now are the ones it keeps."""
        self.stopped[k] = self.torch_step.state_dict(k)

    def state_dict(self, k):
        return self.stopped.get(k) or self.torch_step.state_dict(k)

    def close(self):
        """Nothing to release beyond its tensors."""


TRAINERS = {"native": NativeTrainer, "torch": TorchTrainer}


def memory_needed(implementation, n_models, n_replicates, hidden, train_params,
                  batch_size) -> int:
    """A generous estimate of the bytes a pass allocates, to refuse before allocating them."""
    # images, orders, each replicate's views of its batches (the native step: two epochs')
    data = 100 * 2 ** 20 + 90 * 2 ** 20 * n_replicates
    return data + n_models * TRAINERS[implementation].bytes_per_model(hidden, train_params,
                                                                      batch_size)


def make_trainer(implementation, keys, hidden, train_params, folds, device):
    """The trainer of ``keys`` (one batch size, ordered by replicate) on ``folds``
    (data.splits.Folds) for a step implementation."""
    return TRAINERS[implementation](keys, hidden, train_params, folds, device)


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


def finite(*values) -> bool:
    """Whether every figure that was measured is finite (None: not measured)."""
    return all(math.isfinite(v) for v in values if v is not None)


def stops(k, trained, val_loss, val_accuracy, target, last) -> Optional[str]:
    """Why model k stops at a segment end (None: it goes on)."""
    if not finite(trained.loss[k], val_loss[k], val_accuracy[k]):
        return "diverged"
    if target is not None and val_accuracy[k] is not None and val_accuracy[k] >= target:
        return "target"
    return "budget" if last else None


def segments(trainer, train_params, folds, memory_probe, progress=None):
    """Train every model of ``trainer`` until it stops; yields a SegmentEnd at each segment's
    end (the models stopping there have stopped when the next is trained). ``progress(step,
    images)`` counts model-images within a segment."""
    batch = trainer.batch_size
    evaluations = set(train_params.evaluation_steps(batch))
    ends = segment_ends(train_params, batch)
    target = train_params.target
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
            if not finite(test[0][k], test[1][k]):
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

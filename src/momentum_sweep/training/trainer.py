"""The batched pass: every model that needs training, trained together, epoch by epoch.

Two implementations share one interface (``initial``, ``train_epoch``, ``evaluate``,
``evaluate_validation``, ``state_dict``, ``close``): ``TorchTrainer`` (the PyTorch step: CUDA, and the
reference) and ``NativeTrainer`` (the fused sparse CPU step in ``native_step``). ``implementation`` picks one;
it is part of every model's fingerprint, since the two agree only to float32 tolerance.

Both take their replicate layout (groups, initial weights, batch orders) from ``batches``, and
each says how much memory a model of its step needs (``bytes_per_model``), so that a pass too
large for the device is refused before it allocates.
"""

import time
from dataclasses import dataclass, field

import torch

from ..data.splits import scaled
from .batches import Replicates
from .model import layer_sizes, parameter_count
from .native_step import NativeTrainer
from .torch_step import TorchStep, neg_onehot, with_ones

PROGRESS_EVERY = 100  # steps between progress reports
EVAL_CHUNK = 10_000   # images evaluated at once by the PyTorch step


def implementation_for(device: torch.device) -> str:
    """The step used on a device: the native step on the CPU, PyTorch's elsewhere."""
    return "native" if device.type == "cpu" else "torch"


class TorchTrainer:
    def __init__(self, keys, hidden, train_params, folds, device):
        self.train = folds.pool
        self.batch_size = train_params.batch_size
        self.K = len(keys)
        replicates = Replicates.of(keys, hidden, train_params, folds)
        self.initial = replicates.initial
        self.validation = replicates.validation                                 # [G]
        self.torch_step = TorchStep(hidden, replicates.initial,
                                    [key.arm.sgd_momentum for key in keys],
                                    [key.arm.sgd_lr for key in keys],
                                    [(g.start, g.stop) for g in replicates.groups], device)
        self.orders = replicates.orders
        self.description = "PyTorch step"
        self.group_of_model = torch.tensor(replicates.group_of, device=device)     # [K]

    @staticmethod
    def bytes_per_model(hidden, train_params) -> int:
        """Weights, velocities and gradients, and the activations of a batch and of an
        evaluation chunk."""
        sizes = layer_sizes(hidden)
        chunk = min(EVAL_CHUNK, train_params.validation_size)
        return 4 * (3 * parameter_count(hidden) + 3 * sizes[1]
                    + 2 * (chunk + train_params.batch_size) * sum(sizes[1:]))

    def train_epoch(self, progress=None):
        """One epoch of every model: the mean training loss and accuracy per model, and each
        model's summed loss of each step's batch, [K, steps]."""
        device = self.train.images.device
        orders = self.orders.next_epoch().to(device)                    # [G, N]
        n = orders.shape[1]
        starts = range(0, n, self.batch_size)
        step_losses = torch.zeros(len(starts), self.K, dtype=torch.float64, device=device)
        correct = torch.zeros(self.K, dtype=torch.int64, device=device)
        for step, start in enumerate(starts):
            batch = orders[:, start:start + self.batch_size]           # [G, B]
            labels = self.train.labels[batch][self.group_of_model]     # [K, B]
            log_probs = self.torch_step.step(with_ones(self.train.images[batch]),
                                             neg_onehot(labels))
            picked = log_probs.gather(2, labels.unsqueeze(2)).squeeze(2)  # [K, B]
            step_losses[step] = -picked.double().sum(1)
            correct += (log_probs.argmax(2) == labels).sum(1)
            if progress is not None and (step + 1) % PROGRESS_EVERY == 0:
                progress(self.K * min(start + self.batch_size, n))
        step_losses = step_losses.T.cpu().numpy()                       # [K, steps]
        return (step_losses.sum(1) / n).tolist(), (correct.double() / n).tolist(), step_losses

    def evaluate(self, split, chunk=EVAL_CHUNK):
        """Mean loss and accuracy of every model on a split, in chunks to bound memory."""
        device = split.images.device
        loss = torch.zeros(self.K, dtype=torch.float64, device=device)
        correct = torch.zeros(self.K, dtype=torch.int64, device=device)
        for start in range(0, len(split), chunk):
            images = scaled(split.images[start:start + chunk])                 # [n, 784]
            log_probs = torch.log_softmax(self.torch_step.logits(images), -1)  # [K, n, 10]
            labels = split.labels[start:start + chunk].expand(self.K, -1)     # [K, n]
            loss -= log_probs.gather(2, labels.unsqueeze(2)).squeeze(2).double().sum(1)
            correct += (log_probs.argmax(2) == labels).sum(1)
        return (loss / len(split)).tolist(), (correct.double() / len(split)).tolist()

    def evaluate_validation(self):
        """Mean loss and accuracy of every model on its replicate's validation fold."""
        loss, accuracy = [None] * self.K, [None] * self.K
        for split in {id(s): s for s in self.validation}.values():
            every_loss, every_accuracy = self.evaluate(split)
            for k, g in enumerate(self.group_of_model.tolist()):
                if self.validation[g] is split:
                    loss[k], accuracy[k] = every_loss[k], every_accuracy[k]
        return loss, accuracy

    def state_dict(self, k):
        return self.torch_step.state_dict(k)

    def close(self):
        """Nothing to release beyond its tensors."""


@dataclass
class EpochStats:
    """One epoch of a pass: per-model losses and accuracies, and the pass's cost."""
    epoch: int
    train_loss: list
    train_accuracy: list
    step_losses: object  # [K, steps] float64: each model's summed loss of each step's batch
    val_loss: list
    val_accuracy: list
    test_loss: list
    test_accuracy: list
    train_seconds: float
    epoch_seconds: float
    memory: dict = field(default_factory=dict)


TRAINERS = {"native": NativeTrainer, "torch": TorchTrainer}


def memory_needed(implementation, n_models, n_replicates, hidden, train_params) -> int:
    """A generous estimate of the bytes a pass allocates, to refuse before allocating them."""
    # images, orders, each replicate's views of its batches (the native step: two epochs')
    data = 100 * 2 ** 20 + 90 * 2 ** 20 * n_replicates
    return data + n_models * TRAINERS[implementation].bytes_per_model(hidden, train_params)


def make_trainer(implementation, keys, hidden, train_params, folds, device):
    """The trainer of ``keys`` (ordered by replicate) on ``folds`` (data.splits.Folds) for a step
    implementation."""
    if implementation == "native":
        return NativeTrainer(keys, hidden, train_params, folds)
    return TorchTrainer(keys, hidden, train_params, folds, device)


def train_epochs(trainer, train_params, folds, memory_probe, progress=None):
    """Train every model of ``trainer``, epoch by epoch; yields EpochStats after each epoch.
    ``progress(epoch, done)`` counts model-images within the epoch."""
    for epoch in range(1, train_params.epochs + 1):
        memory_probe.start_epoch()
        started = time.perf_counter()
        report = None if progress is None else (lambda done, e=epoch: progress(e, done))
        train_loss, train_accuracy, step_losses = trainer.train_epoch(report)
        memory_probe.synchronize()
        train_seconds = time.perf_counter() - started
        val_loss, val_accuracy = trainer.evaluate_validation()
        test_loss, test_accuracy = trainer.evaluate(folds.test)
        memory_probe.synchronize()
        yield EpochStats(epoch, train_loss, train_accuracy, step_losses, val_loss, val_accuracy,
                         test_loss, test_accuracy, train_seconds, time.perf_counter() - started,
                         memory_probe.peak())

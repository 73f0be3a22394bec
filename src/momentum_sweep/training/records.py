"""What a pass records of each of its models, and when it saves them.

Each model gets a row per evaluation (the training figures since the previous one, validation,
and test where it is evaluated), where and why it stopped, its kept weights (epoch 0 and the
epochs of train.checkpoints it completes) and its cost, and is saved into the cache the moment it
stops, so that nothing finished is lost to an interruption.
"""

import os

import numpy as np

from ..finite import or_none
from . import results


def fine_curve(step_losses, step_images, every) -> list:
    """The mean training loss over each run of ``every`` steps (the last run may be shorter),
    to six significant digits; None where it is not finite. step_losses: [steps] each step's
    summed loss; step_images: [steps] the images of each step's batch."""
    starts = np.arange(0, len(step_losses), every)
    means = np.add.reduceat(step_losses, starts) / np.add.reduceat(step_images, starts)
    return [or_none(float(f"{m:.6g}")) for m in means]


def step_sizes(train_params, batch_size, steps) -> np.ndarray:
    """[steps]: the images in each of the first ``steps`` steps' batches (each epoch's last
    batch may be smaller)."""
    n = train_params.train_size
    epoch = np.minimum(batch_size, n - np.arange(0, n, batch_size))
    return np.resize(epoch, steps)


def number(value) -> float | int:
    """An epoch count as JSON holds it: 3, or 0.25 of an epoch."""
    return int(value) if float(value).is_integer() else round(float(value), 6)


class PassRecords:
    """What a pass records of each model: a row per evaluation (the training figures since the
    previous one, validation and test), where and why it stopped, its kept weights, its cost;
    each model is saved into the cache the moment it stops."""

    def __init__(self, keys, inputs, fingerprints, trainer, p, schedule, described, cache):
        self.keys, self.trainer, self.p, self.cache = keys, trainer, p, cache
        self.schedule = schedule
        self.records = {key: {"fingerprint": fingerprints[key], "inputs": inputs[key],
                              "evaluations": [], "stopped": None} for key in keys}
        # a pass is named by its first model: unique, and the same whichever run trained it
        self.timings = {key: {"device": described, "pass": fingerprints[keys[0]][:16],
                              "models_in_pass": len(keys),
                              "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                              "evaluations": []} for key in keys}
        self.kept = {key: {0: trainer.initial[k]} for k, key in enumerate(keys)}
        self.step_losses = {key: [] for key in keys}          # per segment: [steps]
        # since the last row: loss, correct, images, seconds training, seconds evaluating
        self.since = {key: np.zeros(5) for key in keys}
        self.examples = 0

    def add(self, end):
        """A segment's end (trainer.SegmentEnd): rows where models were evaluated or stop."""
        self.examples += end.trained.images
        for k, key in enumerate(self.keys):
            record = self.records[key]
            if record["stopped"] is not None:
                continue
            self.since[key] += (end.trained.loss[k], end.trained.correct[k], end.trained.images,
                                end.train_seconds, end.evaluation_seconds)
            self.step_losses[key].append(end.trained.step_losses[k])
            epoch = end.step // self.schedule.steps_per_epoch
            if end.epoch_ended and epoch in self.schedule.checkpoints:
                self.kept[key][epoch] = self.trainer.state_dict(k)
            why = end.stopping.get(k)
            if end.evaluated or why:
                self.row(key, k, end, why)
            if why:
                record["stopped"] = {"step": end.step, "reason": why}
                self.save(key, k)

    def row(self, key, k, end, why):
        loss, correct, images, train_seconds, evaluation_seconds = self.since[key]
        figures = {"train_loss": loss / images, "train_accuracy": correct / images,
                   "val_loss": end.val_loss[k], "val_accuracy": end.val_accuracy[k],
                   "test_loss": end.test_loss[k], "test_accuracy": end.test_accuracy[k]}
        if why == "diverged":  # not results, even the finite ones (an accuracy of NaN logits
            figures = dict.fromkeys(figures)  # is that of always answering class 0)
        self.records[key]["evaluations"].append({
            "step": end.step, "epoch": number(end.step / self.schedule.steps_per_epoch),
            "examples": self.examples, **figures, "diverged": why == "diverged"})
        self.timings[key]["evaluations"].append({
            "step": end.step, "train_seconds": train_seconds,
            "evaluation_seconds": evaluation_seconds,
            "samples_per_second": images / train_seconds, **end.memory})
        self.since[key] = np.zeros(5)

    def save(self, key, k):
        """Model k's folder, into the cache: it has stopped."""
        record = self.records[key]
        losses = np.concatenate(self.step_losses[key])
        record["fine_train_loss"] = {
            "every": self.p.train.loss_every,
            "loss": fine_curve(losses, step_sizes(self.p.train, self.schedule.batch_size,
                                                  len(losses)), self.p.train.loss_every)}
        results.write_folder(self.cache.path(record["fingerprint"]), self.trainer.state_dict(k),
                             record, self.timings[key], self.kept[key])
        if record["stopped"]["reason"] == "diverged":
            print(f"{key.label}: diverged by step {record['stopped']['step']} (loss not "
                  f"finite)", flush=True)

    def live(self):
        """{key: its latest row} of the models evaluated so far."""
        return {key: r["evaluations"][-1] for key, r in self.records.items() if r["evaluations"]}

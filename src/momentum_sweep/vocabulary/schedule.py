"""How a model at one batch size trains and is evaluated, computed once from train.* and the
batch size (``Schedule.of``) and asked everywhere else: steps per epoch, the budget, the steps
where it is evaluated, the epochs whose weights are kept, and where a pass's segments end.

- An epoch is one pass over the training images in the replicate's order; batches are
  consecutive runs of it, the last one shorter when the batch size does not divide them.
- The budget: ``train.epochs`` epochs, or, where that is fewer than ``train.min_steps`` steps,
  as many whole epochs as make ``min_steps`` (docs/design.md, "The budget").
- Evaluations: each epoch's end; with a target, a schedule geometric in steps instead
  (``EVALUATION_RATIO``, ``EVALUATION_SPACING``), ending with the budget's last step, empty when
  the budget ends before the first evaluation.
- Checkpoints: the epochs of ``train.checkpoints`` ("final" is the budget's last epoch).
"""

import math
from dataclasses import dataclass

# With a target, validation accuracy is evaluated at most this factor of steps after the last
# evaluation (so steps to the target are known within 10%)...
EVALUATION_RATIO = 1.1
# ...and at least this many validation folds' worth of training images after it: an evaluation
# costs about half of training on as many images (docs/performance.md), so evaluating costs at
# most a quarter of training.
EVALUATION_SPACING = 2


@dataclass(frozen=True)
class Schedule:
    batch_size: int
    steps_per_epoch: int
    epochs: int                  # the budget in whole epochs
    evaluations: tuple | range   # the steps (1 = after the first) after which it is evaluated
    checkpoints: tuple           # the epochs whose weights are kept, ascending
    target: float | None         # train.target: where a model may stop

    @classmethod
    def of(cls, train_params, batch_size) -> "Schedule":
        t = train_params
        per_epoch = -(-t.train_size // batch_size)
        epochs = max(t.epochs, -(-t.min_steps // per_epoch))
        total = epochs * per_epoch
        if t.target is None:
            evaluations = range(per_epoch, total + 1, per_epoch)
        else:
            evaluations = geometric_evaluations(
                -(-EVALUATION_SPACING * t.validation_size // batch_size), total)
        checkpoints = sorted({epochs if e == "final" else e for e in t.checkpoints})
        # a range, not a tuple: a budget of 10^12 steps is refused by the memory check, not
        # by building its list of epochs
        return cls(batch_size, per_epoch, epochs,
                   evaluations if isinstance(evaluations, range) else tuple(evaluations),
                   tuple(checkpoints), t.target)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def segment_ends(self) -> list[int]:
        """The steps where a pass's segments end: every evaluation and every epoch's end,
        ascending."""
        epoch_ends = range(self.steps_per_epoch, self.total_steps + 1, self.steps_per_epoch)
        return sorted({*self.evaluations, *epoch_ends})

    @property
    def budget(self) -> dict:
        """How long a model trains and where it may stop, as its fingerprint and record hold
        it."""
        return {"epochs": self.epochs, "steps": self.total_steps, "target": self.target,
                "evaluations": None if self.target is None else list(self.evaluations)}


def geometric_evaluations(gap, total) -> list[int]:
    """Steps ``gap`` apart at first, then at most EVALUATION_RATIO apart, and the last, ``total``;
    none if the budget ends before the first."""
    found, step = [], gap
    while step < total:
        found.append(step)
        step = max(step + gap, math.ceil(step * EVALUATION_RATIO))
    return found + [total] if total >= gap else []

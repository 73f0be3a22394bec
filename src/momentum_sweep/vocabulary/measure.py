"""What a run measures, chosen once by ``train.target`` and asked everywhere after:

- final accuracy (no target): every model trains its whole budget, and the figure compared is
  its final test accuracy (``analysis/accuracy.py``);
- steps to a target (``train.target``, a validation accuracy): a model stops at the first
  evaluation where it has ``reached`` the target, and the figure compared is the steps it took
  (``analysis/steps.py``).

An epochs table holds the target in its ``target`` column (empty without one); a summary in its
``measure``.
"""

import math
from dataclasses import dataclass


def reached(val_accuracy, target) -> bool:
    """Whether a validation accuracy has reached the target: the one rule the trainer stops by
    and the analysis counts steps by."""
    return val_accuracy is not None and not math.isnan(val_accuracy) and val_accuracy >= target


@dataclass(frozen=True)
class Measure:
    target: float | None  # None: final accuracy

    @property
    def by_steps(self) -> bool:
        return self.target is not None

    @classmethod
    def of_table(cls, table) -> "Measure":
        """The measure of an epochs table (one run, or experiments joined)."""
        targets = table["target"].dropna()
        return cls(float(targets.iloc[0]) if len(targets) else None)

    @classmethod
    def of_summary(cls, summary) -> "Measure":
        return cls(summary["measure"].get("target"))

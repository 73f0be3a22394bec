"""Arms, replicates and models: the one small type the trainer, results, metrics and plots share.

- An *arm* is one (learning rate, momentum) pair: each listed momentum at ``train.lr``, plus,
  when ``train.lr_control`` is on, a *control* for each listed momentum mu > 0: plain SGD
  (momentum 0) at lr/(1 - mu), the step size that momentum mu reaches in steady state.
- A *replicate* r fixes the initial weights and the mini-batch order; every arm of a replicate
  shares both, so arms are compared in pairs. The validation split belongs to the data, not to
  the replicate: it is the same for every model.
- A *model* is one (arm, replicate).
"""

from dataclasses import dataclass

import numpy as np


def momentum_name(momentum: float) -> str:
    """How a momentum value is written in folder names and tables: 0.0, 0.1, 0.25."""
    return repr(float(momentum))


def momentum_key(momentum: float) -> str:
    """A momentum as a metrics key without dots (0.25 -> 0p25), so DVC's flattened column names
    (`verdict.0p25`) read one way only."""
    return momentum_name(momentum).replace(".", "p")


@dataclass(frozen=True)
class Arm:
    """``momentum``: the listed momentum this arm is about. A control trains with momentum 0 at
    ``lr`` = train.lr/(1 - momentum); any other arm trains with ``momentum`` at ``lr``."""
    momentum: float
    lr: float
    control: bool = False

    @property
    def sgd_momentum(self) -> float:
        """The momentum the optimiser actually uses."""
        return 0.0 if self.control else self.momentum

    @property
    def name(self) -> str:
        """Folder name and table label: momentum_0.4, control_0.4."""
        return f"{'control' if self.control else 'momentum'}_{momentum_name(self.momentum)}"

    @property
    def rule(self) -> str:
        """How a control trains: SGD at lr 0.1667."""
        return f"SGD at lr {self.lr:.4g}"

    @property
    def label(self) -> str:
        """How logs, figures and tables name it: momentum 0.4, control 0.4 (SGD at lr 0.1667)."""
        if self.control:
            return f"control {momentum_name(self.momentum)} ({self.rule})"
        return f"momentum {momentum_name(self.momentum)}"


@dataclass(frozen=True)
class ModelKey:
    """One model: an arm in one replicate."""
    arm: Arm
    replicate: int

    @property
    def name(self) -> str:
        """Its folder below models/: momentum_0.4/replicate_2."""
        return f"{self.arm.name}/replicate_{self.replicate}"

    @property
    def label(self) -> str:
        return f"{self.arm.label} replicate {self.replicate}"


def arms(p) -> list[Arm]:
    """The listed momenta at train.lr in the order given, then their controls."""
    listed = [Arm(m, p.train.lr) for m in p.momenta]
    controls = [Arm(m, p.train.lr / (1 - m), control=True)
                for m in p.momenta if p.train.lr_control and m > 0]
    return listed + controls


def in_order(arm) -> tuple:
    """How arms are listed in tables and figures: momenta in increasing order, then controls."""
    return (arm.control, arm.momentum)


def models(p) -> list[ModelKey]:
    """Every model the parameters ask for, replicate by replicate."""
    return [ModelKey(arm, r) for r in range(p.train.replicates) for arm in arms(p)]


def by_arm(keys, values) -> dict:
    """{arm: [the value of each of its models]}, arms in first-seen order."""
    grouped = {}
    for key, value in zip(keys, values):
        grouped.setdefault(key.arm, []).append(value)
    return grouped


def replicate_seeds(seed: int, replicate: int) -> dict:
    """Independent seeds for replicate r's initial weights and mini-batch order, derived from
    ``train.seed`` with NumPy's SeedSequence (so nearby seeds give unrelated streams)."""
    init, order = np.random.SeedSequence([seed, replicate]).generate_state(2, np.uint64)
    return {"init": int(init), "order": int(order)}

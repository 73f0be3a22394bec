"""Arms, replicates and models: the one small type the trainer, results, metrics and plots share.

- An *arm* is one (learning rate, momentum) pair: each listed momentum at each listed
  ``train.lr``, plus, when ``train.lr_control`` is on, a *control* for each pair with mu > 0:
  plain SGD (momentum 0) at lr/(1 - mu), the step size that momentum mu reaches in steady state.
  A control whose step is a listed lr (0.05/(1 - 0.5) = 0.1) is that lr's momentum-0 arm: one
  model, trained once, compared in both roles.
- A *replicate* r fixes the initial weights, the mini-batch order and the validation fold; every
  arm of a replicate shares all three, so arms are compared in pairs.
- A *model* is one (arm, replicate).
"""

from dataclasses import dataclass

import numpy as np


def momentum_name(momentum: float) -> str:
    """How a momentum value is written in folder names and tables: 0.0, 0.1, 0.25."""
    return repr(float(momentum))


def lr_name(lr: float) -> str:
    """How a learning rate is written in folder names and tables: 0.1, 0.025, 1e-05."""
    return repr(float(lr))


def momentum_key(momentum: float) -> str:
    """A momentum as a metrics key without dots (0.25 -> 0p25), so DVC's flattened column names
    (`verdict.0p25`) read one way only."""
    return momentum_name(momentum).replace(".", "p")


def lr_key(lr: float) -> str:
    """A learning rate as a metrics key without dots: 0.05 -> 0p05."""
    return lr_name(lr).replace(".", "p")


def pair_key(arm, several_lrs: bool) -> str:
    """A listed pair as a metrics key: its momentum (0p4) when one lr is listed, else with its
    lr (0p4_lr0p05)."""
    return f"{momentum_key(arm.momentum)}_lr{lr_key(arm.lr)}" if several_lrs else \
        momentum_key(arm.momentum)


def several_lrs(arms_found) -> bool:
    """Whether the listed arms hold more than one learning rate."""
    return len({a.lr for a in arms_found if not a.control}) > 1


def same_step(a: float, b: float) -> bool:
    """Whether two learning rates train the same model: equal in float32, as both steps use
    them."""
    return np.float32(a) == np.float32(b)


@dataclass(frozen=True)
class Arm:
    """``momentum`` and ``lr``: the listed pair this arm is about. A control trains with
    momentum 0 at lr/(1 - momentum); any other arm trains with ``momentum`` at ``lr``."""
    momentum: float
    lr: float
    control: bool = False

    @property
    def sgd_momentum(self) -> float:
        """The momentum the optimiser actually uses."""
        return 0.0 if self.control else self.momentum

    @property
    def sgd_lr(self) -> float:
        """The learning rate the optimiser actually uses."""
        return self.lr / (1 - self.momentum) if self.control else self.lr

    @property
    def effective_lr(self) -> float:
        """The steady-state step of its update, lr/(1 - momentum): a control's equals its
        momentum's."""
        return self.lr / (1 - self.momentum)

    @property
    def name(self) -> str:
        """Folder name and table key: momentum_0.4_lr_0.1, control_0.4_lr_0.1."""
        kind = "control" if self.control else "momentum"
        return f"{kind}_{momentum_name(self.momentum)}_lr_{lr_name(self.lr)}"

    @property
    def rule(self) -> str:
        """How it trains: SGD at lr 0.1667."""
        return f"SGD at lr {self.sgd_lr:.4g}"

    @property
    def label(self) -> str:
        """How logs, figures and tables name it: momentum 0.4 at lr 0.1, control 0.4 at lr 0.1
        (SGD at lr 0.1667)."""
        if self.control:
            return f"control {momentum_name(self.momentum)} at lr {self.lr:.4g} ({self.rule})"
        return f"momentum {momentum_name(self.momentum)} at lr {self.lr:.4g}"


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


def grid(p) -> list[Arm]:
    """Every listed momentum at every listed learning rate, lr by lr."""
    return [Arm(m, lr) for lr in p.train.lrs for m in p.momenta]


def control_of(arm, candidates):
    """The arm that ``arm``'s control is among ``candidates``: its control, or the momentum-0
    arm whose lr is the control's step; None if neither is there (or arm has momentum 0)."""
    if arm.control or arm.momentum == 0:
        return None
    for other in candidates:
        if other.control and (other.momentum, other.lr) == (arm.momentum, arm.lr):
            return other
    for other in candidates:
        if not other.control and other.momentum == 0 and same_step(other.lr, arm.effective_lr):
            return other
    return None


def arms(p) -> list[Arm]:
    """The grid, then the controls of its pairs with mu > 0 that are not already grid arms."""
    listed = grid(p)
    controls = [Arm(a.momentum, a.lr, control=True) for a in listed
                if p.train.lr_control and a.momentum > 0 and control_of(a, listed) is None]
    return listed + controls


def in_order(arm) -> tuple:
    """How arms are listed in tables and figures: lr by lr, momenta in increasing order, then
    controls."""
    return (arm.control, arm.lr, arm.momentum)


def pairs(arms_found) -> dict:
    """The paired comparisons among ``arms_found``: {"vs_zero": [(arm, momentum 0 at its lr)],
    "vs_control": [(arm, its control)]}, arms in order."""
    ordered = sorted(arms_found, key=in_order)
    listed = [a for a in ordered if not a.control]
    zero = {a.lr: a for a in listed if a.momentum == 0}
    return {
        "vs_zero": [(a, zero[a.lr]) for a in listed if a.momentum != 0 and a.lr in zero],
        "vs_control": [(a, control_of(a, ordered)) for a in listed
                       if control_of(a, ordered) is not None],
    }


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

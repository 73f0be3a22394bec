"""Arms, replicates and models: the one small type the trainer, results, metrics and plots share.

- An *arm* is one point of the grid: a batch size, a learning rate and a momentum, with
  heavy-ball or Nesterov's update. The grid is every listed momentum (and momentum 0, the
  reference, always) at every listed ``train.lr`` and ``train.batch_size``, and Nesterov's update
  at the momenta ``train.nesterov`` lists. With ``train.effective_lr`` each listed value is the
  step lr/(1 - mu) (the arm's ``lr`` is then that step, ``effective`` says so): momentum mu trains
  at lr*(1 - mu), so every momentum covers the same steps.
- When ``train.lr_control`` is on, each arm with mu > 0 has a *control*: plain SGD (momentum 0)
  at lr/(1 - mu), the step momentum mu reaches in steady state, at the same batch size (Nesterov's
  update has the same steady state, so it shares heavy-ball's control). A control whose step is
  one of the grid's momentum-0 arms (0.05/(1 - 0.5) = 0.1) is that arm: one model, trained once,
  compared in both roles.
- A *replicate* r fixes the initial weights, the order of examples in each epoch and the
  validation fold; every arm of a replicate shares all three (a batch is a consecutive run of
  that order), so arms are compared in pairs, across batch sizes too.
- A *model* is one (arm, replicate). What it trains (``Arm.method``) decides it, not which arm
  asked for it: a control and a grid arm with the same step are the same model.
"""

import re
from dataclasses import dataclass

import numpy as np

KINDS = ("momentum", "nesterov", "control")


def momentum_name(momentum: float) -> str:
    """How a momentum value is written in folder names and tables: 0.0, 0.1, 0.25."""
    return repr(float(momentum))


def lr_name(lr: float) -> str:
    """How a learning rate is written in folder names and tables: 0.1, 0.025, 1e-05."""
    return repr(float(lr))


def as_float32(value: float) -> float:
    """The float32 value training uses, as the shortest decimal that is that value (0.1 * (1 -
    0.9) = 0.010000000000000002 is 0.01 there): equal for two arms that train the same model."""
    return float(str(np.float32(value)))


def key(value: float) -> str:
    """A number as a metrics key without dots (0.25 -> 0p25), so DVC's flattened column names
    (`vs_zero.0p25`) read one way only."""
    return repr(float(value)).replace(".", "p")


def same_step(a: float, b: float) -> bool:
    """Whether two learning rates train the same model: equal in float32, as both steps use
    them."""
    return np.float32(a) == np.float32(b)


@dataclass(frozen=True)
class Arm:
    """``momentum``, ``lr`` and ``batch_size``: the grid point this arm is about, ``lr`` as
    listed (the step lr/(1 - momentum) when ``effective``). A control trains plain SGD at the
    step; any other arm trains with ``momentum`` at its learning rate, Nesterov's update if
    ``nesterov``."""
    momentum: float
    lr: float
    batch_size: int
    nesterov: bool = False
    control: bool = False
    effective: bool = False

    @property
    def kind(self) -> str:
        """momentum, nesterov or control."""
        return "control" if self.control else "nesterov" if self.nesterov else "momentum"

    @property
    def sgd_momentum(self) -> float:
        """The momentum the optimiser actually uses."""
        return 0.0 if self.control else self.momentum

    @property
    def sgd_lr(self) -> float:
        """The learning rate the optimiser actually uses."""
        return self.effective_lr if self.control else \
            self.lr * (1 - self.momentum) if self.effective else self.lr

    @property
    def effective_lr(self) -> float:
        """The steady-state step of its update, lr/(1 - momentum): a control's equals its
        momentum's."""
        return self.lr if self.effective else self.lr / (1 - self.momentum)

    @property
    def method(self) -> dict:
        """What the model trains, in the precision training uses: the part of its fingerprint
        that the arm decides."""
        return {"lr": as_float32(self.sgd_lr), "momentum": as_float32(self.sgd_momentum),
                "nesterov": self.nesterov and not self.control, "batch_size": self.batch_size}

    @property
    def sharpness_limit(self) -> float:
        """The largest Hessian eigenvalue its update is stable along on a quadratic: 2/lr for
        plain SGD, 2(1 + mu)/lr for heavy-ball, 2(1 + mu)/((1 + 2 mu) lr) for Nesterov's."""
        mu, lr = self.sgd_momentum, self.sgd_lr
        return (2 + 2 * mu) / (lr * (1 + 2 * mu if self.method["nesterov"] else 1))

    @property
    def reference(self) -> "Arm":
        """Momentum 0 at the same listed lr and batch size: what the arm is compared with."""
        return Arm(0.0, self.lr, self.batch_size, effective=self.effective)

    @property
    def listed_as(self) -> str:
        """What its listed value ``lr`` is: "lr", or "step" (lr/(1 - momentum), ``effective``)."""
        return "step" if self.effective else "lr"

    @property
    def name(self) -> str:
        """Folder name and table key: momentum_0.4_lr_0.1_batch_20, control_0.4_lr_0.1_batch_20,
        nesterov_0.9_step_0.1_batch_1024."""
        return (f"{self.kind}_{momentum_name(self.momentum)}_{self.listed_as}_{lr_name(self.lr)}"
                f"_batch_{self.batch_size}")

    @classmethod
    def from_name(cls, name: str) -> "Arm":
        """The arm a folder name stands for; ValueError if it is not one."""
        found = re.fullmatch(r"(momentum|nesterov|control)_([^_]+)_(lr|step)_([^_]+)_batch_(\d+)",
                             name)
        if not found:
            raise ValueError(f"{name!r} is not an arm's name (like momentum_0.4_lr_0.1_batch_20)")
        kind, momentum, listed, lr, batch = found.groups()
        try:
            arm = cls(float(momentum), float(lr), int(batch), nesterov=kind == "nesterov",
                      control=kind == "control", effective=listed == "step")
        except ValueError:
            arm = None
        if arm is None or arm.name != name:
            raise ValueError(f"{name!r} is not an arm's name as this code writes them")
        return arm

    @property
    def sgd_rule(self) -> str:
        """How the optimiser trains it, in words: "SGD at lr 0.1667"."""
        return f"SGD at lr {self.sgd_lr:.4g}"

    @property
    def label(self) -> str:
        """How logs, figures and tables name it: momentum 0.4 at lr 0.1, batch 20; control 0.4
        at lr 0.1, batch 20 (SGD at lr 0.1667); nesterov 0.9 at step 0.1 (lr 0.01), batch 1024."""
        where = f"at {self.listed_as} {self.lr:.4g}"
        if self.effective and not self.control and self.momentum:
            where += f" (lr {self.sgd_lr:.4g})"
        where += f", batch {self.batch_size}"
        if self.control:
            return f"control {momentum_name(self.momentum)} {where} ({self.sgd_rule})"
        return f"{self.kind} {momentum_name(self.momentum)} {where}"

    @property
    def line(self) -> tuple:
        """The update it is one point of, whatever its lr and batch size: (momentum, nesterov);
        plain SGD (its controls included) is (0.0, False)."""
        return (0.0, False) if self.control else (self.momentum, self.nesterov)


# How each column that names an arm in a table, a summary or a log is computed from it: one
# definition; each output picks its columns (``arm_columns``).
ARM_COLUMNS = {"arm": lambda a: a.name, "kind": lambda a: a.kind,
               "line": lambda a: line_key(a.line), "momentum": lambda a: a.momentum,
               "nesterov": lambda a: a.nesterov, "lr": lambda a: a.lr,
               "batch_size": lambda a: a.batch_size, "sgd_lr": lambda a: a.sgd_lr,
               "effective_lr": lambda a: a.effective_lr, "control": lambda a: a.control}


def arm_columns(arm, names) -> dict:
    """{name: its value for ``arm``} of the ARM_COLUMNS ``names``, in that order."""
    return {name: ARM_COLUMNS[name](arm) for name in names}


def arm_of(entry) -> Arm:
    """The arm of a summary's row (an arm's entry, a comparison, a model)."""
    return Arm.from_name(entry["arm"])


def cell_label(arm, lrs=(), batches=()) -> str:
    """An arm in a table cell or a metrics value: its line (0.4, n0.9), and its lr and batch size
    where ``lrs`` and ``batches`` (what the run lists) hold several (0.4 lr 0.05 b1024)."""
    return (line_label(arm.line) + (f" lr {arm.lr:g}" if len(set(lrs)) > 1 else "")
            + (f" b{arm.batch_size}" if len(set(batches)) > 1 else ""))


def line_name(line) -> str:
    """momentum 0.9, nesterov 0.9, or momentum 0.0 (plain SGD)."""
    momentum, nesterov = line
    return f"{'nesterov' if nesterov else 'momentum'} {momentum_name(momentum)}"


def line_label(line) -> str:
    """A line in a table cell: 0.4, n0.9 (Nesterov)."""
    momentum, nesterov = line
    return ("n" if nesterov else "") + f"{momentum:g}"


def line_key(line) -> str:
    """A line as a metrics key: 0p9, n0p9 (Nesterov)."""
    momentum, nesterov = line
    return ("n" if nesterov else "") + key(momentum)


@dataclass(frozen=True)
class ModelKey:
    """One model: an arm in one replicate."""
    arm: Arm
    replicate: int

    @property
    def name(self) -> str:
        """Its folder below models/: momentum_0.4_lr_0.1_batch_20/replicate_2."""
        return f"{self.arm.name}/replicate_{self.replicate}"

    @property
    def label(self) -> str:
        return f"{self.arm.label} replicate {self.replicate}"


def grid(p) -> list[Arm]:
    """Every momentum (0 included) at every listed lr and batch size, with Nesterov's update
    too where listed; batch size by batch size, lr by lr."""
    t = p.train
    found = []
    for batch in t.batch_sizes:
        for lr in t.lrs:
            for m in p.momenta:
                for nesterov in (False, True) if m in t.nesterov_momenta else (False,):
                    found.append(Arm(m, lr, batch, nesterov=nesterov, effective=t.effective_lr))
    return found


def control_of(arm, candidates):
    """The arm that ``arm``'s control is among ``candidates``: its control, or the momentum-0
    arm at its batch size whose lr is the control's step; None if neither is there (or arm has
    momentum 0)."""
    if arm.control or arm.momentum == 0:
        return None
    control = Arm(arm.momentum, arm.lr, arm.batch_size, control=True, effective=arm.effective)
    if control in candidates:
        return control
    for other in candidates:
        if not other.control and other.momentum == 0 and other.batch_size == arm.batch_size \
                and same_step(other.sgd_lr, arm.effective_lr):
            return other
    return None


def arms(p) -> list[Arm]:
    """The grid, then the controls of its arms with mu > 0 that are not already grid arms."""
    listed = grid(p)
    controls = []
    for a in listed:
        control = Arm(a.momentum, a.lr, a.batch_size, control=True, effective=a.effective)
        if p.train.lr_control and a.momentum > 0 and control_of(a, listed) is None \
                and control not in controls:
            controls.append(control)
    return listed + controls


def in_order(arm) -> tuple:
    """How arms are listed in tables and figures: batch size by batch size, lr by lr, momenta in
    increasing order (heavy-ball before Nesterov), then controls."""
    return (arm.control, arm.batch_size, arm.lr, arm.momentum, arm.nesterov)


FAMILIES = ("vs_zero", "vs_control")  # the paired comparisons' families, in order


def pairs(arms_found) -> dict:
    """The paired comparisons among ``arms_found``, by family: {"vs_zero": [(arm, momentum 0 at its
    lr and batch size)], "vs_control": [(arm, its control)]}, arms in order."""
    ordered = sorted(arms_found, key=in_order)
    listed = [a for a in ordered if not a.control]
    present = set(listed)
    return {
        "vs_zero": [(a, a.reference) for a in listed if a.momentum != 0 and a.reference in present],
        "vs_control": [(a, control_of(a, ordered)) for a in listed
                       if control_of(a, ordered) is not None],
    }


def models(p) -> list[ModelKey]:
    """Every model the parameters ask for, replicate by replicate."""
    return [ModelKey(arm, r) for r in range(p.train.replicates) for arm in arms(p)]


def replicate_seeds(seed: int, replicate: int) -> dict:
    """Independent seeds for replicate r's initial weights and mini-batch order, derived from
    ``train.seed`` with NumPy's SeedSequence (so nearby seeds give unrelated streams)."""
    init, order = np.random.SeedSequence([seed, replicate]).generate_state(2, np.uint64)
    return {"init": int(init), "order": int(order)}

"""params.yaml: its schema, and validation that names the key, the value and what is allowed.

Every default lives in params.yaml itself; the schema only says what is allowed, so every key is
required. The file is read as DVC reads it (YAML 1.2, ruamel.yaml): `dvc exp run -S train.lr=1e-5`
writes `lr: 1e-05`, a number in YAML 1.2 and a string in YAML 1.1.

``momentum``, ``train.lr`` and ``train.batch_size`` are each a list *or* one number: `dvc exp run
-S momentum=0.4` replaces the list with the number 0.4, which means "this experiment is about
momentum 0.4" (momentum 0, the reference every momentum is compared with, is always trained). That
is why training is one stage rather than a DVC foreach/matrix, which cannot expand over a number.

Every stage loads (and so validates) the whole file before it works. The `params` stage
(``preflight``) depends on the whole file, so an edit of any key (a misspelled one included)
makes DVC run it first, and an error stops the run.
"""

import math
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import numpy as np
from pydantic import (BaseModel, ConfigDict, Field, PlainValidator, ValidationError,
                      field_validator)
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from .data.mnist import TRAIN_IMAGES
from .errors import SweepError
from .vocabulary.schedule import Schedule

PARAMS_FILE = Path("params.yaml")
FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_TINY = float(np.finfo(np.float32).tiny)  # the smallest normal float32, 1.18e-38
LARGEST_MOMENTUM = float(np.nextafter(np.float32(1), np.float32(0)))  # 0.99999994


def fits_float32(value: float) -> bool:
    return math.isfinite(value) and abs(value) <= FLOAT32_MAX


class Section(BaseModel):
    # strict: "0.1" (a string) or true (a bool) is not silently taken as a number; forbid: a typo
    # in a key is an error instead of a setting that is quietly ignored.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1)]


def as_list(value) -> list:
    """A key that is a list or one number, as a list."""
    return list(value) if isinstance(value, list) else [value]


def one_or_list(value, check, what, empty=False):
    """A number or a list of distinct numbers (non-empty unless ``empty``), each passed through
    ``check``; two values that are equal in float32 (the precision training uses) are the same
    value."""
    values = as_list(value)
    if not values and not empty:
        raise ValueError(f"the list is empty; list at least one {what}")
    checked = [check(v) for v in values]
    rounded = [np.float32(v) for v in checked]
    duplicates = sorted({v for v, r in zip(checked, rounded) if rounded.count(r) > 1})
    if duplicates:
        why = "" if all(isinstance(v, int) for v in checked) else \
            " (equal in float32, the precision training uses)"
        raise ValueError(f"{duplicates} listed more than once{why}; list each {what} once")
    return checked if isinstance(value, list) else checked[0]


def _lr(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{value!r} is not a valid number: each learning rate is a number > 0 "
                         f"(a list of them, or one)")
    if not value > 0:
        raise ValueError(f"{value!r}: each learning rate must be greater than 0")
    if not fits_float32(value):
        raise ValueError(f"{value!r} is too large: training runs in float32, whose largest "
                         f"value is {FLOAT32_MAX:.4g}")
    # A control's lr, lr/(1 - momentum), is never smaller: this check covers it too.
    rounded = float(np.float32(value))
    if rounded < FLOAT32_TINY:
        became = "0" if rounded == 0 else f"{rounded:.4g}, a subnormal that has lost precision"
        raise ValueError(f"{value!r} is too small: it rounds to {became} in float32, the "
                         f"precision training uses; the smallest allowed is {FLOAT32_TINY:.4g}")
    return float(value)


def _momentum(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{value!r} is not allowed: each momentum is a number with "
                         f"0 <= momentum < 1 (a list of them, or one)")
    if np.float32(value) >= 1:
        raise ValueError(f"{value!r} rounds to 1.0 in float32, the precision training uses; "
                         f"the largest momentum below 1 is {LARGEST_MOMENTUM!r}")
    return float(value) + 0.0  # + 0.0 turns -0.0 into 0.0: one momentum, one name


def _batch_size(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{value!r} is not allowed: each batch size is a whole number >= 1 "
                         f"(a list of them, or one)")
    return value


def one_or_list_of(check, what, kind=float, empty=False):
    """The type of a key that is one number or a list of them (see ``one_or_list``)."""
    return Annotated[Union[kind, list[kind]],
                     PlainValidator(lambda value: one_or_list(value, check, what, empty))]


LearningRates = one_or_list_of(_lr, "learning rate")
Momenta = one_or_list_of(_momentum, "momentum")
BatchSizes = one_or_list_of(_batch_size, "batch size", int)
NesterovMomenta = one_or_list_of(_momentum, "momentum", empty=True)
Target = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]


class DataParams(Section):
    source: Literal["carried", "download"]
    mirrors: Optional[list[str]]


class ModelParams(Section):
    hidden: Annotated[list[Count], Field(min_length=1)]


class TrainParams(Section):
    lr: LearningRates
    effective_lr: bool
    batch_size: BatchSizes
    nesterov: NesterovMomenta
    epochs: Count
    min_steps: Annotated[int, Field(ge=0)]
    target: Optional[Target]
    replicates: Annotated[int, Field(ge=1, le=10_000)]
    lr_control: bool
    seed: Annotated[int, Field(ge=0, lt=2 ** 63)]
    validation_size: Count
    max_train_images: Optional[Annotated[int, Field(ge=2, le=TRAIN_IMAGES)]]
    device: Literal["auto", "cpu", "cuda"]
    step: Literal["auto", "native", "torch"]
    init_scale: Positive
    checkpoints: list[Union[Annotated[int, Field(ge=0)], Literal["final"]]]
    loss_every: Count
    cross_validation: bool

    @property
    def lrs(self) -> list[float]:
        """The learning rates, always as a list of floats, in the order given."""
        return as_list(self.lr)

    @property
    def batch_sizes(self) -> list[int]:
        """The batch sizes, always as a list, in the order given."""
        return as_list(self.batch_size)

    @property
    def nesterov_momenta(self) -> list[float]:
        return as_list(self.nesterov)

    @property
    def folds(self) -> int:
        """How many validation folds of validation_size images the used images hold when
        cross-validating; 1 (the one fixed hold-out) when not."""
        return self.images_used // self.validation_size if self.cross_validation else 1

    @field_validator("checkpoints")
    @classmethod
    def _distinct(cls, value):
        duplicates = [e for e in dict.fromkeys(value) if value.count(e) > 1]
        if duplicates:
            raise ValueError(f"{duplicates} listed more than once; list each epoch once")
        return value

    @property
    def images_used(self) -> int:
        """MNIST training images used, the validation split included."""
        return self.max_train_images or TRAIN_IMAGES

    @property
    def train_size(self) -> int:
        return self.images_used - self.validation_size


Point = Annotated[list[Annotated[float, Field(allow_inf_nan=False)]],
                  Field(min_length=2, max_length=2)]


class ToySurfaceParams(Section):
    start: Point
    lr: Positive
    steps: Annotated[int, Field(ge=1, le=100_000)]


class MinimaParams(ToySurfaceParams):
    tilt: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]


class LandscapeParams(Section):
    saddle: ToySurfaceParams
    minima: MinimaParams


class LossSurfaceParams(Section):
    probe_size: Count
    escape_loss: Positive
    line_points: Annotated[int, Field(ge=2, le=1000)]
    barrier_tolerance: Positive
    lanczos_tol: Annotated[float, Field(gt=0, lt=1)]
    lanczos_maxiter: Count
    sharpness_batches: Count


class Params(Section):
    momentum: Momenta
    data: DataParams
    model: ModelParams
    train: TrainParams
    landscape: LandscapeParams
    surface: LossSurfaceParams

    @property
    def momenta(self) -> list[float]:
        """The momenta trained: momentum 0 (the reference, always trained), then the listed
        values in the order given."""
        listed = as_list(self.momentum)
        return listed if 0.0 in listed else [0.0, *listed]

    def check_consistency(self, source):
        """Checks that need several keys at once; pydantic's errors would name only one."""
        t = self.train
        if t.train_size < 1:
            raise SweepError(f"{source}: train.validation_size = {t.validation_size}: leaves no "
                             f"training data out of {t.images_used} images; it must be below "
                             f"{t.images_used} (see train.max_train_images)")
        large = [b for b in t.batch_sizes if b > t.train_size]
        if large:
            raise SweepError(f"{source}: train.batch_size = {t.batch_size}: {large} larger than "
                             f"the {t.train_size} training images; each must be at most "
                             f"{t.train_size}")
        unlisted = [m for m in t.nesterov_momenta if m == 0 or m not in self.momenta]
        if unlisted:
            raise SweepError(f"{source}: train.nesterov = {t.nesterov}: {unlisted} not a listed "
                             f"momentum above 0; each must be one of {self.momenta[1:]} (the "
                             f"momenta also trained with Nesterov's update), or [] for none")
        if t.target is not None:
            few = [b for b in t.batch_sizes if not Schedule.of(t, b).evaluations]
            if few:
                raise SweepError(
                    f"{source}: train.target = {t.target} with train.epochs = {t.epochs} and "
                    f"train.min_steps = {t.min_steps}: at batch size(s) {few} the budget ends "
                    f"before the first evaluation of the validation accuracy; raise "
                    f"train.epochs or train.min_steps")
        late = [e for e in t.checkpoints if e != "final" and e > t.epochs]
        if late:
            raise SweepError(f"{source}: train.checkpoints = {t.checkpoints}: epoch(s) {late} are "
                             f"not trained (train.epochs = {t.epochs}); each must be from 0 (the "
                             f"initial weights) to {t.epochs}, or \"final\"")
        if self.surface.probe_size > t.train_size:
            raise SweepError(f"{source}: surface.probe_size = {self.surface.probe_size}: larger "
                             f"than the {t.train_size} training images; it must be at most "
                             f"{t.train_size}")
        if t.cross_validation and t.folds < 2:
            raise SweepError(f"{source}: train.cross_validation = true with "
                             f"train.validation_size = {t.validation_size}: {t.images_used} images "
                             f"hold only one fold of that size; cross-validation needs at least "
                             f"2 (validation_size at most {t.images_used // 2}), or set "
                             f"train.cross_validation: false")
        if t.effective_lr:  # each listed value is a step: momentum mu trains at step*(1 - mu)
            for lr, m in ((lr, m) for lr in t.lrs for m in self.momenta):
                trained = float(np.float32(lr * (1 - m)))
                if trained < FLOAT32_TINY:
                    raise SweepError(
                        f"{source}: train.lr = {lr!r} with train.effective_lr = true and "
                        f"momentum {m!r}: momentum {m!r} trains at lr step*(1 - momentum) = "
                        f"{lr * (1 - m):.4g}, below {FLOAT32_TINY:.4g}, the smallest float32 "
                        f"that keeps its precision; raise train.lr or lower that momentum")
        if t.lr_control and not t.effective_lr:
            for lr, m in ((lr, m) for lr in t.lrs for m in self.momenta):
                if not fits_float32(lr / (1 - m)):
                    raise SweepError(
                        f"{source}: train.lr = {lr!r} with momentum {m!r}: the control's "
                        f"learning rate lr/(1-momentum) = {lr / (1 - m):.4g} is too large for "
                        f"float32 (at most {FLOAT32_MAX:.4g}); lower train.lr or that momentum, "
                        f"or set train.lr_control: false")


def _describe(error: dict) -> str:
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key (a typo?); remove it or use one of the documented keys"
    if error["type"] == "missing":
        return f"{key}: required but missing (params.yaml holds every setting)"
    value = error.get("input")
    message = error["msg"].removeprefix("Value error, ")
    return f"{key} = {value!r}: {message}"


def parse(raw, source=PARAMS_FILE) -> Params:
    """Validate an already-loaded YAML document; every problem is listed in one SweepError."""
    if raw is None:
        raise SweepError(f"{source}: the file is empty; it needs every setting")
    if not isinstance(raw, dict):
        raise SweepError(f"{source}: expected a mapping of keys (momentum, data, model, train, "
                         f"landscape, surface), got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as error:
        lines = [_describe(e) for e in error.errors()]
        raise SweepError(f"{source}: invalid parameters:\n  " + "\n  ".join(lines)) from None
    params.check_consistency(source)
    return params


def read_yaml(path=PARAMS_FILE):
    """The file's content as DVC reads it: YAML 1.2, safe (no Python objects)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise SweepError(f"{path}: cannot read parameters ({error.strerror})") from None
    try:
        return YAML(typ="safe", pure=True).load(text)
    except YAMLError as error:
        raise SweepError(f"{path}: not valid YAML: {error}") from None


def load(path=PARAMS_FILE) -> Params:
    return parse(read_yaml(path), path)

"""params.yaml: its schema, and validation that names the key, the value and what is allowed.

``momentum`` is a list *or* one number: ``dvc exp run -S momentum=0.4`` replaces the list with
the number 0.4, which simply means "train the 0.4 model" (see DESIGN.md).
"""

import math
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import SweepError

PARAMS_FILE = Path("params.yaml")
MNIST_TRAIN_IMAGES = 60_000

class Section(BaseModel):
    # strict: "0.1" (a string) or true (a bool) is not silently taken as a number; forbid: a typo
    # in a key is an error instead of a setting that is quietly ignored.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class DataParams(Section):
    source: Literal["carried", "download"] = "carried"
    mirrors: Optional[list[str]] = None


class ModelParams(Section):
    hidden: list[Annotated[int, Field(ge=1)]] = Field(default=[50, 50], min_length=1)


class TrainParams(Section):
    lr: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 0.1
    batch_size: Annotated[int, Field(ge=1)] = 20
    epochs: Annotated[int, Field(ge=1)] = 10
    seed: Annotated[int, Field(ge=0)] = 1
    validation_size: Annotated[int, Field(ge=1)] = 5000
    max_train_images: Optional[Annotated[int, Field(ge=2, le=MNIST_TRAIN_IMAGES)]] = None
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @property
    def images_used(self) -> int:
        """MNIST training images used, the validation split included."""
        return self.max_train_images or MNIST_TRAIN_IMAGES

    @property
    def train_size(self) -> int:
        return self.images_used - self.validation_size

    def check_split(self):
        """Checks that need several keys at once; pydantic's errors would name only ``train``."""
        if self.train_size < 1:
            raise SweepError(f"{PARAMS_FILE}: train.validation_size = {self.validation_size}: leaves "
                             f"no training data out of {self.images_used} images; it must be below "
                             f"{self.images_used} (see train.max_train_images)")
        if self.batch_size > self.train_size:
            raise SweepError(f"{PARAMS_FILE}: train.batch_size = {self.batch_size}: larger than the "
                             f"{self.train_size} training images; it must be at most {self.train_size}")


Point = Annotated[list[Annotated[float, Field(allow_inf_nan=False)]], Field(min_length=2, max_length=2)]


class SurfaceParams(Section):
    start: Point
    lr: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    steps: Annotated[int, Field(ge=1, le=100_000)]


class MinimaParams(SurfaceParams):
    tilt: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.3


class LandscapeParams(Section):
    saddle: SurfaceParams = SurfaceParams(start=[0.3, 0.001], lr=0.01, steps=800)
    minima: MinimaParams = MinimaParams(start=[2.2, 0.5], lr=0.05, steps=400)


class Params(Section):
    momentum: Union[float, list[float]]
    data: DataParams = DataParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    landscape: LandscapeParams = LandscapeParams()

    @field_validator("momentum", mode="plain")
    @classmethod
    def _momentum(cls, value):
        values = value if isinstance(value, list) else [value]
        if not values:
            raise ValueError("the list is empty; list at least one momentum")
        for m in values:
            if isinstance(m, bool) or not isinstance(m, (int, float)) or not (0 <= m < 1):
                raise ValueError(f"{m!r} is not allowed: each momentum is a number with "
                                 f"0 <= momentum < 1 (a list of them, or one)")
        duplicates = sorted({float(m) for m in values if values.count(m) > 1})
        if duplicates:
            raise ValueError(f"{duplicates} listed more than once; list each momentum once")
        return [float(m) for m in value] if isinstance(value, list) else float(value)

    @property
    def momenta(self) -> list[float]:
        """The momentum values, always as a list of floats, in the order given."""
        values = self.momentum if isinstance(self.momentum, list) else [self.momentum]
        return [float(m) for m in values]


def _describe(error: dict) -> str:
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key (a typo?); remove it or use one of the documented keys"
    if error["type"] == "missing":
        return f"{key}: required but missing"
    value = error.get("input")
    message = error["msg"].removeprefix("Value error, ")
    return f"{key} = {value!r}: {message}"


def parse(raw, source=PARAMS_FILE) -> Params:
    """Validate an already-loaded YAML document; every problem is listed in one SweepError."""
    if raw is None:
        raise SweepError(f"{source}: the file is empty; it needs at least `momentum`")
    if not isinstance(raw, dict):
        raise SweepError(f"{source}: expected a mapping of keys (momentum, data, model, train, "
                         f"landscape), got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as error:
        lines = [_describe(e) for e in error.errors()]
        raise SweepError(f"{source}: invalid parameters:\n  " + "\n  ".join(lines)) from None
    params.train.check_split()
    return params


def load(path=PARAMS_FILE) -> Params:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise SweepError(f"{path}: cannot read parameters ({error.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SweepError(f"{path}: not valid YAML: {error}") from None
    return parse(raw, path)


def momentum_name(momentum: float) -> str:
    """How a momentum value is written in folder names and tables: 0.0, 0.1, 0.25."""
    assert math.isfinite(momentum)
    return repr(float(momentum))

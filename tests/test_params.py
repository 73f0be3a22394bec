"""Bad parameters fail before any work, with a message naming the key; good ones parse."""

import math
import re

import pytest

from clones import ROOT
from good_params import DELETE, GOOD, with_change
from momentum_sweep import params
from momentum_sweep.errors import SweepError

BAD = [  # (key path, bad value, words the message must hold besides the key)
    ("momentum", -0.1, "0 <= momentum < 1"),
    ("momentum", 1.0, "0 <= momentum < 1"),
    ("momentum", 0.99999999, "rounds to 1.0 in float32"),
    ("momentum", "0.4", "not allowed"),
    ("momentum", float("nan"), "not allowed"),
    ("momentum", float("inf"), "not allowed"),
    ("momentum", True, "not allowed"),
    ("momentum", [], "empty"),
    ("momentum", [0.1, 0.1], "more than once"),
    ("momentum", [0.0, -0.0], "more than once"),
    ("momentum", [0.1, None], "not allowed"),
    ("momentum", {"a": 1}, "not allowed"),
    ("momentum", DELETE, "required but missing"),
    ("train.lr", 0, "greater than 0"),
    ("train.lr", -0.1, "greater than 0"),
    ("train.lr", "fast", "valid number"),
    ("train.lr", 1.0e308, "too large"),
    ("train.lr", 1e-300, "rounds to 0 in float32"),
    ("train.lr", 1e-40, "a subnormal"),
    ("train.lr", [], "the list is empty; list at least one learning rate"),
    ("train.lr", [0.1, 0.05, 0.1], "[0.1] listed more than once"),
    ("train.lr", [0.1, 0.1 + 1e-12], "equal in float32"),
    ("train.lr", [0.05, -0.1], "-0.1: each learning rate must be greater than 0"),
    ("train.lr", [0.05, 1e-46], "1e-46 is too small: it rounds to 0 in float32"),
    ("train.lr", [0.05, True], "True is not a valid number"),
    ("train.lr", [0.05, float("nan")], "must be greater than 0"),
    ("train.cross_validation", "yes", "valid boolean"),
    ("train.validation_size", 40_000, "cross-validation needs at least 2"),
    ("train.batch_size", 0, "each batch size is a whole number >= 1"),
    ("train.batch_size", 2.5, "each batch size is a whole number >= 1"),
    ("train.batch_size", True, "each batch size is a whole number >= 1"),
    ("train.batch_size", 60_000, "at most"),
    ("train.batch_size", [20, 60_000], "[60000] larger than the 55000 training images"),
    ("train.batch_size", [], "the list is empty; list at least one batch size"),
    ("train.batch_size", [20, 1024, 20], "[20] listed more than once"),
    ("train.nesterov", [0.3], "[0.3] not a listed momentum above 0"),
    ("train.nesterov", 0.0, "[0.0] not a listed momentum above 0"),
    ("train.nesterov", [0.4, 0.4], "more than once"),
    ("train.nesterov", "yes", "not allowed"),
    ("train.effective_lr", "yes", "valid boolean"),
    ("train.target", 1.0, "less than 1"),
    ("train.target", 0, "greater than 0"),
    ("train.target", "high", "valid number"),
    ("train.min_steps", -1, "greater than or equal to 0"),
    ("train.step", "gpu", "'auto', 'native' or 'torch'"),
    ("train.epochs", 0, "greater than or equal to 1"),
    ("train.replicates", 0, "greater than or equal to 1"),
    ("train.replicates", DELETE, "required but missing"),
    ("train.lr_control", "yes", "valid boolean"),
    ("train.seed", -1, "greater than or equal to 0"),
    ("train.validation_size", 60_000, "leaves no training data"),
    ("train.validation_size", 0, "greater than or equal to 1"),
    ("train.max_train_images", 70_000, "less than or equal to 60000"),
    ("train.device", "gpu", "'auto', 'cpu' or 'cuda'"),
    ("train.lrr", 0.1, "unknown key"),
    ("model.hidden", [50, 0], "greater than or equal to 1"),
    ("model.hidden", [], "at least 1"),
    ("model.hidden", 50, "valid list"),
    ("model.layers", 3, "unknown key"),
    ("data.source", "internet", "'carried' or 'download'"),
    ("landscape.saddle.steps", 0, "greater than or equal to 1"),
    ("landscape.minima.start", [1.0], "at least 2"),
    ("landscape.minima.tilt", DELETE, "required but missing"),
    ("train.init_scale", 0, "greater than 0"),
    ("train.init_scale", float("nan"), "finite number"),
    ("train.checkpoints", [0, 11], "not trained (train.epochs = 10)"),
    ("train.checkpoints", [1, 1], "more than once"),
    ("train.checkpoints", [-1], "greater than or equal to 0"),
    ("train.checkpoints", ["last"], "'final'"),
    ("train.checkpoints", 5, "valid list"),
    ("train.loss_every", 0, "greater than or equal to 1"),
    ("surface.probe_size", 55_001, "larger than the 55000 training images"),
    ("surface.probe_size", 0, "greater than or equal to 1"),
    ("surface.line_points", 0, "greater than or equal to 2"),
    ("surface.line_points", 1, "greater than or equal to 2"),
    ("surface.escape_loss", -1.0, "greater than 0"),
    ("surface.barrier_tolerance", 0, "greater than 0"),
    ("surface.lanczos_tol", 1.5, "less than 1"),
    ("surface.lanczos_maxiter", 0, "greater than or equal to 1"),
    ("surface.sharpness_batches", 0, "greater than or equal to 1"),
    ("surface.probe", 10, "unknown key"),
    ("surface", DELETE, "required but missing"),
    ("momentun", 0.4, "unknown key"),
    ("train", "none", "valid dictionary"),
]


@pytest.mark.parametrize("path, value, words", BAD, ids=[f"{p}={v!r}" for p, v, _ in BAD])
def test_bad_value_names_the_key(path, value, words):
    with pytest.raises(SweepError) as error:
        params.parse(with_change(path, value))
    message = str(error.value)
    assert path in message and words in message, message


def test_a_control_whose_learning_rate_overflows_float32_is_refused():
    raw = with_change("train.lr", 3e38)  # fits float32; 3e38/(1 - 0.2) does not
    with pytest.raises(SweepError, match=r"train.lr = 3e\+38 with momentum 0.2.*lr_control"):
        params.parse(raw)
    raw["train"]["lr_control"] = False
    assert params.parse(raw).train.lr == 3e38


def test_with_effective_lr_the_lr_each_momentum_trains_at_is_checked():
    raw = with_change("train.lr", 1.2e-38)  # a normal float32 as a step, not as lr*(1 - mu)
    raw["train"]["effective_lr"] = True
    raw["momentum"] = [0.0, 0.99999994]
    with pytest.raises(SweepError, match=r"train.lr = 1.2e-38 with train.effective_lr = true "
                                         r"and momentum 0.99999994: .* trains at lr"):
        params.parse(raw)
    raw["train"]["lr"] = 0.1
    assert params.parse(raw).train.effective_lr


def test_duplicate_integers_are_not_said_to_be_equal_in_float32():
    with pytest.raises(SweepError) as error:
        params.parse(with_change("train.batch_size", [20, 20]))
    assert "float32" not in str(error.value)
    with pytest.raises(SweepError, match="equal in float32"):
        params.parse(with_change("train.lr", [0.1, 0.1]))


@pytest.mark.parametrize("text, expected", [
    ("", "empty"),
    ("momentum: [0.1\n", "not valid YAML"),
    ("momentum: 0.1\nmomentum: 0.2\n", "not valid YAML"),  # a duplicate key
    ("- 0.1\n- 0.2\n", "expected a mapping"),
    ("momentum: !!python/object/apply:os.system ['touch pwned']\n", "not valid YAML"),
])
def test_bad_files(tmp_path, text, expected):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(SweepError, match=expected):
        params.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(SweepError, match="cannot read parameters"):
        params.load(tmp_path / "params.yaml")


def test_numbers_are_read_as_yaml_1_2_like_dvc(tmp_path):
    # `dvc exp run -S train.lr=0.00001` writes 1e-05: a string in YAML 1.1, a number in 1.2.
    text = re.sub(r"\blr: 0\.1\b", "lr: 1e-05", (ROOT / "params.yaml").read_text(), count=1)
    (tmp_path / "params.yaml").write_text(text)
    assert params.load(tmp_path / "params.yaml").train.lr == 1e-05


@pytest.mark.parametrize("value, momenta", [
    (0.4, [0.0, 0.4]), (0, [0.0]), (-0.0, [0.0]), ([0.5, 0, 0.1], [0.5, 0.0, 0.1]),
    ([-0.0, 0.4], [0.0, 0.4]), (0.99999994, [0.0, 0.99999994])])
def test_momentum_is_a_list_or_one_number_and_momentum_0_is_always_trained(value, momenta):
    parsed = params.parse(with_change("momentum", value)).momenta
    assert parsed == momenta and all(math.copysign(1, m) == 1 for m in parsed)


def test_the_schema_holds_no_defaults_params_yaml_holds_them_all():
    def fields(model):
        for name, field in model.model_fields.items():
            yield model, name, field
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, params.Section):
                yield from fields(annotation)

    for model, name, field in fields(params.Params):
        assert field.is_required(), f"{model.__name__}.{name} has a default"
    assert params.parse(GOOD).train.replicates == GOOD["train"]["replicates"]


def test_defaults_are_the_notebooks_setup_with_replicates_and_controls():
    p = params.parse(GOOD)
    assert p.momenta == [0.0, 0.1, 0.2, 0.4, 0.5]
    assert (p.train.lr, p.train.batch_size, p.train.epochs) == (0.1, 20, 10)
    assert p.model.hidden == [50, 50]
    assert p.train.train_size == 55_000
    assert p.train.replicates == 5 and p.train.lr_control is True


def test_a_target_run_whose_budget_ends_before_its_first_evaluation_is_refused():
    raw = with_change("train.target", 0.96)
    raw["train"].update({"max_train_images": 3000, "validation_size": 2000,
                         "cross_validation": False, "epochs": 1, "batch_size": [20, 500]})
    with pytest.raises(SweepError, match=r"train.target = 0.96 .* at batch size\(s\) \[20, 500\] "
                                         r"the budget ends before the first evaluation"):
        params.parse(raw)


def test_the_learning_rate_and_batch_size_are_lists_or_one_number_as_momentum_is():
    assert params.parse(with_change("train.lr", [0.05, 0.1])).train.lrs == [0.05, 0.1]
    one = params.parse(with_change("train.lr", 0.05)).train
    assert one.lr == 0.05 and one.lrs == [0.05]
    assert params.parse(with_change("train.batch_size", [20, 8192])).train.batch_sizes == \
        [20, 8192]
    assert params.parse(with_change("train.batch_size", 1024)).train.batch_sizes == [1024]

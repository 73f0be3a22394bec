"""Bad parameters fail before any work, with a message naming the key; good ones parse."""

import pytest
import yaml

from conftest import ROOT, dvc
from momentum_sweep import params
from momentum_sweep.errors import SweepError

GOOD = yaml.safe_load((ROOT / "params.yaml").read_text())


def with_change(path, value):
    raw = yaml.safe_load(yaml.safe_dump(GOOD))
    *parents, last = path.split(".")
    node = raw
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return raw


DELETE = object()
BAD = [  # (key named in the message, key path, bad value)
    ("momentum", "momentum", -0.1),
    ("momentum", "momentum", 1.0),
    ("momentum", "momentum", 1.5),
    ("momentum", "momentum", "0.4"),
    ("momentum", "momentum", float("nan")),
    ("momentum", "momentum", float("inf")),
    ("momentum", "momentum", True),
    ("momentum", "momentum", []),
    ("momentum", "momentum", [0.1, 0.1]),
    ("momentum", "momentum", [0.1, None]),
    ("momentum", "momentum", {"a": 1}),
    ("momentum", "momentum", DELETE),
    ("train.lr", "train.lr", 0),
    ("train.lr", "train.lr", -0.1),
    ("train.lr", "train.lr", "fast"),
    ("train.batch_size", "train.batch_size", 0),
    ("train.batch_size", "train.batch_size", 2.5),
    ("train.batch_size", "train.batch_size", 60_000),
    ("train.epochs", "train.epochs", 0),
    ("train.seed", "train.seed", -1),
    ("train.validation_size", "train.validation_size", 60_000),
    ("train.validation_size", "train.validation_size", 0),
    ("train.max_train_images", "train.max_train_images", 70_000),
    ("train.device", "train.device", "gpu"),
    ("train.lrr", "train.lrr", 0.1),
    ("model.hidden", "model.hidden", [50, 0]),
    ("model.hidden", "model.hidden", []),
    ("model.hidden", "model.hidden", 50),
    ("model.layers", "model.layers", 3),
    ("data.source", "data.source", "internet"),
    ("landscape.saddle.steps", "landscape.saddle.steps", 0),
    ("landscape.minima.start", "landscape.minima.start", [1.0]),
    ("momentun", "momentun", 0.4),
    ("train", "train", "none"),
]


@pytest.mark.parametrize("key, path, value", BAD, ids=[f"{p}={v!r}" for _, p, v in BAD])
def test_bad_value_names_the_key(key, path, value):
    with pytest.raises(SweepError) as error:
        params.parse(with_change(path, value))
    assert key in str(error.value)


@pytest.mark.parametrize("text, expected", [
    ("", "empty"),
    ("momentum: [0.1\n", "not valid YAML"),
    ("- 0.1\n- 0.2\n", "expected a mapping"),
])
def test_bad_files(tmp_path, text, expected):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(SweepError, match=expected):
        params.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(SweepError, match="cannot read parameters"):
        params.load(tmp_path / "params.yaml")


@pytest.mark.parametrize("value, momenta", [(0.4, [0.4]), (0, [0.0]), ([0.5, 0, 0.1], [0.5, 0.0, 0.1])])
def test_momentum_is_a_list_or_one_number(value, momenta):
    assert params.parse(with_change("momentum", value)).momenta == momenta


def test_defaults_are_the_notebooks():
    p = params.parse(GOOD)
    assert p.momenta == [0.0, 0.1, 0.2, 0.4, 0.5]
    assert (p.train.lr, p.train.batch_size, p.train.epochs) == (0.1, 20, 10)
    assert p.model.hidden == [50, 50]
    assert p.train.train_size == 55_000


def test_bad_params_fail_before_training_and_keep_previous_outputs(repo):
    dvc(repo, "repro", "train")
    before = {p: p.read_bytes() for p in sorted((repo / "models").rglob("*")) if p.is_file()}
    summary = (repo / "metrics" / "summary.json").read_bytes()
    text = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(text.replace("lr: 0.1", "lr: -0.1"))
    result = dvc(repo, "repro", "train", check=False)
    assert result.returncode != 0
    assert "train.lr = -0.1" in result.stdout and "Traceback" not in result.stdout
    assert "epoch" not in result.stdout.split("train.lr")[0]  # failed before any training
    after = {p: p.read_bytes() for p in sorted((repo / "models").rglob("*")) if p.is_file()}
    assert after == before
    assert (repo / "metrics" / "summary.json").read_bytes() == summary

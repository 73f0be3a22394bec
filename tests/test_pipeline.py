"""The real pipeline with the real dvc CLI in temporary clones, on real MNIST."""

import json
import re
import time

import pytest
import torch
import yaml

from conftest import dvc, git, update_params
from momentum_sweep import flatten, model


def summary(repo):
    return json.loads((repo / "metrics" / "summary.json").read_text())


def model_files(repo):
    return {p.relative_to(repo / "models").as_posix(): p.read_bytes()
            for p in sorted((repo / "models").rglob("*")) if p.is_file()}


def statuses(log):
    return dict(re.findall(r"^momentum (\S+): (reused|trained)$", log, re.MULTILINE))


def test_flatten_outputs_and_a_second_repro_does_nothing(repo):
    train = flatten.load_split("train", repo / "data" / "flat")
    test = flatten.load_split("test", repo / "data" / "flat")
    assert train["images"].shape == (60_000, 784) and train["images"].dtype == torch.uint8
    assert test["labels"].shape == (10_000,) and set(test["labels"].tolist()) == set(range(10))
    stamp = (repo / "data" / "flat" / "train.pt").stat().st_mtime_ns
    log = dvc(repo, "repro", "flatten").stdout
    assert "didn't change" in log and "Running stage" not in log
    assert (repo / "data" / "flat" / "train.pt").stat().st_mtime_ns == stamp


def test_flatten_in_a_clone_reproduces_the_committed_lock(repo):
    # The clone's first commit holds this repository's dvc.lock; the fixture then ran flatten.
    committed = yaml.safe_load(git(repo, "show", "HEAD~1:dvc.lock").stdout)
    assert yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["flatten"] \
        == committed["stages"]["flatten"]


def test_only_changed_momenta_retrain_and_reuse_is_byte_identical(repo):
    update_params(repo, {"momentum": [0.0, 0.4]})
    log = dvc(repo, "repro", "train").stdout
    assert statuses(log) == {"0.0": "trained", "0.4": "trained"}
    first = model_files(repo)

    update_params(repo, {"momentum": [0.0, 0.2, 0.4]})
    log = dvc(repo, "repro", "train").stdout
    assert statuses(log) == {"0.0": "reused", "0.2": "trained", "0.4": "reused"}
    assert "1 model(s) together" in log
    grown = model_files(repo)
    assert {k: v for k, v in grown.items() if "0.2" not in k} == first
    assert list(summary(repo)["momenta"]) == ["0.0", "0.2", "0.4"]

    update_params(repo, {"momentum": [0.0, 0.2]})
    log = dvc(repo, "repro", "train").stdout
    assert statuses(log) == {"0.0": "reused", "0.2": "reused"} and "together" not in log
    assert not (repo / "models" / "momentum_0.4").exists()
    assert list(summary(repo)["momenta"]) == ["0.0", "0.2"]

    # Retraining all three in one pass gives the files that reuse kept, byte for byte
    # (timing.json aside: it records seconds and memory).
    update_params(repo, {"momentum": [0.0, 0.2, 0.4]})
    for path in (repo / "models").iterdir():
        (path / "fingerprint").write_text("stale")
    log = dvc(repo, "repro", "train").stdout
    assert set(statuses(log).values()) == {"trained"} and "3 model(s) together" in log
    fresh = model_files(repo)
    for name in grown:
        if not name.endswith("timing.json"):
            assert fresh[name] == grown[name], name

    update_params(repo, {"train": {"lr": 0.05}})
    assert set(statuses(dvc(repo, "repro", "train").stdout).values()) == {"trained"}

    trainer_py = repo / "src" / "momentum_sweep" / "trainer.py"
    trainer_py.write_text(trainer_py.read_text() + "\n# a change to the training code\n")
    assert set(statuses(dvc(repo, "repro", "train").stdout).values()) == {"trained"}


def test_saved_models_are_plain_state_dicts_with_their_record(repo):
    update_params(repo, {"momentum": 0.1})
    dvc(repo, "repro", "train")
    folder = repo / "models" / "momentum_0.1"
    state = torch.load(folder / "model.pt", weights_only=True)
    net = model.MLP([50, 50])
    net.load_state_dict(state)
    record = json.loads((folder / "record.json").read_text())
    test = flatten.load_split("test", repo / "data" / "flat")
    with torch.no_grad():
        predictions = net(test["images"].float() / 255).argmax(1)
    accuracy = (predictions == test["labels"]).double().mean().item()
    assert abs(accuracy - record["epochs"][-1]["test_accuracy"]) <= 1 / 10_000
    assert record["params"]["train"]["max_train_images"] == 2500


def test_exp_run_with_one_momentum_and_exp_show(repo):
    dvc(repo, "exp", "run", "-S", "momentum=0.4")
    assert list(summary(repo)["momenta"]) == ["0.4"]
    assert summary(repo)["best"]["momentum"] == 0.4
    shown = json.loads(dvc(repo, "exp", "show", "--json").stdout)
    text = json.dumps(shown)
    assert '"momentum": 0.4' in text and "test_accuracy" in text
    assert "0.4" in dvc(repo, "metrics", "show").stdout


def test_exp_run_with_a_list_and_a_queued_sweep(repo):
    dvc(repo, "exp", "run", "-S", "momentum=[0.1,0.9]")
    assert list(summary(repo)["momenta"]) == ["0.1", "0.9"]
    dvc(repo, "exp", "run", "--queue", "-S", "momentum=0.1,0.4")
    dvc(repo, "queue", "start")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = dvc(repo, "queue", "status").stdout
        if not re.search(r"Queued|Running", status):
            break
        time.sleep(2)
    assert status.count("Success") == 2, status
    shown = json.dumps(json.loads(dvc(repo, "exp", "show", "--json").stdout))
    assert shown.count('"momentum": 0.4') >= 1 and shown.count('"momentum": 0.1') >= 1


def test_divergence_is_a_result_not_a_crash(repo):
    # With a shared learning rate a ReLU MLP either survives or overflows at every momentum
    # (measured: finite up to lr 2000, NaN from 2500); that one momentum's NaN leaves the
    # others untouched is shown in test_trainer.
    update_params(repo, {"momentum": [0.0, 0.9], "train": {"lr": 1e4}})
    log = dvc(repo, "repro").stdout
    result = summary(repo)
    for momentum in ("0.0", "0.9"):
        assert result["momenta"][momentum]["diverged"] is True
        assert result["momenta"][momentum]["diverged_epoch"] == 1
        assert f"momentum {momentum}: diverged in epoch 1" in log
    assert result["best"] is None
    rows = [row.split("\t") for row in (repo / "metrics" / "epochs.tsv").read_text().splitlines()]
    header, body = rows[0], rows[1:]
    assert [(r[0], r[1], r[header.index("diverged")]) for r in body] == [("0.0", "1", "1"),
                                                                         ("0.9", "1", "1")]
    assert (repo / "plots" / "loss.png").stat().st_size > 10_000


def test_cuda_without_a_gpu_is_a_clear_error(repo):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    update_params(repo, {"train": {"device": "cuda"}})
    result = dvc(repo, "repro", "train", check=False)
    assert result.returncode != 0 and "no CUDA GPU is available" in result.stdout


def test_device_auto_is_logged(repo):
    update_params(repo, {"momentum": 0.2})
    log = dvc(repo, "repro", "train").stdout
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert f"train: device {expected}" in log


def test_default_pipeline_end_to_end(fresh_clone):
    """The README's `dvc repro` with the default params: five correctly trained models."""
    repo = fresh_clone
    log = dvc(repo, "repro").stdout
    # A clone has none of the DVC-cached outputs: these stages must run. plot and landscape write
    # files committed to git, so they run only if their inputs changed.
    for stage in ("download", "flatten", "train"):
        assert f"Running stage '{stage}'" in log
    result = summary(repo)
    assert list(result["momenta"]) == ["0.0", "0.1", "0.2", "0.4", "0.5"]
    for momentum, figures in result["momenta"].items():
        assert figures["epochs"] == 10 and not figures["diverged"]
        assert 0.96 <= figures["test_accuracy"] <= 0.985, (momentum, figures)
    for name in ("loss", "accuracy", "memory", "time", "landscape_saddle", "landscape_minima"):
        assert (repo / "plots" / f"{name}.png").stat().st_size > 10_000
    again = dvc(repo, "repro").stdout
    assert "Running stage" not in again
    assert "up to date" in dvc(repo, "status").stdout

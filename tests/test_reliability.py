"""Interruptions, corrupted files and concurrent runs end in a correct result or a clear error."""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import BIN, ROOT, dvc, environment, update_params
from momentum_sweep import params
from momentum_sweep.errors import SweepError

# Large enough that a kill can land inside an epoch, small enough to stay quick.
KILL_CONFIG = {"momentum": [0.0, 0.2, 0.4], "train": {"max_train_images": 12000, "epochs": 3}}
# Training that lasts seconds, so that a Ctrl-C sent 0.5 s in lands inside it.
CTRL_C_CONFIG = {**KILL_CONFIG, "train": {**KILL_CONFIG["train"], "epochs": 10}}


def deterministic_outputs(repo):
    """What must be identical to an uninterrupted run: models (timing aside) and results."""
    files = {p.relative_to(repo).as_posix(): p.read_bytes()
             for p in sorted((repo / "models").rglob("*"))
             if p.is_file() and p.name != "timing.json"}
    table = (repo / "metrics" / "epochs.tsv").read_text().splitlines()
    header = table[0].split("\t")
    keep = [header.index(c) for c in ("momentum", "epoch", "train_loss", "val_accuracy",
                                      "test_accuracy", "diverged")]
    files["epochs"] = [[row.split("\t")[i] for i in keep] for row in table]
    return files


def start(repo, *args):
    return subprocess.Popen([BIN / "dvc", *args], cwd=repo, env=environment(repo),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, stdin=subprocess.DEVNULL)


def run_until(repo, marker, delay, sig=signal.SIGKILL, args=("repro",)):
    """Start `dvc repro`, wait for a log line containing ``marker``, wait ``delay`` s, signal."""
    process = start(repo, *args)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            time.sleep(delay)
            os.killpg(process.pid, sig)
            break
    rest = process.communicate(timeout=120)[0]
    return process.returncode, "".join(seen) + rest


@pytest.fixture(scope="module")
def reference(flattened, tmp_path_factory):
    repo = tmp_path_factory.mktemp("reference") / "repo"
    shutil.copytree(flattened, repo, symlinks=True)
    update_params(repo, KILL_CONFIG)
    dvc(repo, "repro")
    return deterministic_outputs(repo)


@pytest.mark.parametrize("marker, delay", [
    ("Running stage 'download'", 0.3),              # during download
    ("download: data/raw/train-images", 0.0),       # between two downloaded files
    ("Running stage 'flatten'", 1.0),               # during flatten
    ("model(s) together", 0.4),                     # mid-epoch
    ("epoch   2", 0.0),                              # between epochs
    ("epoch   3", 0.05),                             # while saving momenta and writing metrics
])
def test_kill_at_any_moment_then_rerun_gives_the_uninterrupted_result(repo, reference, marker,
                                                                      delay):
    update_params(repo, KILL_CONFIG)
    # --force: download and flatten really run, instead of being restored from DVC's cache.
    early = "download" in marker or "flatten" in marker
    code, log = run_until(repo, marker, delay, args=("repro", "--force") if early else ("repro",))
    assert code != 0 or "epoch   3" in marker, log  # the kill landed (a finished run is fine)
    for path in (repo / "data").rglob("*"):
        assert ".tmp" not in path.name, f"temporary file left behind: {path}"
    rerun = dvc(repo, "repro").stdout
    assert deterministic_outputs(repo) == reference
    if "epoch" in marker or "together" in marker:
        assert "trained" in rerun or "reused" in rerun


def test_half_written_model_folders_are_never_reused(repo):
    update_params(repo, {"momentum": [0.0, 0.4]})
    dvc(repo, "repro", "train")
    models = repo / "models"
    (models / "momentum_0.0" / "fingerprint").unlink()             # killed before the last write
    shutil.copytree(models / "momentum_0.4", models / ".incomplete-momentum_0.4-x")
    log = dvc(repo, "repro", "train").stdout
    assert "momentum 0.0: trained" in log and "momentum 0.4: reused" in log
    assert sorted(p.name for p in models.iterdir()) == ["momentum_0.0", "momentum_0.4"]


def test_ctrl_c_exits_promptly_with_a_short_message(repo):
    update_params(repo, CTRL_C_CONFIG)
    started = time.monotonic()
    code, log = run_until(repo, "model(s) together", 0.5, sig=signal.SIGINT)
    assert code != 0 and time.monotonic() - started < 60
    assert "interrupted: finished results are kept" in log
    assert "Traceback" not in log
    dvc(repo, "repro")
    assert (repo / "metrics" / "summary.json").exists()


def test_tampered_raw_data_is_detected_and_rebuilt(repo):
    path = repo / "data" / "raw" / "t10k-labels-idx1-ubyte"
    original = path.read_bytes()
    path.chmod(0o644)
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    log = dvc(repo, "repro", "flatten").stdout
    # DVC notices the change and restores the verified file: from its cache, or by rerunning.
    assert "Running stage 'download'" in log or "Stage 'download' is cached" in log
    assert path.read_bytes() == original


def test_flat_file_of_the_wrong_shape_is_an_error_naming_it(repo):
    target = repo / "data" / "flat" / "train.pt"
    target.chmod(0o644)
    torch.save({"images": torch.zeros(10, 28, 28, dtype=torch.uint8),
                "labels": torch.zeros(10, dtype=torch.int64)}, target)
    result = dvc(repo, "repro", "train", "--single-item", check=False)
    assert result.returncode != 0
    assert "data/flat/train.pt: images are torch.uint8 (10, 28, 28)" in result.stdout
    assert "Traceback" not in result.stdout


def test_corrupted_or_foreign_model_files_are_retrained(repo):
    update_params(repo, {"momentum": [0.0, 0.2, 0.4]})
    dvc(repo, "repro", "train")
    before = {p: p.read_bytes() for p in (repo / "models").rglob("model.pt")}
    corrupted = repo / "models" / "momentum_0.0" / "model.pt"
    data = bytearray(corrupted.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupted.write_bytes(bytes(data))
    (repo / "models" / "momentum_0.4" / "notes.txt").write_text("foreign")
    torch.save({"w": torch.zeros(3)}, repo / "models" / "momentum_0.2" / "model.pt")
    log = dvc(repo, "repro", "train").stdout
    assert "momentum 0.0: trained" in log
    assert "momentum 0.2: trained" in log
    assert "momentum 0.4: trained" in log
    assert {p: p.read_bytes() for p in (repo / "models").rglob("model.pt")} == before
    assert not (repo / "models" / "momentum_0.4" / "notes.txt").exists()


def test_two_concurrent_runs_one_is_refused_by_dvcs_lock(repo):
    update_params(repo, {"momentum": [0.0, 0.4]})
    first = start(repo, "repro")
    time.sleep(1.5)
    second = start(repo, "repro")
    second_log = second.communicate(timeout=300)[0]
    first_log = first.communicate(timeout=300)[0]
    assert first.returncode == 0, first_log
    assert second.returncode != 0
    assert "lock" in second_log.lower()
    assert "momentum 0.0: trained" in first_log
    assert "0.0" in (repo / "metrics" / "summary.json").read_text()
    assert "Running stage" not in dvc(repo, "repro").stdout


def test_params_are_read_with_a_safe_yaml_loader(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("momentum: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(SweepError, match="not valid YAML"):
        params.load(path)
    assert not Path("pwned").exists()


def test_stage_commands_take_no_parameter_values_and_models_load_weights_only():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        assert "${" not in stage["cmd"] and stage["cmd"].startswith("python -m momentum_sweep.")
    sources = "\n".join(p.read_text() for p in (ROOT / "src").rglob("*.py"))
    loads = sources.count("torch.load(")
    assert loads and loads == sources.count("weights_only=True)")
    assert "yaml.load(" not in sources and "shell=True" not in sources

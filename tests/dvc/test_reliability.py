"""Interruptions, careless edits, corrupted files and concurrent runs end in a correct result or a
clear error, and never cost finished work."""

import json
import os
import shutil
import signal

import pytest
import torch

from clones import Clone, built_once, statuses

pytestmark = pytest.mark.dvc

# Large enough that a kill can land inside an epoch, small enough to stay quick.
KILL_CONFIG = {"momentum": [0.0, 0.4], "train": {"max_train_images": 12000, "epochs": 3}}
# Long enough that the run cannot end before Ctrl-C, sent when its first epoch ends, is handled.
CTRL_C_CONFIG = {**KILL_CONFIG, "train": {**KILL_CONFIG["train"], "epochs": 40}}

def deterministic_outputs(repo):
    """What must be identical to an uninterrupted run: models (timing aside) and results."""
    files = repo.model_files()
    table = (repo / "results" / "epochs.tsv").read_text().splitlines()
    header = table[0].split("\t")
    keep = [header.index(c) for c in ("arm", "replicate", "epoch", "train_loss", "val_accuracy",
                                      "test_accuracy", "diverged")]
    files["epochs"] = [[row.split("\t")[i] for i in keep] for row in table]
    return files


def run_until(repo, marker, sig=signal.SIGKILL, args=("repro",)):
    """Start `dvc repro`; signal it as soon as a log line contains ``marker``."""
    process = repo.start("dvc", *args)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            os.killpg(process.pid, sig)
            break
    rest = process.communicate(timeout=300)[0]
    return process.returncode, "".join(seen) + rest


@pytest.fixture(scope="module")
def reference(template, tmp_path_factory):
    """The uninterrupted run's outputs, run once for all workers."""
    def build(folder):
        repo = template.copy(folder / "repo")
        repo.set_params(KILL_CONFIG)
        repo.dvc("repro", "summarize")

    return deterministic_outputs(Clone(built_once(tmp_path_factory, "reference", build) / "repo"))


@pytest.mark.parametrize("marker", [
    "download: data/raw/train-images",              # during download: one file of four done
    "flatten: data/flat/train.pt",                  # during flatten: one split of two written
    "step   1150",                                  # between epochs (575 steps each)
    "step   1725",                                  # while saving models
])
def test_kill_at_any_moment_then_rerun_gives_the_uninterrupted_result(repo, reference, marker):
    repo.set_params(KILL_CONFIG)
    # --force: download and flatten really run, instead of being restored from DVC's cache.
    early = marker.startswith(("download", "flatten"))
    code, log = run_until(repo, marker, args=("repro", "--force") if early else ("repro",))
    assert code != 0 or "1725" in marker, log  # the kill landed (a finished run is fine)
    # A kill mid-write can leave a file under its temporary name (nothing can clean up after
    # SIGKILL); no run trusts it, and the next one removes it.
    repo.dvc("repro", "summarize")  # up to what deterministic_outputs reads
    for path in (repo / "data").rglob("*"):
        assert ".tmp" not in path.name, f"temporary file left behind: {path}"
    assert deterministic_outputs(repo) == reference


def test_ctrl_c_keeps_every_finished_model_even_after_narrowing_the_list(repo):
    """Ctrl-C as a terminal sends it: SIGINT to the foreground process group, whose processes
    have its default action (see Clone.start)."""
    repo.set_params(KILL_CONFIG)
    repo.dvc("repro", "summarize")
    before, summary = repo.model_files(), repo.summary()
    repo.set_params({**CTRL_C_CONFIG, "momentum": [0.3]})  # 0.3 must train; the rest is unlisted
    code, log = run_until(repo, "step    575", sig=signal.SIGINT)
    assert code != 0 and "step  23000" not in log, log  # it stopped before its 40 epochs
    assert "interrupted: finished results are kept" in log and "Traceback" not in log
    assert repo.model_files() == before and repo.summary() == summary  # nothing lost or changed
    repo.set_params(KILL_CONFIG)  # back to the list: nothing to train, nothing was lost
    log = repo.dvc("repro", "summarize").stdout
    assert set(statuses(log).values()) <= {"reused"} and repo.model_files() == before


def test_going_back_after_an_experiment_on_one_momentum_retrains_nothing(repo):
    repo.dvc("repro", "summarize")
    before = repo.model_files()
    repo.dvc("exp", "run", "train", "-S", "momentum=0.0")  # what it reuses: models
    assert sorted(p.name for p in (repo / "models").iterdir()) == [
        "momentum_0.0_lr_0.1_batch_20"]
    repo.git("checkout", "params.yaml")
    log = repo.dvc("repro", "summarize").stdout
    assert set(statuses(log).values()) == {"reused", "reused from .model-cache"}
    assert "reused from .model-cache" in statuses(log).values()
    assert repo.model_files() == before


def test_half_written_folders_are_never_reused(repo):
    repo.dvc("repro", "train")
    models = repo / "models"
    # killed before the seal
    (models / "momentum_0.0_lr_0.1_batch_20" / "replicate_0" / "seal.json").unlink()
    shutil.copytree(models / "momentum_0.4_lr_0.1_batch_20" / "replicate_1",
                    models / "momentum_0.4_lr_0.1_batch_20" / ".incomplete-replicate_1-x")
    log = repo.dvc("repro", "train").stdout
    assert statuses(log)["momentum 0.0 at lr 0.1, batch 20 replicate 0"] == (
        "reused from .model-cache (models/ held none: files missing or damaged: missing "
        "seal.json)")
    assert statuses(log)["momentum 0.4 at lr 0.1, batch 20 replicate 1"] == "reused"
    assert sorted(p.name for p in (models / "momentum_0.4_lr_0.1_batch_20").iterdir()) == [
        "replicate_0", "replicate_1"]


def test_an_edited_record_or_damaged_model_is_retrained_not_trusted(repo):
    repo.dvc("repro", "summarize")
    before = repo.model_files()
    record = repo / "models" / "momentum_0.4_lr_0.1_batch_20" / "replicate_0" / "record.json"
    data = json.loads(record.read_text())
    data["evaluations"][-1]["val_accuracy"] = 0.99
    record.write_text(json.dumps(data))
    damaged = repo / "models" / "momentum_0.0_lr_0.1_batch_20" / "replicate_1" / "model.pt"
    content = bytearray(damaged.read_bytes())
    content[len(content) // 2] ^= 0xFF
    damaged.write_bytes(bytes(content))
    (repo / "models" / "control_0.4_lr_0.1_batch_20" / "replicate_0" / "notes.txt").write_text(
        "foreign")
    repo.run("rm", "-rf", ".model-cache")  # so that these must be retrained, not copied back
    log = repo.dvc("repro", "summarize").stdout
    found = statuses(log)
    assert found["momentum 0.4 at lr 0.1, batch 20 replicate 0"] == (
        "trained (files missing or damaged: record.json does not match its seal)")
    assert found["momentum 0.0 at lr 0.1, batch 20 replicate 1"].startswith(
        "trained (files missing or damaged")
    assert "unexpected notes.txt" in found[
        "control 0.4 at lr 0.1, batch 20 (SGD at lr 0.1667) replicate 0"]
    assert repo.model_files() == before
    assert all(a["val_accuracy"]["mean"] < 0.99 for a in repo.summary()["arms"])


@pytest.mark.parametrize("stage", ["summarize", "surface"])
def test_a_sealed_folder_at_another_arms_path_is_refused_by_the_stages_that_read_models(
        repo, stage):
    """Momentum 0's model copied by hand to momentum 0.4's path: its seal holds, but its record
    is another arm's; no stage reports it as 0.4's."""
    models = repo / "models"
    target = models / "momentum_0.4_lr_0.1_batch_20" / "replicate_0"
    shutil.rmtree(target)
    shutil.copytree(models / "momentum_0.0_lr_0.1_batch_20" / "replicate_0", target)
    before = repo.summary(), repo.surface()
    result = repo.dvc("repro", "--single-item", stage, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stdout
    assert ("error: models/momentum_0.4_lr_0.1_batch_20/replicate_0: holds a model trained "
            "with {'lr': 0.1, 'momentum': 0.0, 'nesterov': False, 'batch_size': 20} in "
            "replicate 0, not momentum 0.4 at lr 0.1, batch 20 replicate 0") in result.stdout
    assert (repo.summary(), repo.surface()) == before  # nothing written
    log = repo.dvc("repro", "train").stdout  # the train stage puts the right model back
    assert statuses(log)["momentum 0.4 at lr 0.1, batch 20 replicate 0"].startswith("reused from")


SPACE = {"download": ("data/raw", "64k"), "train": (".model-cache", "300k"),
         "surface": (".surface-cache", "16k")}


@pytest.mark.skipif(not shutil.which("unshare"), reason="unshare (util-linux) is needed")
@pytest.mark.parametrize("stage", sorted(SPACE))
def test_a_full_disk_is_one_line_naming_the_file_and_loses_nothing(repo, stage):
    """The stage's output folder on a real, small tmpfs (mounted in a mount namespace of its
    own): the run stops with one line naming the file and the full disk; the next run, with
    room, finishes and trusts nothing half-written."""
    folder, size = SPACE[stage]
    if stage == "surface":
        repo.run("rm", "-rf", ".surface-cache")
    if stage == "train":
        repo.run("rm", "-rf", ".model-cache", "models")
    (repo / folder).mkdir(parents=True, exist_ok=True)
    script = (f"mount -t tmpfs -o size={size} tmpfs {folder} && "
              f"python src/run_stage.py {stage}")
    result = repo.run("unshare", "--mount", "--map-root-user", "sh", "-c", script, check=False)
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stdout
    [line] = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert f"error: {folder}/" in line and "no space left on its device" in line
    assert "everything finished before is kept" in line
    repo.dvc("repro")  # with room: finishes
    assert repo.summary()["arms"] and repo.surface()["models"]


@pytest.mark.parametrize("make", ["file", "symlink", "model folder file"])
def test_models_that_is_not_a_folder_is_a_clear_error(repo, tmp_path, make):
    target = repo / "models"
    if make == "model folder file":
        target = target / "momentum_0.4_lr_0.1_batch_20" / "replicate_0"
    shutil.rmtree(target)
    if make == "symlink":
        (tmp_path / "elsewhere").mkdir()
        target.symlink_to(tmp_path / "elsewhere")
    else:
        target.write_text("not a folder")
    result = repo.dvc("repro", "train", check=False)
    assert result.returncode != 0 and "Traceback" not in result.stdout
    kind = "symlink" if make == "symlink" else "file"
    assert f"error: {target.relative_to(repo.path)}: a {kind}, where a folder" in result.stdout


def test_metrics_that_cannot_be_written_is_a_clear_error_and_training_is_kept(repo):
    (repo / "metrics").rename(repo / "metrics-kept")
    (repo / "metrics").write_text("a file where the metrics folder belongs")
    repo.set_params({"train": {"replicates": 3}})  # something to summarize anew
    result = repo.dvc("repro", "summarize", check=False)
    assert result.returncode != 0 and "Traceback" not in result.stdout
    assert "error: metrics: a file, where a folder belongs" in result.stdout
    (repo / "metrics").unlink()
    (repo / "metrics-kept").rename(repo / "metrics")
    log = repo.dvc("repro", "summarize").stdout
    assert set(statuses(log).values()) <= {"reused"}  # the models trained before are kept
    assert (repo / "metrics" / "summary.json").exists()


def test_a_network_too_large_for_memory_is_refused_before_allocating(repo):
    repo.set_params({"model": {"hidden": [20_000_000, 50]}})
    result = repo.dvc("repro", "train", check=False)
    assert result.returncode != 0 and "Traceback" not in result.stdout
    # the pass is one replicate: its three models
    assert "model.hidden = [20000000, 50]: training 3 model(s) at once needs about" in result.stdout
    assert "GiB is available on cpu; a first hidden layer of about" in result.stdout
    assert "model(s) together" not in result.stdout  # refused before any training


@pytest.mark.parametrize("key, value, expected", [
    ("momentun", 0.4, "momentun: unknown key"),
    ("train.lr", 1.0e308, "train.lr = 1e+308: 1e+308 is too large"),
    ("momentum", 0.99999999, "momentum = 0.99999999: 0.99999999 rounds to 1.0 in float32"),
    # checks that need the device: made by the params stage, before DVC clears train's outputs
    ("train.min_steps", 10 ** 12, "train.min_steps = 1000000000000, train.epochs = 2: a budget"),
    pytest.param("train.device", "cuda", "train.device = 'cuda', but no CUDA GPU",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")),
])
def test_bad_params_stop_the_run_before_any_work_and_keep_the_outputs(repo, key, value,
                                                                      expected):
    repo.dvc("repro")
    before = {p: p.read_bytes() for p in sorted(repo.path.rglob("*"))
              if p.is_file() and ".git" not in p.parts and ".dvc" not in p.parts}
    *parents, last = key.split(".")
    change = {last: value}
    for parent in reversed(parents):
        change = {parent: change}
    repo.set_params(change)
    result = repo.dvc("repro", check=False)
    assert result.returncode != 0 and expected in result.stdout and "Traceback" not in result.stdout
    assert "Running stage 'train'" not in result.stdout or "epoch" not in result.stdout
    after = {p: p.read_bytes() if p.exists() else None for p in before}
    assert {p for p in before if after[p] != before[p]} == {repo / "params.yaml"}
    assert "Running stage 'train'" not in result.stdout


def test_minus_zero_is_momentum_zero(repo):
    repo.set_params({"momentum": [-0.0, 0.4]})
    log = repo.dvc("repro", "--force", "--single-item", "train").stdout
    assert set(statuses(log).values()) == {"reused"}
    assert "momentum 0.0 at lr 0.1, batch 20 replicate 0" in log


def test_two_concurrent_runs_one_is_refused_by_dvcs_lock(repo):
    repo.set_params(KILL_CONFIG)  # work for the first run
    # Up to training: DVC's lock is what is tested, not the stages after it.
    first = repo.start("dvc", "repro", "train")
    for line in first.stdout:
        if "model(s) together" in line:  # training, so DVC's lock is held: hold it there
            os.killpg(first.pid, signal.SIGSTOP)
            break
    try:
        second = repo.dvc("repro", "train", check=False)
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    first_log = first.communicate(timeout=300)[0]
    assert first.returncode == 0, first_log
    assert second.returncode != 0 and "lock" in second.stdout.lower(), second.stdout
    assert "Running stage" not in repo.dvc("repro", "train").stdout


def test_tampered_raw_data_is_detected_and_rebuilt(repo):
    path = repo / "data" / "raw" / "t10k-labels-idx1-ubyte"
    original = path.read_bytes()
    path.chmod(0o644)
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    log = repo.dvc("repro", "flatten").stdout
    assert "Running stage 'download'" in log or "Stage 'download' is cached" in log
    assert path.read_bytes() == original


def test_a_flat_file_of_the_wrong_shape_is_an_error_naming_it(repo):
    target = repo / "data" / "flat" / "train.pt"
    target.chmod(0o644)
    torch.save({"images": torch.zeros(10, 28, 28, dtype=torch.uint8),
                "labels": torch.zeros(10, dtype=torch.int64)}, target)
    result = repo.dvc("repro", "train", "--single-item", check=False)
    assert result.returncode != 0 and "Traceback" not in result.stdout
    assert "data/flat/train.pt: images are torch.uint8 (10, 28, 28)" in result.stdout

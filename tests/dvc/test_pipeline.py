"""The real pipeline with the real dvc CLI in temporary clones, on real MNIST."""

import json
import re

import pytest
import torch
from ruamel.yaml import YAML

from clones import statuses
from momentum_sweep import params
from momentum_sweep.data import flatten
from momentum_sweep.data.splits import split_indices
from momentum_sweep.vocabulary import arms
from momentum_sweep.training import model

pytestmark = pytest.mark.dvc


def trained(log):
    return sorted(k for k, v in statuses(log).items() if v.startswith("trained"))


def reused(log):
    return sorted(k for k, v in statuses(log).items() if v.startswith("reused"))


def labels(arm_names, replicates):
    return sorted(f"{arm} replicate {r}" for arm in arm_names for r in replicates)


def test_flatten_outputs_and_a_second_repro_does_nothing(repo):
    train = flatten.load_split("train", repo / "data" / "flat")
    test = flatten.load_split("test", repo / "data" / "flat")
    assert train["images"].shape == (60_000, 784) and train["images"].dtype == torch.uint8
    assert test["labels"].shape == (10_000,) and set(test["labels"].tolist()) == set(range(10))
    stamp = (repo / "data" / "flat" / "train.pt").stat().st_mtime_ns
    log = repo.dvc("repro", "flatten").stdout
    assert "Running stage 'flatten'" not in log
    assert (repo / "data" / "flat" / "train.pt").stat().st_mtime_ns == stamp


def test_flatten_in_a_clone_reproduces_the_committed_lock(repo):
    # The clone's first commit holds this repository's dvc.lock; the fixture then ran flatten.
    committed = YAML(typ="safe").load(repo.git("show", "HEAD~1:dvc.lock").stdout)
    current = YAML(typ="safe").load((repo / "dvc.lock").read_text())
    assert current["stages"]["flatten"] == committed["stages"]["flatten"]


@pytest.mark.long
def test_only_what_changed_trains_and_reuse_is_byte_identical(repo):
    """The template trained momenta 0 and 0.4 with the control, in two replicates."""
    M0, M2 = "momentum 0.0 at lr 0.1, batch 20", "momentum 0.2 at lr 0.1, batch 20"
    C2 = "control 0.2 at lr 0.1, batch 20 (SGD at lr 0.125)"
    M4 = "momentum 0.4 at lr 0.1, batch 20"
    M3, C3 = ("momentum 0.3 at lr 0.1, batch 20",
              "control 0.3 at lr 0.1, batch 20 (SGD at lr 0.1429)")
    repo.set_params({"momentum": [0.0, 0.2], "train": {"lr_control": False}})
    log = repo.dvc("repro", "summarize").stdout
    assert trained(log) == labels([M2], [0, 1]) and reused(log) == labels([M0], [0, 1])
    assert "trained (new)" in log and "batch 20, up to 2 epoch(s) (200 steps), cpu, native" in log

    repo.set_params({"train": {"lr_control": True}})  # turning the control on: only controls
    log = repo.dvc("repro", "summarize").stdout
    assert trained(log) == labels([C2], [0, 1]) and reused(log) == labels([M0, M2], [0, 1])

    repo.set_params({"train": {"replicates": 3}})  # a replicate more: only its models
    log = repo.dvc("repro", "summarize").stdout
    assert trained(log) == labels([M0, M2, C2], [2])
    live = json.loads((repo / "results" / "live" / "metrics.json").read_text())
    assert live["epoch"] == 2 and 0.5 < live["val_accuracy"] < 1  # DVCLive's progress log
    points = json.loads((repo / "results/live/plots/custom/arms.json").read_text())
    assert {(p["arm"], p["epoch"]) for p in points} == {
        (f"{arm}_lr_0.1_batch_20", e) for arm in ("momentum_0.0", "momentum_0.2", "control_0.2")
        for e in (1, 2)}
    summary = repo.summary()
    assert all(a["replicates"] == 3 and a["val_accuracy"]["ci"] for a in summary["arms"])
    assert repo.headline()["vs_zero"] in ("better: 0.2", "worse: 0.2", "no diff")
    assert "warning" not in summary
    assert (repo / "plots" / "accuracy.png").stat().st_size > 20_000

    repo.set_params({"momentum": [0.0, 0.2, 0.3]})  # a momentum more: it and its control
    log = repo.dvc("repro", "summarize").stdout
    assert trained(log) == labels([M3, C3], [0, 1, 2])
    grown = repo.model_files()
    assert len(grown) == 5 * 3 * 3  # five arms, three replicates, three files
    assert [a["arm"] for a in repo.summary()["arms"]] == [
        f"{arm}_lr_0.1_batch_20" for arm in ("momentum_0.0", "momentum_0.2", "momentum_0.3",
                                             "control_0.2", "control_0.3")]
    assert M4 not in log and not (repo / "models" / "momentum_0.4_lr_0.1_batch_20").exists()

    # Retraining all fifteen in one pass gives what the four passes above gave, byte for byte.
    repo.run("rm", "-rf", "models", ".model-cache")
    log = repo.dvc("repro", "train").stdout
    assert len(trained(log)) == 15 and "15 model(s) together" in log
    assert repo.model_files() == grown

    repo.set_params({"train": {"lr": 0.05}})  # other arms: their folders are new
    log = repo.dvc("repro", "train").stdout
    assert set(statuses(log).values()) == {"trained (new)"}

    trainer_py = repo / "src" / "momentum_sweep" / "training" / "trainer.py"
    trainer_py.write_text(trainer_py.read_text() + "\n# a change to the training code\n")
    log = repo.dvc("repro", "train").stdout
    assert set(statuses(log).values()) == {"trained (code changed)"}


def test_a_model_is_trained_once_whichever_arm_asks_for_it(repo):
    """Adding lr 0.2 to a grid of momentum 0.5 at lr 0.1: plain SGD at 0.2 is the control of 0.5
    at 0.1, already trained, and from then on that grid arm is the control (no second folder);
    writing train.checkpoints in another order changes nothing."""
    repo.set_params({"momentum": [0.0, 0.5], "train": {"lr": [0.05, 0.1]}})
    repo.dvc("repro", "train")
    control = repo / "models" / "control_0.5_lr_0.1_batch_20"
    trained_as_control = (control / "replicate_1" / "model.pt").read_bytes()
    repo.set_params({"train": {"lr": [0.05, 0.1, 0.2], "checkpoints": ["final", 1, 0]}})
    log = repo.dvc("repro", "train").stdout
    found = statuses(log)
    assert found["momentum 0.0 at lr 0.2, batch 20 replicate 1"] == "reused from .model-cache"
    assert trained(log) == labels(["momentum 0.5 at lr 0.2, batch 20",
                                   "control 0.5 at lr 0.2, batch 20 (SGD at lr 0.4)"], [0, 1])
    sgd = repo / "models" / "momentum_0.0_lr_0.2_batch_20" / "replicate_1" / "model.pt"
    assert sgd.read_bytes() == trained_as_control and not control.exists()


def test_the_pipeline_runs_through_the_pytorch_step_surface_included(repo):
    """train.step: torch, the path a GPU trains on, run end to end on the CPU."""
    repo.set_params({"train": {"step": "torch"}})
    log = repo.dvc("repro").stdout
    assert "cpu, PyTorch step" in log  # another implementation: other models
    assert set(statuses(log).values()) == {"trained (train.step changed: native to torch)"}
    summary = repo.summary()
    assert all(0.8 < a["test_accuracy"]["mean"] < 0.95 for a in summary["arms"])
    assert len(repo.surface()["models"]) == 6 and "Running stage 'surface'" in log


def test_saved_models_are_plain_state_dicts_with_their_record(repo):
    repo.set_params({"momentum": 0.4, "train": {"replicates": 1}})
    repo.dvc("repro", "train")
    folder = repo / "models" / "momentum_0.4_lr_0.1_batch_20" / "replicate_0"
    net = model.MLP([50, 50])
    net.load_state_dict(torch.load(folder / "model.pt", weights_only=True))
    record = json.loads((folder / "record.json").read_text())
    test = flatten.load_split("test", repo / "data" / "flat")
    with torch.no_grad():
        predictions = net(test["images"].float() / 255).argmax(1)
    accuracy = (predictions == test["labels"]).double().mean().item()
    assert accuracy == record["evaluations"][-1]["test_accuracy"]
    assert record["inputs"]["train"]["max_train_images"] == 2500
    assert record["inputs"]["method"] == {"lr": 0.1, "momentum": 0.4, "nesterov": False,
                                          "batch_size": 20}
    assert record["stopped"] == {"step": 200, "reason": "budget"}
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoints.pt", "model.pt",
                                                        "record.json", "seal.json", "timing.json"]
    # The kept weights: the initial ones, PyTorch's default init in this replicate, and those
    # of train.checkpoints ([0, 1, final]: epochs 1 and 2 here), the last being model.pt.
    kept = torch.load(folder / "checkpoints.pt", weights_only=True)
    assert sorted(kept) == [0, 1, 2]
    start = model.initial_state([50, 50], arms.replicate_seeds(1, 0)["init"])
    for name, tensor in net.state_dict().items():
        assert torch.equal(kept[0][name], start[name]) and torch.equal(kept[2][name], tensor)
        assert not torch.equal(kept[1][name], tensor)
    fine = record["fine_train_loss"]
    assert fine["every"] == 25 and len(fine["loss"]) == 2 * 100 // 25  # 100 steps per epoch
    assert 2.0 < fine["loss"][0] < 2.5 and fine["loss"][-1] < 1.0


def measured(log) -> tuple[int, int]:
    """(computed, reused) from the surface stage's log."""
    found = re.search(r"surface: (\d+) measurement\(s\) computed, (\d+) reused", log)
    return int(found[1]), int(found[2])


def test_the_surface_measures_only_new_weights_and_the_saddle_experiment(repo):
    """The template measured momenta 0 and 0.4 with the control, in two replicates."""
    surface = repo.surface()
    headline = json.loads((repo / "metrics" / "surface.json").read_text())
    assert headline == surface["headline"] and list(headline) == ["escape", "basin"]
    probes = surface["probe"]["mnist_train_indices"]  # one per fold, none of its validation
    assert set(probes) == {"0", "1"} and all(len(p) == 200 for p in probes.values())
    for fold, probe in probes.items():
        _, validation = split_indices(params.load(repo / "params.yaml").train, int(fold))
        assert not set(probe) & set(validation.tolist())
    assert [c["epoch"] for c in surface["models"][0]["curvature"]] == [0, 1, 2]
    log = repo.dvc("repro", "surface").stdout
    assert "Running stage 'surface'" not in log  # nothing changed

    repo.set_params({"train": {"replicates": 3}})
    log = repo.dvc("repro", "surface").stdout
    assert trained(log) == labels(["momentum 0.0 at lr 0.1, batch 20",
                                   "momentum 0.4 at lr 0.1, batch 20",
                                   "control 0.4 at lr 0.1, batch 20 (SGD at lr 0.1667)"], [2])
    # The new replicate: one initial point (shared by its three models) and two checkpoints per
    # model, each a curvature, a noise scale and a batch sharpness; three lines from the initial
    # weights, two between final weights.
    computed, reused = measured(log)
    assert computed == 3 * (1 + 2 * 3) + 3 + 2
    # per replicate: 9 eigsh runs, 9 noise scales, 9 batch sharpnesses and 5 lines
    assert computed + reused == 3 * (3 * 3 * 3 + 3 + 2)

    # The saddle experiment: a small initialisation. 200 steps here are too few to leave the
    # plateau at loss ln 10: no model escapes, and that is reported, not dropped.
    log = repo.dvc("exp", "run", "-S", "train.init_scale=0.1").stdout
    assert set(statuses(log).values()) == {"trained (parameters changed)"}
    surface = repo.surface()
    assert surface["settings"]["init_scale"] == 0.1
    assert all(m["escape_steps"] is None for m in surface["models"])
    assert all(a["never_escaped"] == 3 for a in surface["arms"])
    assert surface["headline"]["escape"] == "no pairs: 0.4"
    assert all(2.2 < m["early_train_loss"][0] < 2.4 for m in surface["models"])
    start = surface["models"][0]["curvature"][0]
    assert start["lambda_min"] < 0 < start["lambda_max"]  # near the saddle at the origin


def test_divergence_is_a_result_not_a_crash(repo):
    repo.set_params({"train": {"lr": 1e4, "replicates": 1}})
    log = repo.dvc("repro").stdout
    summary = repo.summary()
    assert summary["best"] is None and all(a["diverged"] == 1 for a in summary["arms"])
    for label in ("momentum 0.0 at lr 1e+04, batch 20 replicate 0",
                  "momentum 0.4 at lr 1e+04, batch 20 replicate 0"):
        assert f"{label}: diverged by step 100" in log  # at the first epoch's end: it stops
    assert repo.headline()["vs_zero"] == "diverged: 0.4"
    rows = (repo / "results" / "epochs.tsv").read_text().splitlines()
    header = rows[0].split("\t")
    assert {row.split("\t")[header.index("diverged")] for row in rows[1:]} == {"1"}
    assert (repo / "plots" / "loss.png").stat().st_size > 10_000
    # The surface of a diverged model: what was measurable before it diverged, nothing after.
    surface = repo.surface()
    for m in surface["models"]:
        assert m["escape_steps"] is None and m["line_from_initial"]["losses"] is None
        first, *later = m["curvature"]  # epoch 1, where it stopped, is not finite
        assert first["lambda_max"] > 0 and all(c["lambda_max"] is None for c in later)
    assert all(line["barrier"] is None for line in surface["lines"])
    assert (repo / "plots" / "surface_escape.png").stat().st_size > 10_000


def test_cuda_without_a_gpu_is_a_clear_error(repo):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    repo.set_params({"train": {"device": "cuda"}})
    result = repo.dvc("repro", "train", check=False)
    assert result.returncode != 0 and "no CUDA GPU is available" in result.stdout


def widest(text) -> int:
    return max(len(line.rstrip()) for line in text.splitlines())


@pytest.mark.long
def test_default_pipeline_end_to_end_and_dvcs_tables_fit_a_terminal(fresh_clone):
    """The README's `dvc repro` with the default params: 45 correctly trained models; then an
    experiment on one momentum, which reuses its models, after which `dvc metrics show` and `dvc
    exp show --only-changed` are at most 300 characters wide, and a bare `dvc exp show` at 200
    columns starts with decisions."""
    repo = fresh_clone
    log = repo.dvc("repro").stdout
    # A clone has none of the DVC-cached outputs: these stages must run.
    for stage in ("download", "flatten", "train", "summarize", "surface"):
        assert f"Running stage '{stage}'" in log
    assert "45 model(s) together" in log
    summary = repo.summary()
    assert len(summary["arms"]) == 9
    for arm in summary["arms"]:
        assert arm["replicates"] == 5 and not arm["diverged"]
        assert 0.96 <= arm["test_accuracy"]["mean"] <= 0.985, arm
        low, high = arm["test_accuracy"]["ci"]
        assert low < arm["test_accuracy"]["mean"] < high
    assert {c["family"] for c in summary["comparisons"]} == {"vs_zero", "vs_control", "vs_best"}
    surface = repo.surface()
    assert len(surface["models"]) == 45 and len(surface["lines"]) == 2 * 4 * 5
    assert all(m["escape_steps"] is not None for m in surface["models"])
    for c in (c for m in surface["models"] for c in m["curvature"]):
        assert c["converged"] and c["lambda_min"] < 0 < c["lambda_max"]
    for name in ("accuracy", "loss", "final_accuracy", "differences", "effective_step",
                 "lr_momentum", "batch_size", "memory", "time",
                 "landscape_saddle", "landscape_minima", "surface_escape", "surface_curvature",
                 "surface_lines", "surface_barriers"):
        assert (repo / "plots" / f"{name}.png").stat().st_size > 10_000
    again = repo.dvc("repro").stdout
    assert "Running stage" not in again
    assert "up to date" in repo.dvc("status").stdout

    wide = {"COLUMNS": "100000"}
    metrics = repo.run("dvc", "metrics", "show", env=wide).stdout
    assert "best.momentum" in metrics and widest(metrics) <= 300, metrics
    repo.commit("the default run")
    log = repo.dvc("exp", "run", "-n", "only-0.4", "-S", "momentum=0.4").stdout
    assert len(statuses(log)) == 15 and all(s.startswith("reused") for s in statuses(log).values())
    changed = repo.run("dvc", "exp", "show", "--only-changed", "--no-pager", env=wide).stdout
    assert "only-0.4" in changed and widest(changed) <= 300, changed
    bare = repo.run("dvc", "exp", "show", "--no-pager", env={"COLUMNS": "200"}).stdout
    header = next(line for line in bare.splitlines() if "Experiment" in line)[:200]
    assert "best.momentum" in header and not any(word in header for word in ("rule", "indices"))

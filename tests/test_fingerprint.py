"""The reuse rule: what a fingerprint covers, and the reason the log gives for retraining."""

import json
import os
import shutil
import stat

import pytest

from momentum_sweep import sources
from momentum_sweep.vocabulary import arms
from momentum_sweep.training import results, reuse
from momentum_sweep.vocabulary.schedule import Schedule

from good_params import parsed

KEY = arms.ModelKey(arms.Arm(0.4, 0.1, 20), 1)


def inputs(p=None, key=KEY, data="d", code="c", device="cpu", implementation="native"):
    p = p or parsed()
    return reuse.fingerprint_inputs(key, p, Schedule.of(p.train, key.arm.batch_size), data, code,
                                    device, implementation)


@pytest.mark.parametrize("change, reason", [
    (dict(key=arms.ModelKey(arms.Arm(0.4, 0.2, 20), 1)), "parameters changed"),  # train.lr
    (dict(key=arms.ModelKey(arms.Arm(0.4, 0.1, 40), 1)), "parameters changed"),  # batch size
    (dict(key=arms.ModelKey(arms.Arm(0.4, 0.1, 20, nesterov=True), 1)), "parameters changed"),
    (dict(p=parsed(epochs=3)), "parameters changed"),
    (dict(p=parsed(min_steps=100_000)), "parameters changed"),  # more epochs at batch 20
    (dict(p=parsed(target=0.96)), "parameters changed"),        # it may stop sooner
    (dict(p=parsed(init_scale=0.1)), "parameters changed"),
    (dict(p=parsed(checkpoints=[0, 5])), "parameters changed"),  # what the folder holds
    (dict(key=arms.ModelKey(arms.Arm(0.4, 0.1, 20), 2)), "parameters changed"),
    (dict(data="other"), "data changed"),
    (dict(code="other"), "code changed"),
    (dict(implementation="torch"), "train.step changed: native to torch"),
    (dict(device="cuda"), "torch version or device changed"),
])
def test_a_change_gives_a_new_fingerprint_and_names_its_reason(change, reason):
    old, new = inputs(), inputs(**change)
    assert reuse.fingerprint(old) != reuse.fingerprint(new)
    assert reuse.why_changed(old, new) == reason


@pytest.mark.parametrize("change", [
    dict(replicates=9), dict(lr_control=False), dict(device="cpu"), dict(lr=[0.1, 0.2]),
    dict(batch_size=[20, 1000]), dict(min_steps=2750),  # still 10 epochs at batch 20
    dict(checkpoints=["final", 1, 0]),                  # the same epochs, written otherwise
])
def test_settings_that_do_not_change_what_a_model_trains_do_not_retrain(change):
    assert reuse.fingerprint(inputs(parsed(**change))) == reuse.fingerprint(inputs())


def test_a_control_and_a_grid_arm_with_the_same_step_are_one_model():
    """Adding lr 0.2 to a grid with momentum 0.5 at lr 0.1: SGD at 0.2 is its control's model."""
    control = arms.ModelKey(arms.Arm(0.5, 0.1, 20, control=True), 1)
    grid_arm = arms.ModelKey(arms.Arm(0.0, 0.2, 20), 1)
    assert reuse.fingerprint(inputs(key=control)) == reuse.fingerprint(inputs(key=grid_arm))


def test_changing_any_training_path_file_changes_the_fingerprint(tmp_path):
    """Every file the train stage runs, changed one at a time in a copy of src/."""
    files = sources.stage_files("train")
    copy = tmp_path / "src"
    shutil.copytree(sources.SRC_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    copied = [copy / f.relative_to(sources.SRC_DIR) for f in files]
    baseline = sources.digest(copied, copy)
    assert baseline == sources.digest(files)
    seen = {baseline}
    for path in copied:
        original = path.read_bytes()
        path.write_bytes(original + b"\n# a change\n")
        changed = sources.digest(copied, copy)
        assert changed not in seen, path
        key = reuse.fingerprint(inputs(code=changed))
        assert key != reuse.fingerprint(inputs(code=baseline))
        seen.add(changed)
        path.write_bytes(original)
    assert {f.name for f in files} >= {"train.py", "trainer.py", "native_kernels.py",
                                       "native_kernels.c", "reuse.py", "__init__.py", "model.py",
                                       "results.py", "arms.py"}


def test_a_sealed_folder_is_reused_only_untouched(tmp_path):
    import torch

    record = {"fingerprint": "f" * 64, "inputs": {}, "evaluations": [], "stopped": None}
    folder = tmp_path / "m"
    results.write_folder(folder, {"w": torch.zeros(2)}, record, {"evaluations": []}, {})
    assert results.read_sealed(folder)[0] == record
    path = folder / "record.json"
    path.write_text(path.read_text().replace("[]", "[1]", 1))
    with pytest.raises(results.Damaged, match="record.json does not match its seal"):
        results.read_sealed(folder)


def test_flags_in_cc_retrain_and_the_log_says_why(monkeypatch):
    from momentum_sweep.training import native_kernels

    old = inputs()
    monkeypatch.setenv("CC", "cc -O2")
    native_kernels._identity.cache_clear()
    assert reuse.why_changed(old, inputs()) == "C compiler changed"


def sealed(folder, fingerprint, state=None):
    """A sealed folder: the network's initial weights (or ``state``) and an empty record."""
    from momentum_sweep.training.model import initial_state

    state = initial_state([50, 50], 1) if state is None else state
    record = {"fingerprint": fingerprint, "inputs": {}, "evaluations": [], "stopped": None}
    results.write_folder(folder, state, record, {"evaluations": []}, {0: state})


def decide(cache, models_dir):
    fp = reuse.fingerprint(inputs())
    return reuse.decide([KEY], {KEY: inputs()}, {KEY: fp}, cache, models_dir)[KEY]


def test_a_damaged_cache_entry_is_retrained_and_logged_as_damaged(tmp_path):
    cache = results.ModelCache(tmp_path / ".model-cache", [50, 50])
    fp = reuse.fingerprint(inputs())
    sealed(cache.path(fp), fp)
    assert decide(cache, tmp_path / "models")[1] == "reused from .model-cache"
    model = cache.path(fp) / "model.pt"
    model.write_bytes(model.read_bytes()[:-1])
    found, why = decide(cache, tmp_path / "models")
    assert found is None and why == ".model-cache entry damaged: model.pt does not match its seal"


def test_a_forged_model_resealed_by_hand_is_refused_not_loaded(tmp_path):
    """A model.pt carrying a pickle payload, its seal recomputed: the seal holds, but loading it
    as plain tensors fails (and runs nothing): the model is retrained, and says why."""
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    cache = results.ModelCache(tmp_path / ".model-cache", [50, 50])
    folder = tmp_path / "models" / KEY.name
    fp = reuse.fingerprint(inputs())
    sealed(folder, fp)
    (folder / "model.pt").write_bytes(pickle.dumps(Payload(), protocol=2))
    seal = json.loads((folder / "seal.json").read_text())
    seal["sha256"]["model.pt"] = results.sha256_file(folder / "model.pt")
    (folder / "seal.json").write_text(json.dumps(seal))
    results.read_sealed(folder)  # the seal alone is satisfied
    found, why = decide(cache, tmp_path / "models")
    assert found is None and why.startswith("files missing or damaged: its weights cannot be "
                                            "loaded as plain tensors")
    assert not (tmp_path / "pwned").exists()
    import torch
    sealed(folder, fp, {"layers.0.weight": torch.zeros(3)})  # tensors, but not the network's
    assert "model.pt is not the weights of a network of hidden layers [50, 50]" in \
        decide(cache, tmp_path / "models")[1]


def test_model_folders_have_the_permissions_the_umask_gives(tmp_path):
    previous = os.umask(0o022)
    try:
        sealed(tmp_path / "models" / "m", "f" * 64)
        results.copy_folder(tmp_path / "models" / "m", tmp_path / ".model-cache" / "f")
    finally:
        os.umask(previous)
    for folder in (tmp_path / "models" / "m", tmp_path / ".model-cache" / "f"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755

"""The reuse rule: what a fingerprint covers, and the reason the log gives for retraining."""

import os
import shutil
import stat

import pytest

from momentum_sweep import sources
from momentum_sweep.training import arms, results, reuse

from good_params import parsed

KEY = arms.ModelKey(arms.Arm(0.4, 0.1), 1)


def inputs(p=None, key=KEY, data="d", code="c", device="cpu", implementation="native"):
    return reuse.fingerprint_inputs(key, p or parsed(), data, code, device, implementation)


@pytest.mark.parametrize("change, reason", [
    (dict(key=arms.ModelKey(arms.Arm(0.4, 0.2), 1)), "parameters changed"),  # train.lr
    (dict(p=parsed(epochs=3)), "parameters changed"),
    (dict(p=parsed(init_scale=0.1)), "parameters changed"),
    (dict(p=parsed(checkpoints=[0, 5])), "parameters changed"),  # what the folder holds
    (dict(key=arms.ModelKey(arms.Arm(0.4, 0.1), 2)), "parameters changed"),
    (dict(data="other"), "data changed"),
    (dict(code="other"), "code changed"),
    (dict(implementation="torch"), "C compiler changed, code changed"),  # no compiler
    (dict(device="cuda"), "torch version or device changed"),
])
def test_a_change_gives_a_new_fingerprint_and_names_its_reason(change, reason):
    old, new = inputs(), inputs(**change)
    assert reuse.fingerprint(old) != reuse.fingerprint(new)
    assert reuse.why_changed(old, new) == reason


@pytest.mark.parametrize("change", [dict(replicates=9), dict(lr_control=False),
                                    dict(device="cpu")])
def test_settings_that_only_choose_which_models_exist_do_not_retrain(change):
    assert reuse.fingerprint(inputs(parsed(**change))) == reuse.fingerprint(inputs())


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

    record = {"fingerprint": "f" * 64, "inputs": {}, "epochs": [], "diverged_epoch": None}
    folder = tmp_path / "m"
    results.write_folder(folder, {"w": torch.zeros(2)}, record, {"epochs": []}, {})
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


def sealed(folder, fingerprint):
    import torch

    record = {"fingerprint": fingerprint, "inputs": {}, "epochs": [], "diverged_epoch": None}
    results.write_folder(folder, {"w": torch.zeros(2)}, record, {"epochs": []}, {})


def test_a_damaged_cache_entry_is_retrained_and_logged_as_damaged(tmp_path):
    cache = results.ModelCache(tmp_path / ".model-cache")
    fp = reuse.fingerprint(inputs())
    sealed(cache.path(fp), fp)
    assert reuse.decide([KEY], {KEY: inputs()}, cache, tmp_path / "models")[KEY][1] == (
        "reused from .model-cache")
    model = cache.path(fp) / "model.pt"
    model.write_bytes(model.read_bytes()[:-1])
    found, why = reuse.decide([KEY], {KEY: inputs()}, cache, tmp_path / "models")[KEY]
    assert found is None and why == ".model-cache entry damaged: model.pt does not match its seal"


def test_model_folders_have_the_permissions_the_umask_gives(tmp_path):
    previous = os.umask(0o022)
    try:
        sealed(tmp_path / "models" / "m", "f" * 64)
        results.copy_folder(tmp_path / "models" / "m", tmp_path / ".model-cache" / "f")
    finally:
        os.umask(previous)
    for folder in (tmp_path / "models" / "m", tmp_path / ".model-cache" / "f"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755

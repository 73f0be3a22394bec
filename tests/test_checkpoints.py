"""The train stage's models: keeping checkpoints does not change a model, the kept weights are
the model's at those epochs, and a run with one batch size trains, byte for byte, the models the
code before batch sizes, targets and segments trained."""

import hashlib

import torch

from good_params import parsed
from momentum_sweep.training import results, train


def run_in(folder, monkeypatch, flat_dir, **settings):
    """The train stage, run for real in ``folder`` on a small config; {model: folder}."""
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "flat").symlink_to(flat_dir)
    monkeypatch.chdir(folder)
    p = parsed(max_train_images=1500, validation_size=500, epochs=2, replicates=1, **settings)
    p = p.model_copy(update={"momentum": [0.0, 0.5]})
    train.run(p)
    return {f.relative_to(folder / "models").as_posix(): f
            for f in results.model_folders(folder / "models")}


def test_keeping_checkpoints_does_not_change_a_model(tmp_path, monkeypatch, flat_dir):
    none = run_in(tmp_path / "none", monkeypatch, flat_dir, checkpoints=[])
    every = run_in(tmp_path / "every", monkeypatch, flat_dir, checkpoints=[0, 1, "final"])
    assert sorted(none) == sorted(every) and len(none) == 3  # two momenta and a control
    for name in none:
        assert (none[name] / "model.pt").read_bytes() == (every[name] / "model.pt").read_bytes()
        kept = torch.load(every[name] / "checkpoints.pt", weights_only=True)
        assert sorted(kept) == [0, 1, 2]
        assert sorted(torch.load(none[name] / "checkpoints.pt", weights_only=True)) == [0]
        final = torch.load(every[name] / "model.pt", weights_only=True)
        assert all(torch.equal(kept[2][k], final[k]) for k in final)
        assert not any(torch.equal(kept[1][k], final[k]) for k in final)


# model.pt's SHA-256 as commit 636b75f (before batch sizes were a grid dimension, before targets
# and segments) trained them, with these settings: momentum [0, 0.5] and the control, 1,500
# images, 2 epochs, 1 replicate (run_in's train.run on that commit's code), under this torch.
PINNED_TORCH = "2.14.1"
BEFORE = {"momentum_0.0_lr_0.1": "61c63b1e40cfa574b4afa73c18e9e9424a7d2b8204fdba1df45862d2dba3bf82",
          "momentum_0.5_lr_0.1": "2116881de632eaf61c53cd731bc309530638e85c47058688d60dddac19738135",
          "control_0.5_lr_0.1": "ded97c97a71bca72b949a181359aa5b6cbb402c77de3d0358bb94dfbe58144c1"}


def test_one_batch_size_trains_the_same_models_as_before_batch_sizes_were_a_grid(
        tmp_path, monkeypatch, flat_dir):
    found = run_in(tmp_path / "now", monkeypatch, flat_dir, checkpoints=[0, 1, "final"])
    hashes = {name.split("/")[0].removesuffix("_batch_20"):
              hashlib.sha256((folder / "model.pt").read_bytes()).hexdigest()
              for name, folder in found.items()}
    assert hashes == BEFORE, (
        f"model.pt bytes differ from those pinned under torch {PINNED_TORCH} (torch "
        f"{torch.__version__} here). With the same torch, the training arithmetic changed: the "
        f"default run's models must stay byte-identical, so that is a bug. With another torch, "
        f"its kernels may round differently: check that the models still equal "
        f"torch.optim.SGD's (tests/test_native_step.py), then pin these hashes anew")

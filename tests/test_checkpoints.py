"""The train stage's kept weights: keeping checkpoints does not change a model, and they are the
weights the model had at those epochs."""

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

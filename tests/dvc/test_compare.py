"""momentum-sweep-compare on planted experiments: a real git and DVC repository whose one stage
plants an epochs table from its params (known effects, paired by replicate), experiments run by
the real `dvc exp run`, and the comparison's joined answer checked against the planted one."""

import json
import textwrap

import pandas as pd
import pytest

from clones import ROOT, Clone
from momentum_sweep.analysis import compare, epochs, summarize

pytestmark = pytest.mark.dvc

# Planted final accuracies: 0.95, + 0.004 for momentum 0.5 at lr 0.1, - 0.003 at lr 0.2, and a
# replicate's own offset shared by its arms (so the comparisons are paired).
PLANT = textwrap.dedent('''
    import pandas as pd
    from ruamel.yaml import YAML
    from momentum_sweep import params
    from momentum_sweep.analysis import epochs
    from momentum_sweep.vocabulary import files, schema
    from momentum_sweep.vocabulary import arms

    p = params.parse(YAML(typ="safe").load(open("params.yaml")))
    rows = []
    for key in arms.models(p):
        arm = key.arm
        accuracy = (0.95 + 0.004 * (arm.momentum == 0.5 and arm.lr == 0.1 and not arm.control)
                    - 0.003 * (arm.lr == 0.2) + 0.002 * key.replicate
                    + 0.0002 * (len(arm.name) % 3)
                    + 0.0001 * ((key.replicate * len(arm.name)) % 5) / 5)  # no exact ties
        rows.append({**schema.identity(arm, key.replicate, key.replicate,
                                       {"steps": 100, "target": None}),
                     "step": 100, "epoch": p.train.epochs, "examples": 2000,
                     "train_loss": 0.1, "train_accuracy": 0.97, "val_loss": 0.2,
                     "val_accuracy": accuracy, "test_loss": 0.2, "test_accuracy": accuracy,
                     "diverged": 0, "stopped": "budget"})
    epochs.write_tsv(pd.DataFrame(rows, columns=schema.COLUMNS), files.EPOCHS_FILE)
''')
DVC_YAML = textwrap.dedent('''
    stages:
      plant:
        cmd: python plant.py
        deps: [plant.py]
        params: [momentum, train, model]
        outs:
          - results/epochs.tsv:
              cache: false
''')


@pytest.fixture
def planted(tmp_path):
    """A repository of the planted stage, with the committed params.yaml and a small grid."""
    clone = Clone(tmp_path / "planted")
    clone.path.mkdir()
    (clone / "plant.py").write_text(PLANT)
    (clone / "dvc.yaml").write_text(DVC_YAML)
    (clone / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    clone.set_params({"momentum": [0.0, 0.5], "train": {"replicates": 4, "lr_control": False}})
    clone.git("init", "-q")
    clone.dvc("init", "-q")
    clone.commit("planted")
    return clone


def planted_tables(clone, lrs):
    """The planted table of each lr, as the stage writes it."""
    found = []
    for lr in lrs:
        clone.set_params({"train": {"lr": lr}})
        clone.run("python", "plant.py")
        found.append(epochs.read_tsv(clone / "results" / "epochs.tsv"))
    clone.git("checkout", "params.yaml")
    return found


def test_experiments_of_a_grid_join_into_the_answer_of_the_whole_grid(planted):
    for lr in ("0.05", "0.1", "0.2"):
        planted.dvc("exp", "run", "-n", f"lr-{lr}", "-S", f"train.lr={lr}")
    planted.dvc("exp", "run", "-n", "longer", "-S", "train.lr=0.1", "-S", "train.epochs=3")
    log = planted.run("momentum-sweep-compare").stdout
    assert "compare: 3 of 4 experiment(s)" in log
    assert "left out longer: different settings: train.epochs=3 (most have 10)" in log

    joined = json.loads((planted / "comparison" / "summary.json").read_text())
    tables = planted_tables(planted, (0.05, 0.1, 0.2))
    expected = summarize.summary(pd.concat(tables, ignore_index=True))
    assert joined == json.loads(json.dumps(expected))
    # each model once, momentum 0 of every slice included
    arms = pd.read_csv(planted / "comparison" / "arms.tsv", sep="\t")
    assert len(arms) == 6 and (arms["replicates"] == 4).all()
    tuned = [c for c in joined["comparisons"] if c["family"] == "tuned_vs_zero"]
    assert [(c["arm"], c["against"], c["n"]) for c in tuned] == [
        ("momentum_0.5_lr_0.1_batch_20", "momentum_0.0_lr_0.05_batch_20", 4)]
    assert tuned[0]["mean_difference"] == pytest.approx(0.004, abs=0.0005)  # paired: exact
    headline = json.loads((planted / "comparison" / "headline.json").read_text())
    assert headline["vs_tuned_zero"] == "better: 0.5"
    report = pd.read_csv(planted / "comparison" / "experiments.tsv", sep="\t")
    assert sorted(report.loc[report["included"], "experiment"]) == ["lr-0.05", "lr-0.1",
                                                                     "lr-0.2"]
    for name in ("accuracy", "lr_momentum", "differences", "batch_size"):
        assert (planted / "comparison" / f"{name}.png").stat().st_size > 10_000


def test_two_sets_of_settings_held_equally_often_are_refused_by_name(planted):
    planted.dvc("exp", "run", "-n", "short", "-S", "train.epochs=2")
    planted.dvc("exp", "run", "-n", "long", "-S", "train.epochs=3")
    result = planted.run("momentum-sweep-compare", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stdout
    assert ("2 sets of settings equally often (1 each: short: train.epochs=2; long: "
            "train.epochs=3)") in result.stdout


def test_an_experiment_with_other_settings_is_left_out_with_its_values_as_written():
    """dvc.api.exp_show gives integer params as floats (3.0); the reason gives them as
    params.yaml holds them."""
    common = {"Experiment": "e", "momentum": 0.4, "train.lr": 0.1, "train.batch_size": 20.0,
              "model.hidden": [50, 50]}
    reference = compare.signature({**common, "train.epochs": 10.0})
    assert reference["train.epochs"] == "10" and "train.batch_size" not in reference  # swept
    assert compare.different_settings({**common, "train.epochs": 10.0}, reference) == ""
    assert compare.different_settings({**common, "momentum": 0.9, "train.epochs": 10.0},
                                      reference) == ""  # momentum is what a sweep varies
    assert compare.different_settings({**common, "train.epochs": 3.0}, reference) == (
        "different settings: train.epochs=3 (most have 10)")


def git_repository(path):
    Clone(path).git("init", "-q")
    return path


@pytest.mark.parametrize("make, expected", [
    (lambda path: path / "nonexistent", "no such folder"),
    (lambda path: path, "not a git repository (no .git)"),
    (git_repository, "not a DVC repository (no .dvc)"),
])
def test_a_repository_that_is_not_one_is_one_line(tmp_path, make, expected):
    repo = make(tmp_path)
    result = Clone(tmp_path).run("momentum-sweep-compare", "--repo", repo, "--out",
                                 tmp_path / "out", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stdout
    assert result.stdout.startswith(f"error: --repo {repo}: {expected}")
    assert len(result.stdout.strip().splitlines()) == 1

"""What must not drift: dvc.yaml and pyproject.toml against the code's imports, the fingerprint's
files, and the repository's independence from anything outside it."""

import ast
import json
import importlib.metadata
import inspect
import re
import subprocess
import sys
import tomllib

import pytest
from ruamel.yaml import YAML

from clones import ROOT
from momentum_sweep import sources
from momentum_sweep.stage import STAGES

DVC_YAML = YAML(typ="safe").load((ROOT / "dvc.yaml").read_text())
DATA_DEPS = {"download": {"data/mnist"}, "flatten": {"data/raw"}, "train": {"data/flat"},
             "summarize": {"models"}, "surface": {"data/flat", "models"}}
TRAINER = {"training/train.py", "training/trainer.py", "training/native_step.py",
           "training/torch_step.py", "training/native_kernels.py"}


def relative(paths):
    return {p.resolve().relative_to(ROOT).as_posix() for p in paths}


def test_every_stage_runs_through_the_runner_and_is_registered():
    stages = DVC_YAML["stages"]
    assert set(stages) == set(STAGES)
    for name, stage in stages.items():
        assert stage["cmd"] == f"python src/run_stage.py {name}"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_are_exactly_the_files_it_imports_and_its_data(stage):
    declared = set(DVC_YAML["stages"][stage]["deps"])
    expected = relative(sources.stage_files(stage)) | DATA_DEPS.get(stage, set())
    assert declared == expected, (f"dvc.yaml deps of {stage} (run scripts/update-dvc-deps): "
                                  f"missing {sorted(expected - declared)}, "
                                  f"extra {sorted(declared - expected)}")


@pytest.mark.parametrize("stage", ["summarize", "surface"])
def test_the_stages_that_read_models_never_import_the_trainer(stage):
    """They read what training wrote; a change to the trainer reruns them only through it."""
    files = {p.relative_to(sources.PACKAGE_DIR).as_posix() for p in sources.stage_files(stage)
             if sources.PACKAGE_DIR in p.parents}
    assert not files & TRAINER


def test_every_import_is_a_statement_the_reading_follows():
    """Only the entry point imports by name (the stage it is asked to run)."""
    dynamic = [p.name for p in (ROOT / "src").rglob("*.py")
               if re.search(r"importlib|__import__", p.read_text())]
    assert dynamic == ["stage.py"]


def test_the_train_stage_loads_no_module_the_fingerprint_misses():
    """Import the train stage in a fresh interpreter, with what it imports lazily."""
    program = ("import sys, momentum_sweep.stage, momentum_sweep.training.train, "
               "momentum_sweep.training.native_step\n"
               "print('\\n'.join(m for m in sys.modules if m.startswith('momentum_sweep')))")
    loaded = subprocess.run([sys.executable, "-c", program], check=True, text=True,
                            stdout=subprocess.PIPE, cwd=ROOT / "src").stdout.split()
    fingerprinted = {sources.module_file(m) for m in loaded}
    assert fingerprinted <= set(sources.stage_files("train"))


def test_the_params_stage_depends_on_the_whole_file():
    assert DVC_YAML["stages"]["params"]["params"] == [{"params.yaml": None}]


def third_party_imports(folder):
    """Top-level names of the modules the code under ``folder`` imports from outside it."""
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"momentum_sweep"}


def declared_distributions(*extras):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [
        r for extra in extras for r in project["optional-dependencies"][extra]]
    return {re.split(r"[<>=!~\[ ;]", r)[0].lower().replace("_", "-") for r in requirements}


@pytest.mark.parametrize("folder, extras", [("src", ()), ("tests", ("test",)),
                                            ("benchmarks", ("test",))])
def test_every_library_the_code_imports_is_declared(folder, extras):
    """A library installed by hand here but missing from pyproject.toml fails CI's clean install."""
    by_module = importlib.metadata.packages_distributions()
    local = {p.stem for p in (ROOT / folder).rglob("*.py")}
    needed = {by_module[name][0].lower().replace("_", "-")
              for name in third_party_imports(ROOT / folder) - local}
    assert needed <= declared_distributions(*extras), (
        f"imported under {folder}/ but not in pyproject.toml: "
        f"{sorted(needed - declared_distributions(*extras))}")


def test_dvc_reads_its_yaml_with_libyamls_parser():
    """ruamel.yaml.clib is declared for speed alone: this fails if it no longer gives ruamel.yaml's
    safe loader, the one DVC reads dvc.yaml and dvc.lock with, its C parser."""
    from ruamel.yaml import YAML
    from ruamel.yaml.main import CParser

    assert CParser is not None and YAML(typ="safe").Parser is CParser


def tracked_text_files():
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           text=True, stdout=subprocess.PIPE).stdout.split()
    for name in names:
        path = ROOT / name
        if path.is_file() and path.suffix in {".py", ".md", ".yaml", ".toml", ".json", ".sh",
                                              ".txt", ""} and "data/mnist" not in name:
            yield name, path.read_text(errors="replace")


def test_the_repository_refers_to_nothing_outside_it():
    pattern = re.compile(r"DESIGN\.md|notebook\.txt|\.\./shared|/work/")
    hits = [name for name, text in tracked_text_files()
            if pattern.search(text) and name != "tests/test_layout.py"]
    assert hits == []


def test_the_code_uses_public_pytorch_apis_only():
    hits = [p for p in (ROOT / "src").rglob("*.py")
            if re.search(r"torch\._|aten\.", p.read_text())]
    assert hits == []


def test_loads_are_safe_and_no_command_takes_a_value_from_params():
    text = "\n".join(p.read_text() for p in (ROOT / "src").rglob("*.py"))
    assert text.count("torch.load(") == text.count("weights_only=True)") > 0
    assert "yaml.load(" not in text and "shell=True" not in text
    assert all("${" not in s["cmd"] for s in DVC_YAML["stages"].values())


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```\n(.*?)```", readme, re.DOTALL).group(1).splitlines()
    assert len(block) == 2 and block[0].endswith("&& dvc repro") and block[1].endswith("pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    pattern = re.search(r"grep -m1 -E '([^']+)' README.md", ci).group(1)
    assert [line for line in readme.splitlines() if re.search(pattern, line)][0] == block[1]


def test_the_readme_quotes_the_committed_results():
    """Every block scripts/results-tables prints (from results/summary.json, docs/tuned/,
    docs/batch/, results/surface.json, docs/saddle/surface.json, docs/edge/, docs/noise/ and
    docs/second/)
    is in the README or its details, docs/answer.md, docs/batch.md, docs/surface.md,
    docs/why.md and docs/second.md, as printed."""
    printed = subprocess.run([sys.executable, str(ROOT / "scripts" / "results-tables")],
                             capture_output=True, text=True, check=True).stdout.strip()
    readme = "".join((ROOT / name).read_text()
                     for name in ("README.md", "docs/answer.md", "docs/batch.md",
                                  "docs/surface.md", "docs/why.md", "docs/second.md"))
    blocks = printed.split("\n\n")
    assert "| momentum 0.0 at lr 0.1, batch 20 |" in blocks[0]
    assert "| momentum 0.4 at lr 0.1, batch 20 |" in blocks[1]
    assert "| 0.4 |" in blocks[2] and "400 models" in blocks[3]
    assert blocks[4].startswith("| batch | tuned plain SGD") and "1225 models" in blocks[5]
    assert blocks[6].startswith("| batch | tuned plain SGD") and blocks[6] != blocks[4]
    assert "| 8192 | nesterov 0.9 |" in blocks[7]
    assert blocks[8].startswith("| measure")
    assert blocks[13].startswith("| batch | tuned plain SGD")        # the batch run at 95%
    assert blocks[14].startswith("| line | S_min")                   # the fits
    assert blocks[15].startswith("| batch | plain SGD's noise scale")  # sharpness, noise
    assert blocks[16].startswith("| arm | reached 96%")              # batch sharpness, large
    assert blocks[17].startswith("Plain SGD's noise scale")          # the prediction
    assert blocks[18].startswith("| | predicted (before the run)")   # against the outcome
    assert blocks[19].startswith("| batch | tuned plain SGD")        # the second network
    assert blocks[20].startswith("- **Noise.**") and len(blocks) == 21
    for block in blocks:
        assert block in readme, block


def test_the_saddle_experiment_is_the_default_pipeline_at_init_scale_0_1():
    """docs/saddle/ holds what scripts/doc-experiment saddle copied: the current settings, but the
    initialisation."""
    saddle = json.loads((ROOT / "docs" / "saddle" / "surface.json").read_text())
    default = json.loads((ROOT / "results" / "surface.json").read_text())
    assert saddle["settings"]["init_scale"] == 0.1 and default["settings"]["init_scale"] == 1.0
    assert saddle["settings"]["surface"] == default["settings"]["surface"]
    assert saddle["probe"] == default["probe"]
    assert [m["model"] for m in saddle["models"]] == [m["model"] for m in default["models"]]


def test_the_tuned_experiment_is_the_default_pipeline_on_a_grid_of_four_lrs():
    """docs/tuned/ holds what scripts/doc-experiment tuned copied: every default momentum at four
    lrs, the notebook's 0.1 among them, 20 replicates each, and the tuned answer."""
    tuned = json.loads((ROOT / "docs" / "tuned" / "summary.json").read_text())
    default = json.loads((ROOT / "results" / "summary.json").read_text())
    momenta = sorted({a["momentum"] for a in default["arms"]})
    assert sorted({(a["momentum"], a["lr"]) for a in tuned["arms"]}) == [
        (m, lr) for m in momenta for lr in (0.025, 0.05, 0.1, 0.2)]
    assert all(a["replicates"] == 20 and not a["control"] for a in tuned["arms"])
    assert sum(a["best_lr_of_line"] for a in tuned["arms"]) == 5


def test_the_edge_experiment_trains_the_batch_experiments_tuned_steps_at_large_batch():
    """docs/edge/ holds what scripts/doc-experiment edge copied: plain SGD and heavy-ball 0.9 at
    batch 2048 and 8192, 3 replicates, each at every step the batch experiment tuned either of
    them to there, and the batch sharpness where each model reached 96%."""
    edge = json.loads((ROOT / "docs" / "edge" / "surface.json").read_text())
    batch = json.loads((ROOT / "docs" / "batch" / "summary.json").read_text())
    sizes, lines = (2048, 8192), {(0.0, False), (0.9, False)}
    tuned = {a["lr"] for a in batch["arms"] if a["best_lr_of_line"] and a["batch_size"] in sizes
             and (a["momentum"], a["nesterov"]) in lines}
    listed = [a for a in edge["arms"] if not a["control"]]
    assert {(a["batch_size"], a["momentum"], a["lr"]) for a in listed} == {
        (b, m, lr) for b in sizes for m, _ in lines for lr in tuned}
    assert all(a["replicates"] == 3 for a in listed)
    assert all("batch_sharpness" in m["at_target"] for m in edge["models"] if m["at_target"])


def test_the_batch_experiment_spans_batch_sizes_20_to_8192_with_every_tuned_step_inside():
    """docs/batch/ holds what scripts/doc-experiment batch joined: steps to a target, batch
    sizes 20 to at least 8192, momentum 0, 0.5, 0.9, 0.99 and Nesterov's 0.9, 5 replicates or
    more, and no tuned step on the edge of its grid."""
    batch = json.loads((ROOT / "docs" / "batch" / "summary.json").read_text())
    assert batch["measure"]["target"] == 0.96
    arms = [a for a in batch["arms"] if not a["control"]]
    sizes = sorted({a["batch_size"] for a in arms})
    assert sizes[0] == 20 and sizes[-1] >= 8192
    lines = {(a["momentum"], a["nesterov"]) for a in arms}
    assert lines == {(0.0, False), (0.5, False), (0.9, False), (0.99, False), (0.9, True)}
    assert all(a["replicates"] >= 5 for a in arms)
    tuned = [a for a in arms if a["best_lr_of_line"]]
    assert len(tuned) == len(sizes) * len(lines)
    assert [a["arm"] for a in tuned if a["edge"]] == []



def test_every_test_that_drives_dvc_lives_under_tests_dvc():
    """The docs say tests/ holds the unit tests and tests/dvc/ those that run `dvc`."""
    outside = [p.name for p in (ROOT / "tests").glob("test_*.py")
               if re.search(r"pytest\.mark\.dvc|\.dvc\(|\"dvc\", \"exp\"", p.read_text())]
    assert outside == []


def test_the_vocabulary_is_a_floor_that_imports_nothing_of_the_package():
    for path in (ROOT / "src" / "momentum_sweep" / "vocabulary").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level <= 1 and not (node.module or "").startswith("momentum_sweep"), \
                    f"{path.name} imports {node.module}"


def test_both_trainers_have_the_interface_the_pass_asks_for():
    from momentum_sweep.training import trainer

    for cls in trainer.TRAINERS.values():
        assert all(callable(getattr(cls, m, None)) for m in
                   trainer.TRAINER_INTERFACE["methods"]), cls
        source = inspect.getsource(cls)
        assert all(f"self.{a} =" in source or f"self.{a}, " in source
                   for a in trainer.TRAINER_INTERFACE["attributes"]), cls


def test_the_second_networks_prediction_was_committed_before_its_outcome():
    """docs/second/prediction.json is in the history before docs/second/summary.json is."""
    def added(path):
        found = subprocess.run(["git", "log", "--diff-filter=A", "--format=%H", "--", path],
                               cwd=ROOT, capture_output=True, text=True).stdout.split()
        return found[-1] if found else None

    prediction, outcome = added("docs/second/prediction.json"), added("docs/second/summary.json")
    if prediction is None or outcome is None:
        pytest.skip("the history that added them is not in this clone (a shallow one)")
    assert prediction != outcome
    assert subprocess.run(["git", "merge-base", "--is-ancestor", prediction, outcome],
                          cwd=ROOT).returncode == 0

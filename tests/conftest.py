"""Fixtures: temporary clones of this repository in which the real `dvc` CLI runs the pipeline."""

import momentum_sweep  # noqa: F401  first: sets MKL's reproducibility mode before torch computes

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Small but real: MNIST images, a subset for speed, full 10,000-image test set.
SMALL = {"train": {"max_train_images": 2500, "validation_size": 500, "epochs": 2}}


def environment(repo):
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(Path(repo) / "src")  # the clone's code runs, edits included
    env["DVC_NO_ANALYTICS"] = "1"
    env.pop("MKL_CBWR", None)
    return env


def run(args, repo, check=True, timeout=600):
    """Run a command in ``repo``; returns the CompletedProcess with stdout and stderr merged."""
    result = subprocess.run(args, cwd=repo, env=environment(repo), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({result.returncode}):\n"
                             f"{result.stdout}")
    return result


def dvc(repo, *args, check=True):
    return run([BIN / "dvc", *args], repo, check=check)


def git(repo, *args):
    return run(["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", *args],
               repo)


def update_params(repo, changes):
    path = Path(repo) / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if isinstance(value, dict):
            params.setdefault(key, {}).update(value)
        else:
            params[key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def clone_repository(dest):
    """The repository's tracked and untracked-but-not-ignored files, as a new git repository."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           stdout=subprocess.PIPE, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "clone")
    return dest


@pytest.fixture(scope="session")
def flattened(tmp_path_factory):
    """A clone with the small config committed and `dvc repro flatten` done: copied per test."""
    repo = clone_repository(tmp_path_factory.mktemp("template"))
    update_params(repo, SMALL)
    dvc(repo, "repro", "flatten")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "small config, flattened")
    return repo


@pytest.fixture
def repo(flattened, tmp_path):
    dest = tmp_path / "repo"
    shutil.copytree(flattened, dest, symlinks=True)
    return dest


@pytest.fixture(scope="session")
def fresh_clone(tmp_path_factory):
    return clone_repository(tmp_path_factory.mktemp("fresh"))

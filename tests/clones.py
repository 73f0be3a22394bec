"""Temporary clones of this repository in which the real `dvc` CLI runs the pipeline."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from filelock import FileLock
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Small but real: MNIST images, a subset for speed, the full 10,000-image test set.
SMALL = {"momentum": [0.0, 0.4],
         "train": {"max_train_images": 2500, "validation_size": 500, "epochs": 2,
                   "replicates": 2},
         "surface": {"probe_size": 200, "sharpness_batches": 10}}


def environment():
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env.pop("PYTHONPATH", None)  # the stages import the clone's own src/, as for a user
    env.pop("MKL_CBWR", None)
    return env


def default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def merge(target: dict, changes: dict):
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = value


class Clone:
    """A repository copy: ``clone / "models"`` is a path; ``clone.dvc(...)`` runs dvc in it."""

    def __init__(self, path):
        self.path = Path(path)

    def __truediv__(self, other) -> Path:
        return self.path / other

    def run(self, *args, check=True, timeout=900, env=None):
        """Run a command here (``env``: variables to add); the CompletedProcess has stdout and
        stderr merged. The output goes through a file, not a pipe: a daemon the command starts
        (`dvc queue start`'s worker) keeps a pipe open until it exits, and the call would wait
        for it, where a terminal returns at once."""
        with tempfile.TemporaryFile() as output:
            result = subprocess.run([str(a) for a in args], cwd=self.path,
                                    env={**environment(), **(env or {})}, stdout=output,
                                    stderr=subprocess.STDOUT, timeout=timeout,
                                    stdin=subprocess.DEVNULL)
            output.seek(0)
            result.stdout = output.read().decode()
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(map(str, args))} failed ({result.returncode}):\n"
                                 f"{result.stdout}")
        return result

    def start(self, *args):
        """Start a command in its own process group (to signal it); stdout and stderr merged.

        SIGINT gets its default action there, as in a terminal's foreground job. A process
        inherits an ignored SIGINT, and a test run started in the background by a
        non-interactive shell (`pytest &` in a script) has it ignored: so would dvc and the
        stage, and Ctrl-C would be lost in the test though never at a terminal."""
        return subprocess.Popen([str(a) for a in args], cwd=self.path, env=environment(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True, stdin=subprocess.DEVNULL,
                                preexec_fn=default_sigint)

    def dvc(self, *args, check=True):
        return self.run(BIN / "dvc", *args, check=check)

    def git(self, *args, check=True):
        return self.run("git", "-c", "user.name=test", "-c", "user.email=test@example.invalid",
                        *args, check=check)

    def commit(self, message):
        self.git("add", "-A")
        self.git("commit", "-qm", message)

    def set_params(self, changes: dict):
        """Change params.yaml as a user would, keeping its comments."""
        yaml = YAML()
        path = self.path / "params.yaml"
        params = yaml.load(path.read_text())
        merge(params, changes)
        with open(path, "w") as f:
            yaml.dump(params, f)

    def summary(self) -> dict:
        """results/summary.json: the whole summary."""
        return json.loads((self.path / "results" / "summary.json").read_text())

    def headline(self) -> dict:
        """metrics/summary.json: the decisions DVC's tables show."""
        return json.loads((self.path / "metrics" / "summary.json").read_text())

    def surface(self) -> dict:
        return json.loads((self.path / "results" / "surface.json").read_text())

    def model_files(self) -> dict:
        """{path below models/: bytes} of every model.pt, checkpoints.pt and record.json: what
        must be byte-identical between reuse and retraining (timing.json records seconds, and
        seal.json holds timing.json's hash)."""
        return {p.relative_to(self.path / "models").as_posix(): p.read_bytes()
                for p in sorted((self.path / "models").rglob("*"))
                if p.is_file() and p.name in ("model.pt", "checkpoints.pt", "record.json")}

    def copy(self, dest) -> "Clone":
        shutil.copytree(self.path, dest, symlinks=True)
        return Clone(dest)


def clone_repository(dest) -> Clone:
    """The repository's tracked and untracked-but-not-ignored files, as a new git repository."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           stdout=subprocess.PIPE, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    clone = Clone(dest)
    clone.git("init", "-q")
    clone.commit("clone")
    return clone


def statuses(log: str) -> dict:
    """{model label: its line's verdict} from a train log: 'reused', or 'trained (why)'."""
    found = {}
    for line in log.splitlines():
        head, _, tail = line.partition(": ")
        if " replicate " in head and (tail.startswith("reused") or tail.startswith("trained")):
            found[head] = tail
    return found


def built_once(tmp_path_factory, name, build):
    """The folder ``name``, made by ``build(folder)`` once for all the workers of this run (they
    share the parent of their temporary folders); the others wait for it and reuse it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


def wait_for_queue(repo, timeout=600) -> str:
    """`dvc queue status` once nothing is queued or running any more. A look costs about a
    second of CPU taken from the experiments on the same core: one every five seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = repo.dvc("queue", "status").stdout
        if not re.search(r"Queued|Running", status):
            return status
        time.sleep(5)
    raise AssertionError(f"queue still busy: {status}")

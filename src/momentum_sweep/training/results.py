"""Model folders: how a trained model is stored, sealed, found again and reused.

A model's folder holds ``model.pt`` (a plain MLP state_dict: the weights when it stopped),
``checkpoints.pt`` ({epoch: state_dict} for the initial weights, epoch 0, and the epochs of
train.checkpoints it completed), ``record.json`` (what produced it: the fingerprint and its
inputs, the figures of each evaluation, why and where it stopped, the fine training-loss curve),
``timing.json`` (seconds and memory, which differ run to run) and ``seal.json``: the fingerprint
and the SHA-256 of the other four files. The seal is written last, into a folder built under a
temporary name and then renamed into place, so a killed run never leaves a folder that looks
complete, and an edit of any file (the record included) breaks the seal instead of being trusted.
A seal says the files are as written, not that a folder is where it belongs or holds weights:
``read_trained`` checks that the record is of its path's arm and replicate, and
``check_weights`` that the weights load as plain tensors of the network's shapes.

Two places hold folders:
- ``models/<arm>/replicate_<r>/``: exactly the models params.yaml lists (a DVC output);
- ``.model-cache/<fingerprint>/``: every model this machine trained or saw, so that narrowing
  the list, an experiment, or an interruption never costs finished work. Git and DVC ignore it.
"""

import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

from ..atomic import fsync, json_text, no_space, umask
from ..errors import SweepError
from ..vocabulary.arms import Arm, ModelKey

MODELS_DIR = Path("models")
CACHE_DIR = Path(".model-cache")
FILES = ("model.pt", "checkpoints.pt", "record.json", "timing.json")
SEAL = "seal.json"


class Damaged(Exception):
    """A folder that is not a complete, sealed model; the message says what is wrong."""


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_sealed(path):
    """(record, timing) of a complete, untouched folder; else ``Damaged`` saying why."""
    path = Path(path)
    if not path.is_dir() or path.is_symlink():
        raise Damaged("missing")
    try:
        names = sorted(os.listdir(path))
        if names != sorted((*FILES, SEAL)):
            missing = sorted(set((*FILES, SEAL)) - set(names))
            extra = sorted(set(names) - set((*FILES, SEAL)))
            raise Damaged(", ".join([f"missing {n}" for n in missing] +
                                    [f"unexpected {n}" for n in extra]))
        seal = json.loads((path / SEAL).read_text())
        for name in FILES:
            if seal["sha256"][name] != sha256_file(path / name):
                raise Damaged(f"{name} does not match its seal")
        record = json.loads((path / "record.json").read_text())
        timing = json.loads((path / "timing.json").read_text())
        if record["fingerprint"] != seal["fingerprint"]:
            raise Damaged("record.json does not match its seal")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise Damaged(f"unreadable ({error})") from None
    return record, timing


def key_of(folder) -> ModelKey:
    """The model a folder's path stands for: models/<arm>/replicate_<r>."""
    folder = Path(folder)
    replicate = folder.name.removeprefix("replicate_")
    if not replicate.isdigit() or str(int(replicate)) != replicate:
        raise ValueError(f"{folder.name!r} is not a replicate's folder (like replicate_0)")
    return ModelKey(Arm.from_name(folder.parent.name), int(replicate))


def read_trained(folder):
    """(key, record, timing) of a model folder for a stage that reads models/: a damaged one,
    or one whose record is not of its path's arm and replicate, is a SweepError naming it."""
    try:
        key = key_of(folder)
        record, timing = read_sealed(folder)
    except (Damaged, ValueError) as damage:
        raise SweepError(f"{folder}: {damage}; run `dvc repro train` to rebuild it") from None
    inputs = record.get("inputs", {})
    if (inputs.get("method"), inputs.get("replicate")) != (key.arm.method, key.replicate):
        raise SweepError(f"{folder}: holds a model trained with {inputs.get('method')} in "
                         f"replicate {inputs.get('replicate')}, not {key.label} (a folder "
                         f"copied or moved by hand?); run `dvc repro train` to rebuild it")
    return key, record, timing


def check_weights(folder, hidden):
    """Damaged unless model.pt and checkpoints.pt load as plain tensors (no code runs) with the
    names, shapes and dtype of the network's state_dict."""
    import torch

    from .model import MLP

    with torch.device("meta"):  # shapes and dtypes only: nothing allocated, whatever the size
        expected = {name: (tuple(t.shape), t.dtype) for name, t in MLP(hidden).state_dict().items()}
    try:
        final = torch.load(Path(folder) / "model.pt", weights_only=True)
        kept = torch.load(Path(folder) / "checkpoints.pt", weights_only=True)
    except Exception as error:  # torch raises several types for a file that is not weights
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise Damaged(f"its weights cannot be loaded as plain tensors ({first})") from None
    states = [("model.pt", final)] + [(f"checkpoints.pt epoch {e}", s) for e, s in
                                      (kept.items() if isinstance(kept, dict) else [(None, kept)])]
    for where, state in states:
        found = state if isinstance(state, dict) else {}
        shapes = {name: (tuple(t.shape), t.dtype) for name, t in found.items()
                  if isinstance(t, torch.Tensor)}
        if shapes != expected:
            raise Damaged(f"{where} is not the weights of a network of hidden layers {hidden}")


def _stage_folder(parent: Path, name: str) -> Path:
    """A new empty folder beside the target, with the permissions a plain mkdir would give
    (mkdtemp makes it private, and the model folders are for everyone the umask allows)."""
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".incomplete-{name}-"))
    staging.chmod(0o777 & ~umask())
    return staging


def _put_in_place(staging: Path, target: Path):
    """Rename a finished staging folder onto ``target``, replacing what was there."""
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".old-{target.name}-"))
        os.replace(target, old / target.name)
        os.replace(staging, target)
        shutil.rmtree(old)
    else:
        os.replace(staging, target)


def write_folder(target, state_dict, record, timing, checkpoints):
    """Write a model folder atomically: files, then the seal, then the rename."""
    target = Path(target)
    with no_space(target):
        _write_folder(target, state_dict, record, timing, checkpoints)


def _write_folder(target, state_dict, record, timing, checkpoints):
    import torch  # here, not above: the analysis stages read folders without loading torch

    staging = _stage_folder(target.parent, target.name)
    try:
        # Into memory, then the file: given a path, torch.save names the archive inside after
        # the file (the temporary name would make the bytes differ from run to run), and a full
        # disk is then an ordinary OSError rather than torch's RuntimeError.
        for name, content in (("model.pt", state_dict), ("checkpoints.pt", checkpoints)):
            buffer = io.BytesIO()
            torch.save(content, buffer)
            (staging / name).write_bytes(buffer.getvalue())
        (staging / "record.json").write_text(json_text(record))
        (staging / "timing.json").write_text(json_text(timing))
        seal = {"fingerprint": record["fingerprint"],
                "sha256": {name: sha256_file(staging / name) for name in FILES}}
        for name in FILES:
            fsync(staging / name)
        (staging / SEAL).write_text(json_text(seal))
        fsync(staging / SEAL)
        _put_in_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def copy_folder(source, target):
    """Copy a sealed folder atomically (byte for byte: reuse is retraining's exact result)."""
    target = Path(target)
    with no_space(target):
        _copy_folder(source, target)


def _copy_folder(source, target):
    staging = _stage_folder(target.parent, target.name)
    try:
        for name in (*FILES, SEAL):
            shutil.copyfile(Path(source) / name, staging / name)
            fsync(staging / name)
        _put_in_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class ModelCache:
    """Sealed folders by fingerprint: ``.model-cache/<fingerprint>/``, each checked to hold
    weights of the network (``hidden``) before it is reused."""

    def __init__(self, root=CACHE_DIR, hidden=None):
        self.root = Path(root)
        self.hidden = hidden

    def path(self, fingerprint) -> Path:
        return self.root / fingerprint

    def lookup(self, fingerprint):
        """((record, timing), None) if a sealed folder with this fingerprint is here; else
        (None, what is wrong: "missing", or how the folder is damaged)."""
        try:
            record, timing = read_sealed(self.path(fingerprint))
            if self.hidden is not None:
                check_weights(self.path(fingerprint), self.hidden)
        except Damaged as damage:
            return None, str(damage)
        if record["fingerprint"] != fingerprint:
            return None, "holds another fingerprint"
        return (record, timing), None

    def find(self, fingerprint):
        """(record, timing) if a sealed folder with this fingerprint is here, else None."""
        return self.lookup(fingerprint)[0]

    def keep(self, folder, fingerprint):
        """Copy a sealed folder in, unless the cache holds it already."""
        if self.find(fingerprint) is None:
            copy_folder(folder, self.path(fingerprint))


def model_folders(models_dir=MODELS_DIR):
    """Every ``<arm>/replicate_<r>`` folder below models/, sealed or not."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return []
    return sorted(p for arm in models_dir.iterdir() if arm.is_dir() and not arm.is_symlink()
                  for p in arm.iterdir() if p.name.startswith("replicate_"))


def trained_folders(models_dir=MODELS_DIR):
    """``model_folders`` for a stage that reads what training wrote: a SweepError when there
    is none."""
    found = model_folders(models_dir)
    if not found:
        raise SweepError(f"{models_dir}: no trained models; run `dvc repro train`")
    return found


def remove(path):
    """A folder with what is in it, or a file or symlink (never what a symlink points to)."""
    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def remove_all_but(keep_names, models_dir=MODELS_DIR):
    """Delete from models/ everything but the folders named in ``keep_names`` (as key.name)."""
    models_dir = Path(models_dir)
    keep_arms = {name.split("/")[0] for name in keep_names}
    for arm in models_dir.iterdir():
        if arm.name not in keep_arms or not arm.is_dir() or arm.is_symlink():
            remove(arm)
            continue
        for entry in arm.iterdir():
            if f"{arm.name}/{entry.name}" not in keep_names:
                remove(entry)

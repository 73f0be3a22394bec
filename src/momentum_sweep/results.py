"""Per-momentum results under models/, and the fingerprint rule that decides reuse.

A momentum's folder holds ``model.pt`` (a plain MLP state_dict), ``record.json`` (what produced
it, its per-epoch losses and accuracies, and the model file's hash), ``timing.json`` (seconds and
memory, which differ run to run, so they are kept out of the record) and ``fingerprint``: a hash
of everything that determines the result. The folder is built under a temporary name with the
fingerprint written last, then renamed into place, so a killed run never leaves a folder that
looks complete. A folder is reused only if it holds exactly these files, its fingerprint matches,
its model has the recorded hash and its timing covers the recorded epochs; else it is retrained.
"""

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from . import data, model, trainer
from .params import momentum_name

MODELS_DIR = Path("models")
FILES = ("model.pt", "record.json", "timing.json", "fingerprint")
# The code that determines a trained model: changing any of it retrains every momentum.
TRAINING_CODE = (model, trainer, data)


def folder(momentum, models_dir=MODELS_DIR) -> Path:
    return Path(models_dir) / f"momentum_{momentum_name(momentum)}"


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def code_hash() -> str:
    digest = hashlib.sha256()
    for module in TRAINING_CODE:
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


def fingerprint(momentum, params, data_hash, device_type) -> str:
    """Hash of what determines a momentum's result: data, parameters, momentum, code, device."""
    inputs = {
        "momentum": float(momentum),
        "model": params.model.model_dump(),
        "train": params.train.model_dump(exclude={"device"}),
        "device_type": device_type,
        "data": data_hash,
        "code": code_hash(),
        "torch": torch.__version__,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def load_reusable(momentum, expected_fingerprint, models_dir=MODELS_DIR):
    """The stored record if the folder is complete, untouched and has this fingerprint, else None."""
    path = folder(momentum, models_dir)
    try:
        if sorted(os.listdir(path)) != sorted(FILES):
            return None
        if (path / "fingerprint").read_text() != expected_fingerprint:
            return None
        record = json.loads((path / "record.json").read_text())
        if record.get("fingerprint") != expected_fingerprint:
            return None
        if record.get("model_sha256") != sha256_file(path / "model.pt"):
            return None
        timing = json.loads((path / "timing.json").read_text())
        if len(timing["epochs"]) != len(record["epochs"]):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record, timing


def save(momentum, state_dict, record, timing, models_dir=MODELS_DIR):
    """Write a momentum's folder atomically; ``record`` gains the hashes of the other files."""
    target = folder(momentum, models_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".incomplete-{target.name}-"))
    torch.save(state_dict, staging / "model.pt")
    (staging / "timing.json").write_text(json.dumps(timing, indent=1) + "\n")
    record = {**record, "model_sha256": sha256_file(staging / "model.pt")}
    (staging / "record.json").write_text(json.dumps(record, indent=1) + "\n")
    (staging / "fingerprint").write_text(record["fingerprint"])
    for name in FILES:
        with open(staging / name, "rb") as f:
            os.fsync(f.fileno())
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
    return record


def remove_all_but(momenta, models_dir=MODELS_DIR):
    """Delete folders of momenta no longer listed, and any half-built folder of a killed run."""
    keep = {folder(m, models_dir).name for m in momenta}
    models_dir = Path(models_dir)
    if not models_dir.exists():
        return
    for path in models_dir.iterdir():
        if path.name not in keep:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()

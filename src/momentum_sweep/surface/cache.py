"""Surface results, reused on the rule models are: a measurement is recomputed only when what
decides it changed.

A measurement's key is a hash of its kind, the weights it is taken at (a digest of their bytes,
so that the initial weights, which every arm of a replicate shares, are measured once), the
settings it uses, the probe, the code that computes it (``measures`` and what it imports), the
torch version and the device type. Its result is a small JSON file,
``.surface-cache/<key>.json``, written atomically: a file there is complete or absent. Adding
replicates or a momentum measures only the new weights.
"""

import hashlib
import json
from pathlib import Path

from ..atomic import write_json

CACHE_DIR = Path(".surface-cache")


def weights_digest(state) -> str:
    """SHA-256 of a state_dict's names, shapes and float32 bytes, in order."""
    digest = hashlib.sha256()
    for name, tensor in state.items():
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class SurfaceCache:
    def __init__(self, common: dict, root=CACHE_DIR):
        """``common``: what decides every measurement (probe, code, torch, device type)."""
        self.common = common
        self.root = Path(root)
        self.computed = self.reused = 0

    def key(self, kind, weights, settings) -> str:
        inputs = {"kind": kind, "weights": weights, "settings": settings, **self.common}
        return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()

    def get(self, kind, weights, settings, compute):
        """The cached result of ``compute()`` for these inputs; computed and kept if absent or
        unreadable."""
        path = self.root / f"{self.key(kind, weights, settings)}.json"
        try:
            result = json.loads(path.read_text())
            self.reused += 1
            return result
        except (OSError, ValueError):
            pass
        result = compute()
        self.root.mkdir(parents=True, exist_ok=True)
        write_json(path, result)
        self.computed += 1
        return result

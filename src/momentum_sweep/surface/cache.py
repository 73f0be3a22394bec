"""Surface results, reused on the rule models are: a measurement is recomputed only when what
decides it changed, and only a sealed, well-formed entry is trusted.

A measurement's key is a hash of what it measures (``curvature``, ``noise``, ``batch_sharpness``
or ``line``), the weights it is taken at (a digest of their bytes, so that the initial weights,
which every arm of a replicate shares, are measured once), the settings it uses, the probe, the
code that computes it (``measures`` and what it imports), the torch version and the device type.
Its entry, ``.surface-cache/<key>.json``, is written atomically and holds the key, the value and
a SHA-256 over both (the seal): an entry whose seal, key or shape does not match (a curvature or
noise scale is a dict of numbers, a batch sharpness a number, a line a list of
``surface.line_points`` numbers, a diverged model's any one None) is measured again, never
reported. Adding replicates or a momentum measures only the new weights.
"""

import hashlib
import json
from pathlib import Path

from ..atomic import write_json
from ..digest import of_json
from ..finite import is_number

CACHE_DIR = Path(".surface-cache")
CURVATURE_FIELDS = {"lambda_max": True, "lambda_min": True, "grad_norm": False, "loss": False,
                    "products": False, "converged": False}  # field: may it be None
NOISE_FIELDS = {"noise_scale": True, "gradient_variance_trace": False,
                "true_gradient_norm_sq": False}


def weights_digest(state) -> str:
    """SHA-256 of a state_dict's names, shapes and float32 bytes, in order."""
    digest = hashlib.sha256()
    for name, tensor in state.items():
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def seal(key, value) -> str:
    return of_json({"key": key, "value": value})


def well_formed(measurement, value, settings) -> bool:
    """Whether a cached value has the shape ``measurement`` gives (None: a diverged model's)."""
    if value is None:
        return True
    if measurement in ("curvature", "noise"):
        fields = CURVATURE_FIELDS if measurement == "curvature" else NOISE_FIELDS
        return isinstance(value, dict) and set(value) == set(fields) and \
            isinstance(value.get("converged", False), bool) and all(
                is_number(value[f]) or (value[f] is None and none)
                for f, none in fields.items() if f != "converged")
    if measurement == "batch_sharpness":
        return is_number(value)
    return isinstance(value, list) and len(value) == settings["points"] and \
        all(is_number(v) for v in value)


class SurfaceCache:
    def __init__(self, common: dict, root=CACHE_DIR):
        """``common``: what decides every measurement (probe, code, torch, device type)."""
        self.common = common
        self.root = Path(root)
        self.computed = self.reused = self.damaged = 0

    def key(self, measurement, weights, settings) -> str:
        return of_json({"measurement": measurement, "weights": weights, "settings": settings,
                        **self.common})

    def trusted(self, path, key, measurement, settings):
        """(True, the value) of a sealed, well-formed entry; (False, None) otherwise."""
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            return False, None
        if not (isinstance(entry, dict) and set(entry) == {"key", "value", "seal"}
                and entry["key"] == key and entry["seal"] == seal(key, entry["value"])
                and well_formed(measurement, entry["value"], settings)):
            self.damaged += 1
            return False, None
        return True, entry["value"]

    def get(self, measurement, weights, settings, compute):
        """The cached result of ``compute()`` for these inputs; computed and kept if absent,
        unreadable or not trusted."""
        key = self.key(measurement, weights, settings)
        path = self.root / f"{key}.json"
        found, value = self.trusted(path, key, measurement, settings)
        if found:
            self.reused += 1
            return value
        value = compute()
        self.root.mkdir(parents=True, exist_ok=True)
        write_json(path, {"key": key, "value": value, "seal": seal(key, value)})
        self.computed += 1
        return value

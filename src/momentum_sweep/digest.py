"""The one digest of a JSON-able value: SHA-256 of its JSON with sorted keys, so that equal
values give equal digests. A model's fingerprint and a surface measurement's cache key and seal
are this digest of what decides them."""

import hashlib
import json


def of_json(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()

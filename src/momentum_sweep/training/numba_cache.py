"""A numba cache keyed by the kernel file's content rather than its path.

Numba caches compiled code beside the source file, keyed by its path. DVC runs each queued
experiment in a fresh copy of the repository (and the tests use fresh clones), so every copy
would compile the kernels again, seconds each time. Keyed by content, one compilation serves every
copy of the same code, and a changed kernel file gets a cache of its own.
"""

import contextlib
import hashlib
import os
from pathlib import Path

import numba
from numba.core import caching

CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "momentum-sweep"


class ContentAddressedLocator(caching.InTreeCacheLocator):
    """Caches in ~/.cache/momentum-sweep/numba/<file stem>-<sha256 of module name and file>/.
    (The module name too: a cached function refers to its module by name.)"""

    def __init__(self, py_func, py_file):
        super().__init__(py_func, py_file)
        key = hashlib.sha256(py_func.__module__.encode() + b"\0" + Path(py_file).read_bytes())
        name = f"{Path(py_file).stem}-{key.hexdigest()[:20]}"
        self._cache_path = str(CACHE_ROOT / "numba" / name)


@contextlib.contextmanager
def content_addressed_cache():
    """Functions decorated with ``cache=True`` inside this block use ``ContentAddressedLocator``,
    falling back to numba's own locators when that folder cannot be written."""
    previous = numba.config.CACHE_LOCATOR_CLASSES
    numba.config.CACHE_LOCATOR_CLASSES = ",".join([
        f"{__name__}.ContentAddressedLocator", "InTreeCacheLocator", "UserWideCacheLocator"])
    try:
        yield
    finally:
        numba.config.CACHE_LOCATOR_CLASSES = previous

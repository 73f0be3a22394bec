"""Atomic file writes: a reader sees the old file or the complete new one, never a partial one.
A full disk is one line naming the file, not a traceback (``no_space``)."""

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path

from .errors import SweepError

FULL = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def no_space(path):
    """A write to ``path`` that meets a full disk (or quota) raises a SweepError that says so;
    what was finished before is untouched."""
    try:
        yield
    except OSError as error:
        if error.errno not in FULL:
            raise
        raise SweepError(f"{path}: cannot be written: no space left on its device "
                         f"({os.strerror(error.errno)}); everything finished before is kept "
                         f"and nothing half-written is trusted: free some space and run again"
                         ) from None


def umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync(path):
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto it."""
    path = Path(path)
    try:
        with no_space(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise SweepError(f"{path.parent}: cannot write there ({error.strerror}); it must be a "
                         f"writable folder") from None
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600; give the file the usual permissions
    try:
        with no_space(path):
            yield tmp
            fsync(tmp)
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path, data: bytes):
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path, text: str):
    write_bytes(path, text.encode())


def json_text(value) -> str:
    """Strict JSON: NaN or infinity is a bug in the caller, never written into a file."""
    return json.dumps(value, indent=1, allow_nan=False) + "\n"


def write_json(path, value):
    write_text(path, json_text(value))


def check_folder_path(path, what="a folder"):
    """A SweepError if ``path`` is a file or a symlink where ``what`` belongs: that is the user's,
    and this project neither follows nor deletes it."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        kind = "symlink" if path.is_symlink() else "file"
        raise SweepError(f"{path}: a {kind}, where {what} belongs; move it away (or delete it) "
                         f"and run again")


def check_writable_folder(path):
    """Raise a SweepError naming ``path`` unless files can be created in it (creating it if needed).
    Tried for real: permission bits do not tell for root, read-only mounts or full disks."""
    path = Path(path)
    check_folder_path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise SweepError(f"{path}: cannot write there ({error.strerror}); it must be a writable "
                         f"folder") from None

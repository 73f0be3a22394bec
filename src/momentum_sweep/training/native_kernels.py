"""The native step's kernels (``native_kernels.c``), compiled on first use and called by ctypes.

Compiled with the machine's C compiler (``$CC``, else ``cc``) for this machine's CPU
(``-march=native``: the kernels run 5x slower without its vector instructions) and with
``-ffp-contract=off``, so the arithmetic is plain IEEE float32 whatever the CPU. Compiled on first
use rather than at install because DVC runs each queued experiment in a fresh copy of the
repository, which must run the kernels of its own commit. The library is cached by content:
~/.cache/momentum-sweep/native/<hash of the source, the flags, the compiler and the CPU>/, so every
copy of the same code on the same machine shares one compilation (about two seconds), and a changed
source gets its own. ctypes releases the GIL during each call, so threads run kernels in parallel.
"""

import ctypes
import functools
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..errors import SweepError

SOURCE = Path(__file__).with_suffix(".c")
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fPIC", "-shared"]
CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "momentum-sweep"


def compiler() -> list[str]:
    command = shlex.split(os.environ.get("CC") or "cc")
    if not command or shutil.which(command[0]) is None:
        raise SweepError(
            f"the native CPU step compiles {SOURCE.name} with a C compiler, and none was found "
            f"(CC={os.environ.get('CC')!r}, else cc): install one (Debian/Ubuntu: apt install "
            "gcc; macOS: xcode-select --install) or name it in CC")
    return command


@functools.cache
def compiler_version() -> str:
    """The compiler's first line of --version: part of each native model's fingerprint."""
    run = subprocess.run([*compiler(), "--version"], capture_output=True, text=True)
    return run.stdout.splitlines()[0] if run.returncode == 0 and run.stdout else compiler()[0]


def _cpu() -> str:
    """What -march=native compiles for: the CPU's model and feature flags, where Linux says."""
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    return "\n".join(sorted({line for line in info if line.split(":")[0].strip() in
                             ("model name", "flags", "Features", "CPU part")}))


def library_path(source: Path = SOURCE) -> Path:
    key = hashlib.sha256("\0".join([source.read_text(), *FLAGS, compiler_version(), _cpu(),
                                    platform.machine()]).encode()).hexdigest()[:20]
    return CACHE_ROOT / "native" / key / f"{source.stem}.so"


def build(source: Path, target: Path) -> None:
    """Compile ``source`` to ``target``, atomically: an interrupted build leaves no library."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = Path(scratch) / target.name
        run = subprocess.run([*compiler(), *FLAGS, "-o", str(built), str(source), "-lm"],
                             capture_output=True, text=True)
        if run.returncode != 0:
            raise SweepError(f"compiling {source} failed ({shlex.join(run.args)}):\n"
                             f"{run.stderr.strip()}")
        os.replace(built, target)


def _array(dtype, ndim=None):
    return np.ctypeslib.ndpointer(dtype, ndim=ndim, flags=("C_CONTIGUOUS", "ALIGNED"))


F32, F64, I64, I32, U16, U8 = (_array(t) for t in (np.float32, np.float64, np.int64, np.int32,
                                                   np.uint16, np.uint8))
INT, FLOAT = ctypes.c_int64, ctypes.c_float
SIGNATURES = {  # name: (result, argument types), as in native_kernels.c
    "batch_structure": (INT, [I64, U16, U8, I64, INT, INT, INT, U16, I64, I32, U8, I32, U16,
                              U8]),
    "catch_up": (None, [F32, F32, I64, INT, INT, F32, F32, INT]),
    "train_steps": (INT, [F32, F32, F32, F32, F32, I64, I64, I64, INT, INT, FLOAT, FLOAT, F32,
                          F32, F32, I64, U16, U8, I64, INT, U16, I64, I32, U8, I32, U16, U8,
                          I64, INT, INT, INT, INT, F32, F64]),
    "evaluate": (None, [F32, F32, I64, I64, INT, INT, F32, I64, U16, U8, I64, INT, F32, F64]),
}


@functools.cache
def library() -> ctypes.CDLL:
    """The compiled kernels, built first if this source has not been built on this machine.
    Arguments are checked by ctypes: arrays must have the declared dtype and be contiguous."""
    path = library_path()
    if not path.exists():
        build(SOURCE, path)
    lib = ctypes.CDLL(str(path))
    for name, (result, arguments) in SIGNATURES.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = result, arguments
    return lib

"""The native step's kernels (``native_kernels.c``), compiled on first use and called by ctypes.

Compiled with the machine's C compiler (``$CC``, else ``cc``) for this machine's CPU
(``-march=native``: its vector instructions; see docs/performance.md) and with
``-ffp-contract=off``, so the arithmetic is plain IEEE float32 whatever the CPU: a build for a
CPU without AVX (``-march=x86-64-v2``) gives byte-identical models (a test builds both). Flags in
``CC`` that let the compiler change floating-point results (``-ffast-math`` and its parts) are
refused; any other flags are part of the compiler's identity.

Compiled on first use rather than at install because DVC runs each queued experiment in a fresh
copy of the repository, which must run the kernels of its own commit. The library is cached by
content, in ``$XDG_CACHE_HOME/momentum-sweep/native/<key>/`` (``~/.cache`` when unset), where the
key hashes the source, the flags, the compiler (what it is: a digest of its executable, and the
arguments given in ``CC``; not how it was named) and the CPU. So every copy of the same code on
the same machine shares one compilation (about two seconds), and a changed source gets its own.
Beside the library lies the SHA-256 it had when built; a library that no longer matches it
(truncated, overwritten) is rebuilt, never loaded. ctypes releases the GIL during each call, so
threads run kernels in parallel.

The kernels take a few named structures (``Net``, ``Model``, ``Images``, ``Batches``), mirrored
here as ``ctypes.Structure`` classes and filled by name from arrays whose dtypes are checked.
ctypes rather than cffi: the library is built by this module at run time, which cffi's API mode
(the mode that reads the C declarations itself) would replace with a build step of its own, and
ctypes is in the standard library. What cffi would check, a test checks instead: the C side
reports every structure's size and field offsets (``layout``), and they must equal these.
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
from ctypes import POINTER
from pathlib import Path

import numpy as np

from ..errors import SweepError
from .results import sha256_file

SOURCE = Path(__file__).with_suffix(".c")
TARGET = "native"  # -march: this machine's CPU
FLAGS = ["-O3", "-ffp-contract=off", "-fPIC", "-shared"]
# Flags that allow the compiler to reassociate, contract, approximate or assume away parts of
# IEEE arithmetic: results would then depend on the compiler's choices and the CPU.
UNSAFE_FLAGS = ("-Ofast", "-ffast-math", "-funsafe-math-optimizations", "-fassociative-math",
                "-freciprocal-math", "-ffinite-math-only", "-fno-signed-zeros",
                "-fcx-limited-range", "-ffp-contract=fast", "-ffp-contract=on",
                "-fexcess-precision=fast", "-mfpmath=387", "-mrecip")
CACHE_VARIABLE = "XDG_CACHE_HOME"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_VARIABLE) or Path.home() / ".cache") / "momentum-sweep"


def compiler() -> list[str]:
    """The compiler command, from ``CC`` (else ``cc``), with any flags given there."""
    command = shlex.split(os.environ.get("CC") or "cc")
    if not command or shutil.which(command[0]) is None:
        raise SweepError(
            f"the native CPU step compiles {SOURCE.name} with a C compiler, and none was found "
            f"(CC={os.environ.get('CC')!r}, else cc): install one (Debian/Ubuntu: apt install "
            "gcc; macOS: xcode-select --install) or name it in CC")
    unsafe = [flag for flag in command[1:] if flag.startswith(UNSAFE_FLAGS)]
    if unsafe:
        raise SweepError(
            f"CC={os.environ.get('CC')!r}: {' '.join(unsafe)} changes floating-point results, "
            f"and models must not depend on the compiler's choices; remove it from CC (flags "
            f"refused: {', '.join(UNSAFE_FLAGS)})")
    return command


def compiler_identity() -> dict:
    """What the compiler is, for each native model's fingerprint and the library's cache key: a
    digest of its executable (``cc`` and ``gcc`` are one compiler) and the arguments in ``CC``.
    Not its --version, which need not be stable."""
    command = compiler()
    return _identity(tuple(command), os.path.realpath(shutil.which(command[0])))


@functools.cache
def _identity(command, executable) -> dict:
    return {"executable_sha256": sha256_file(executable), "arguments": list(command[1:])}


def _cpu() -> str:
    """What -march=native compiles for: the CPU's model and feature flags, where Linux says."""
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    return "\n".join(sorted({line for line in info if line.split(":")[0].strip() in
                             ("model name", "flags", "Features", "CPU part")}))


def flags(target=TARGET) -> list[str]:
    return [f"-march={target}", *FLAGS]


def library_path(source: Path = SOURCE, target=TARGET) -> Path:
    identity = compiler_identity()
    key = hashlib.sha256("\0".join([
        source.read_text(), *flags(target), identity["executable_sha256"],
        *identity["arguments"], _cpu() if target == "native" else "", platform.machine(),
    ]).encode()).hexdigest()[:20]
    return cache_root() / "native" / key / f"{source.stem}.so"


def digest_path(library: Path) -> Path:
    return library.with_name(library.name + ".sha256")


def intact(library: Path) -> bool:
    """Whether ``library`` is exactly what was built: it matches the digest written beside it."""
    try:
        return digest_path(library).read_text().strip() == sha256_file(library)
    except OSError:
        return False


def build(source: Path, target: Path, march=TARGET) -> None:
    """Compile ``source`` to ``target`` and write its digest beside it, each atomically: an
    interrupted build leaves no library that would be loaded."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = tempfile.mkdtemp(dir=target.parent)
    except OSError as error:
        raise SweepError(
            f"{target.parent}: cannot write the compiled kernels there ({error.strerror}); "
            f"the cache folder is {cache_root()}, below ${CACHE_VARIABLE} (now "
            f"{os.environ.get(CACHE_VARIABLE)!r}; unset: ~/.cache): set {CACHE_VARIABLE} to a "
            f"writable folder") from None
    try:
        built = Path(scratch) / target.name
        run = subprocess.run([*compiler(), *flags(march), "-o", str(built), str(source), "-lm"],
                             capture_output=True, text=True)
        if run.returncode != 0:
            raise SweepError(f"compiling {source} failed ({shlex.join(run.args)}):\n"
                             f"{run.stderr.strip()}")
        digest = Path(scratch) / digest_path(target).name
        digest.write_text(sha256_file(built) + "\n")
        os.replace(built, target)
        os.replace(digest, digest_path(target))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class Arrays(ctypes.Structure):
    """A C structure of arrays and numbers, filled by name from numpy arrays whose dtype must be
    the field's: a swapped or mistyped argument is an error, not a wrong model. The structure
    keeps its arrays alive (``arrays``) as long as it lives."""

    @classmethod
    def of(cls, **values):
        names = [name for name, _ in cls._fields_]
        if sorted(values) != sorted(names):
            raise TypeError(f"{cls.__name__} takes {names}, got {sorted(values)}")
        struct = cls()
        struct.arrays = {}
        for name, kind in cls._fields_:
            value = values[name]
            if issubclass(kind, ctypes._Pointer):  # an array field
                if not (isinstance(value, np.ndarray) and value.flags.c_contiguous and
                        np.ctypeslib.as_ctypes_type(value.dtype) == kind._type_):
                    raise TypeError(f"{cls.__name__}.{name}: a contiguous array of "
                                    f"{kind._type_.__name__} is needed")
                struct.arrays[name] = value
                value = value.ctypes.data_as(kind)
            setattr(struct, name, value)
        return struct


I64, I32, U16, U8 = ctypes.c_int64, ctypes.c_int32, ctypes.c_uint16, ctypes.c_uint8
F32 = ctypes.c_float


class Net(Arrays):
    """The network's shape; ``batch``: the rows of each layer in a model's scratch ``hs``."""
    _fields_ = [("L", I64), ("sizes", POINTER(I64)), ("widths", POINTER(I64)), ("M", I64),
                ("batch", I64)]


class Model(Arrays):
    """One model (native_step.NativeModel): parameters, momentum tables, scratch."""
    _fields_ = [("w1", POINTER(F32)), ("v1", POINTER(F32)), ("W", POINTER(F32)),
                ("Wt", POINTER(F32)), ("V", POINTER(F32)), ("last", POINTER(I64)),
                ("decay", POINTER(F32)), ("drift", POINTER(F32)), ("hs", POINTER(F32)),
                ("lr", F32), ("mu", F32), ("nesterov", I64)]


class Images(Arrays):
    """Images compressed by row (native_step.sparse_images)."""
    _fields_ = [("indptr", POINTER(I64)), ("pixels", POINTER(U16)), ("values", POINTER(U8)),
                ("n", I64)]


class Batches(Arrays):
    """An epoch's batches of one replicate, pixel by pixel (native_step.batch_structure)."""
    _fields_ = [("order", POINTER(I64)), ("labels", POINTER(I64)), ("n", I64),
                ("batch_size", I64), ("act", POINTER(U16)), ("act_ptr", POINTER(I64)),
                ("ahead", POINTER(I32)), ("first", POINTER(U8)), ("ent_ptr", POINTER(I32)),
                ("ent_image", POINTER(U16)), ("ent_value", POINTER(U8)),
                ("sync", POINTER(I64)), ("n_sync", I64)]


STRUCTURES = [Net, Model, Images, Batches]  # in the order `layout` reports them


def _array(dtype):
    return np.ctypeslib.ndpointer(dtype, flags=("C_CONTIGUOUS", "ALIGNED"))


SIGNATURES = {  # name: (result, argument types), as in native_kernels.c
    "layout": (I64, [_array(np.int64)]),
    "batch_structure": (I64, [POINTER(Images), POINTER(Batches), I64]),
    "catch_up": (None, [POINTER(Model), I64, I64, I64]),
    "train_steps": (I64, [POINTER(Net), POINTER(Model), _array(np.float32), POINTER(Images),
                          POINTER(Batches), I64, I64, I64, _array(np.float64),
                          _array(np.float64)]),
    "evaluate": (None, [POINTER(Net), POINTER(Model), _array(np.float32), POINTER(Images),
                        _array(np.int64), _array(np.float64)]),
}


@functools.cache
def library(target=TARGET) -> ctypes.CDLL:
    """The compiled kernels for ``target`` (a -march value), built first if this source has not
    been built on this machine, or rebuilt if its library was damaged. Arguments are checked by
    ctypes: arrays must have the declared dtype and be contiguous."""
    path = library_path(target=target)
    if not intact(path):
        if path.exists():
            print(f"native step: {path} does not match its digest (damaged); rebuilding it",
                  flush=True)
        build(SOURCE, path, target)
    lib = ctypes.CDLL(str(path))
    for name, (result, arguments) in SIGNATURES.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = result, arguments
    return lib

"""The compiled-kernel cache cannot lie: its key is what decides the library (the source, the
flags, what the compiler is), a damaged library is rebuilt rather than loaded, and a cache folder
that cannot be used is a one-line error; and the Python mirror of the kernels' structures has
their C layout."""

import ctypes
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from momentum_sweep.errors import SweepError
from momentum_sweep.training import native_kernels, reuse

from clones import environment


@pytest.fixture
def compilers(tmp_path):
    """Two names of the one compiler cc names, and a wrapper around it whose --version changes on
    every call."""
    cc = os.path.realpath(shutil.which("cc"))
    names = tmp_path / "bin"
    names.mkdir()
    (names / "my-cc").symlink_to(cc)
    varying = names / "varying-cc"
    varying.write_text(f'#!/bin/sh\n[ "$1" = --version ] && {{ echo "cc $$ $(date +%N)"; exit; }}\n'
                       f'exec {cc} "$@"\n')
    varying.chmod(0o755)
    return str(names / "my-cc"), str(varying)


def key(monkeypatch, cc):
    """The library path and the fingerprint's compiler entry under CC=cc, computed afresh."""
    monkeypatch.setenv("CC", cc)
    native_kernels._identity.cache_clear()
    return native_kernels.library_path(), reuse.library_versions("native")["compiler"]


def test_the_compiler_is_keyed_by_what_it_is_not_by_its_name_or_version(monkeypatch, compilers):
    same, varying = compilers
    assert key(monkeypatch, "cc") == key(monkeypatch, "gcc") == key(monkeypatch, same)
    assert key(monkeypatch, varying) == key(monkeypatch, varying)  # --version is not asked
    assert key(monkeypatch, varying) != key(monkeypatch, "cc")


def test_flags_in_cc_are_in_the_cache_key_and_the_fingerprint(monkeypatch):
    plain_path, plain_compiler = key(monkeypatch, "gcc")
    flagged_path, flagged_compiler = key(monkeypatch, "gcc -O2")
    assert flagged_path != plain_path and flagged_compiler != plain_compiler
    assert flagged_compiler["arguments"] == ["-O2"]


@pytest.mark.parametrize("flag", ["-ffast-math", "-Ofast", "-funsafe-math-optimizations",
                                  "-ffp-contract=fast"])
def test_flags_that_change_floating_point_results_are_refused(monkeypatch, flag):
    monkeypatch.setenv("CC", f"gcc {flag}")
    with pytest.raises(SweepError, match=rf"CC='gcc {flag}': {flag} changes floating-point"):
        native_kernels.compiler()


def load_in_a_new_process(cache):
    """Load the kernels as a stage would, in a fresh process (a process cannot load a second
    library under a path it has loaded once)."""
    code = "from momentum_sweep.training import native_kernels as n; n.library(); print('loaded')"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**environment(), "XDG_CACHE_HOME": str(cache)}, timeout=120)


def test_a_damaged_library_is_rebuilt_not_loaded(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    library = native_kernels.library_path()
    native_kernels.build(native_kernels.SOURCE, library)
    good = library.read_bytes()
    assert native_kernels.intact(library)
    for damage in (os.urandom(len(good)), b""):  # overwritten, emptied
        library.write_bytes(damage)
        assert not native_kernels.intact(library)
    library.write_bytes(good[:len(good) // 2])  # truncated: loading it would die of SIGBUS
    result = load_in_a_new_process(cache)
    assert result.returncode == 0 and "does not match its digest (damaged); rebuilding" in \
        result.stdout and result.stdout.endswith("loaded\n"), result.stdout + result.stderr
    assert library.read_bytes() == good


def test_a_cache_folder_that_cannot_be_written_is_a_one_line_error(tmp_path, monkeypatch):
    not_a_folder = tmp_path / "cache-file"
    not_a_folder.write_text("a file where the cache folder belongs")
    monkeypatch.setenv("XDG_CACHE_HOME", str(not_a_folder))
    native_kernels.library.cache_clear()
    try:
        with pytest.raises(SweepError) as error:
            native_kernels.library()
    finally:
        native_kernels.library.cache_clear()
    message = str(error.value)
    assert "\n" not in message and str(not_a_folder) in message
    assert "set XDG_CACHE_HOME to a writable folder" in message


def test_compiled_kernels_are_cached_by_content_not_by_path(tmp_path):
    """Every copy of the repository (a queued experiment, a clone) reuses one compilation; a
    changed source gets its own."""
    copies = [tmp_path / "a" / "native_kernels.c", tmp_path / "b" / "native_kernels.c"]
    for copy in copies:
        copy.parent.mkdir()
        copy.write_text(native_kernels.SOURCE.read_text())
    assert (native_kernels.library_path(copies[0]) == native_kernels.library_path(copies[1])
            == native_kernels.library_path())
    copies[1].write_text(copies[1].read_text() + "/* a change */\n")
    assert native_kernels.library_path(copies[1]) != native_kernels.library_path(copies[0])


def test_a_missing_compiler_or_a_compile_error_is_a_clear_error(tmp_path, monkeypatch):
    broken = tmp_path / "broken.c"
    broken.write_text("int f(void) { return undeclared; }\n")
    with pytest.raises(SweepError, match=r"(?s)compiling .*broken.c failed .*error: .*undeclared"):
        native_kernels.build(broken, tmp_path / "out" / "broken.so")
    assert not (tmp_path / "out" / "broken.so").exists()
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(SweepError, match=r"C compiler, and none was found \(CC='.*no-such-cc'"):
        native_kernels.compiler()


def test_the_python_structures_have_the_c_layout():
    """Sizes and field offsets as the compiled C reports them (`layout` in native_kernels.c)."""
    reported = np.zeros(64, np.int64)
    count = native_kernels.library().layout(reported)
    mirrored = [value for struct in native_kernels.STRUCTURES
                for value in (ctypes.sizeof(struct),
                              *(getattr(struct, name).offset for name, _ in struct._fields_))]
    assert reported[:count].tolist() == mirrored


def test_a_structure_refuses_a_missing_field_or_an_array_of_another_type():
    arrays = {"indptr": np.zeros(3, np.int64), "pixels": np.zeros(4, np.uint16),
              "values": np.zeros(4, np.uint8), "n": 2}
    assert native_kernels.Images.of(**arrays).n == 2
    with pytest.raises(TypeError, match="Images takes"):
        native_kernels.Images.of(**{**arrays, "count": 2})
    with pytest.raises(TypeError, match="Images.pixels: a contiguous array of c_ushort"):
        native_kernels.Images.of(**{**arrays, "pixels": np.zeros(4, np.uint8)})

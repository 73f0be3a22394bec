"""Which source files a module runs: the package modules it imports, found in their code, and
the C source that a module compiles (beside it, with its name).

Used for two things that must not drift from the code: the code part of a model's fingerprint
(every file on the training path) and the check that each stage's `dvc.yaml` deps list every file
the stage imports. Imports are read from the syntax tree, so an import inside a function counts
too; modules outside this package (torch, numpy...) are not followed.
"""

import ast
import hashlib
from pathlib import Path

from .stage import STAGES

PACKAGE = __name__.split(".")[0]
PACKAGE_DIR = Path(__file__).resolve().parent
SRC_DIR = PACKAGE_DIR.parent
RUNNER = SRC_DIR / "run_stage.py"  # every stage's command runs it


def module_file(name: str):
    """The file of package module ``name``, or None if ``name`` is not a package module."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(name: str, path: Path):
    """Names of the package modules that module ``name`` (at ``path``) imports directly."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module
            found.add(base)
            # `from pkg import mod` imports a module; `from mod import name` a name in it.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in found if module_file(n) is not None}


def _with_parents(name: str):
    """A module and the packages above it, whose __init__.py runs first."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def closure(name: str) -> set[str]:
    """``name`` and every package module it imports, directly or not, with their packages."""
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        for module in _with_parents(current) - seen:
            seen.add(module)
            todo.extend(_imports(module, module_file(module)))
    return seen


def files(name: str) -> list[Path]:
    """The source files of ``closure(name)``, sorted: each module's file and, where there is
    one beside it, the C source it compiles (same name, ``.c``: ``native_kernels``)."""
    modules = [module_file(m) for m in closure(name)]
    compiled = [p.with_suffix(".c") for p in modules if p.with_suffix(".c").is_file()]
    return sorted({*modules, *compiled})


def stage_files(stage: str) -> list[Path]:
    """Every source file stage ``stage`` runs: the runner, the shared entry point, its module."""
    return sorted({RUNNER, *files("momentum_sweep.stage"), *files(STAGES[stage])})


def digest(paths, src_dir=SRC_DIR) -> str:
    """SHA-256 over the files' names (relative to ``src_dir``) and contents, in sorted order."""
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(Path(path).resolve().relative_to(src_dir).as_posix().encode() + b"\0")
        h.update(Path(path).read_bytes())
    return h.hexdigest()

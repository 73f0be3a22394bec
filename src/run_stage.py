"""Run one pipeline stage with the package in this tree: `python src/run_stage.py <stage>`.

DVC runs a queued experiment in a copy of the repository. Started as a script, this file puts
that copy's src/ first on sys.path, so the stage runs the code the experiment records rather than
the package that `pip install -e .` points at the workspace.
"""

import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent
sys.path.insert(0, str(SRC))

import momentum_sweep  # noqa: E402  (first: sets MKL's reproducibility mode)
from momentum_sweep.stage import main  # noqa: E402

if SRC not in Path(momentum_sweep.__file__).resolve().parents:
    sys.exit(f"error: momentum_sweep was imported from {momentum_sweep.__file__}, not {SRC}")
sys.exit(main(sys.argv[1:]))

"""The entry point every pipeline stage shares: `python src/run_stage.py <stage>`.

Before a stage does any work, all of params.yaml is validated, whether or not the stage uses
it: DVC reruns a stage only when its declared inputs change, so this is how a bad key stops
whichever stage DVC runs first. A user error or Ctrl-C prints one line, not a traceback.
"""

import importlib
import sys

from . import params
from .atomic import FULL
from .errors import SweepError

# Stage name (as in dvc.yaml) -> the module whose ``run(params)`` carries it out.
STAGES = {
    "params": "momentum_sweep.preflight",
    "download": "momentum_sweep.data.download",
    "flatten": "momentum_sweep.data.flatten",
    "train": "momentum_sweep.training.train",
    "summarize": "momentum_sweep.analysis.summarize",
    "surface": "momentum_sweep.surface.stage",
    "landscape": "momentum_sweep.landscape",
}


def main(argv):
    if len(argv) != 1 or argv[0] not in STAGES:
        print(f"usage: python src/run_stage.py {{{','.join(STAGES)}}}", file=sys.stderr)
        return 2
    try:
        p = params.load()
        importlib.import_module(STAGES[argv[0]]).run(p)
    except SweepError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    except OSError as error:
        if error.errno not in FULL:
            raise
        print(f"error: {error.filename or 'a file'}: no space left on its device; everything "
              f"finished is kept: free some space and run again", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished results are kept; run `dvc repro` again to continue.",
              file=sys.stderr, flush=True)
        return 130
    return 0

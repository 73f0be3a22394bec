"""One exception type for every failure a user can act on, and the stage entry-point wrapper."""

import functools
import sys


class SweepError(Exception):
    """A failure with a message meant for the user: it names the file or key and what is wrong."""


def stage_main(run):
    """Wrap a stage's ``main``: user errors and Ctrl-C print one short line instead of a traceback."""

    @functools.wraps(run)
    def main(*args, **kwargs):
        try:
            return run(*args, **kwargs)
        except SweepError as error:
            print(f"error: {error}", file=sys.stderr, flush=True)
            raise SystemExit(1) from None
        except KeyboardInterrupt:
            print("interrupted: finished results are kept; run `dvc repro` again to continue.",
                  file=sys.stderr, flush=True)
            raise SystemExit(130) from None

    return main

"""Progress of the train stage: a bar on the terminal, and a live log for DVC's tools.

The live log is written with DVCLive after every evaluation of every pass (each epoch's end;
with train.target, each step of its schedule), so that `dvc plots show`, `dvc exp show` and the
VS Code extension show the figures so far while a long stage runs in the workspace (checked:
neither command waits for the running stage). A queued experiment runs in a copy of the
repository; `dvc queue logs -f <task>` follows its evaluations.

results/live/metrics.json holds the epoch and the mean validation accuracy of the models
evaluated last; results/live/plots/ its history and each arm's mean curve (with the columns
plots/templates/momentum.json draws by: the arm's kind, its step and the target). Reused models
appear with their recorded figures, so the log covers every listed model. It is progress only: nothing
reads it back, so an interrupted run's partial log is never trusted.
"""

import sys
from pathlib import Path

from ..finite import mean
from ..vocabulary.arms import arm_columns

LIVE_DIR = Path("results/live")


class Progress:
    """A progress bar of a pass's model-images on a terminal; plain lines, fit for a CI log,
    always."""

    def __init__(self, total, steps):
        self.steps = steps
        self.done = 0  # model-images of the segments finished
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="img", unit_scale=True, leave=False,
                            mininterval=0.5)

    def __call__(self, step, done):
        """Within the segment that ends at ``step``: ``done`` model-images so far."""
        if self.bar is None:
            return
        self.bar.set_description(f"to step {step}/{self.steps}", refresh=False)
        self.bar.update(self.done + done - self.bar.n)

    def advance(self, step, images):
        """The segment that ends at ``step`` is finished: ``images`` model-images."""
        self.done += images
        self(step, 0)

    def line(self, text):
        if self.bar is None:
            print(text, flush=True)
        else:
            self.bar.write(text)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class LiveLog:
    def __init__(self, target=None, live_dir=LIVE_DIR):
        from dvclive import Live

        self.live = Live(dir=str(live_dir), resume=False, report=None, save_dvc_exp=False,
                         dvcyaml=None)
        self.target = target  # train.target: the template draws against steps where it is set
        self.rows = {}  # {(epoch, arm): {replicate: its row}}

    def add(self, rows):
        """rows: [(ModelKey, a row of its record's evaluations)], of models evaluated just now
        (or reused: their recorded rows); a row for the same point replaces the earlier one."""
        if not rows:
            return
        for key, row in rows:
            self.rows.setdefault((row["epoch"], key.arm), {})[key.replicate] = row
        points = [{"epoch": epoch, "step": next(iter(found.values()))["step"],
                   **arm_columns(arm, ("arm", "kind", "momentum", "lr", "batch_size")),
                   "control": int(arm.control), "target": self.target,
                   "val_accuracy": mean(r["val_accuracy"] for r in found.values()),
                   "train_loss": mean(r["train_loss"] for r in found.values())}
                  for (epoch, arm), found in sorted(self.rows.items(),
                                                    key=lambda item: item[0][0])]
        latest = max(row["epoch"] for _, row in rows)
        value = mean(row["val_accuracy"] for _, row in rows if row["epoch"] == latest)
        if value is not None:  # every model diverged: nothing to show, and no NaN in JSON
            self.live.log_metric("val_accuracy", value)
        self.live.log_metric("epoch", latest, plot=False)
        self.live.log_plot("arms", points, x="epoch", y="val_accuracy")
        self.live.next_step()

    def end(self):
        self.live.end()

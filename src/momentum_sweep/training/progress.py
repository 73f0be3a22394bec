"""Progress of the train stage: a bar on the terminal, and a live log for DVC's tools.

The live log is written with DVCLive after every epoch of every pass, so that `dvc plots show`,
`dvc exp show` and the VS Code extension show the figures so far while a long stage runs in the
workspace (checked: neither command waits for the running stage). A queued experiment runs in a
copy of the repository; `dvc queue logs -f <task>` follows its epochs.

metrics/live/metrics.json holds the epoch and the mean validation accuracy and training loss over
every model; metrics/live/plots/ their history and each arm's mean curve. Reused models appear
with their recorded figures, so the log always covers every listed model. It is progress only:
nothing reads it back, so an interrupted run's partial log is never trusted.
"""

import sys
from pathlib import Path

from ..finite import mean
from .arms import by_arm

LIVE_DIR = Path("metrics/live")


class Progress:
    """A progress bar within each epoch on a terminal; plain lines, fit for a CI log, always."""

    def __init__(self, total, epochs):
        self.epochs = epochs
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="img", unit_scale=True, leave=False,
                            mininterval=0.5)

    def __call__(self, epoch, done):
        if self.bar is None:
            return
        if done < self.bar.n:
            self.bar.reset()
        self.bar.set_description(f"epoch {epoch}/{self.epochs}", refresh=False)
        self.bar.update(done - self.bar.n)

    def line(self, text):
        if self.bar is None:
            print(text, flush=True)
        else:
            self.bar.write(text)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class LiveLog:
    def __init__(self, live_dir=LIVE_DIR):
        from dvclive import Live

        self.live = Live(dir=str(live_dir), resume=False, report=None, save_dvc_exp=False,
                         dvcyaml=None)
        self.points = {}  # {(epoch, arm): its point}

    def epoch(self, epoch, figures):
        """figures: {ModelKey: {"val_accuracy": ..., "train_loss": ...}} for this epoch, of every
        model done or in training; a later pass's call for the same epoch replaces its points."""
        for arm, rows in by_arm(figures.keys(), figures.values()).items():
            self.points[(epoch, arm)] = {
                "epoch": epoch, "arm": arm.name, "momentum": arm.momentum, "lr": arm.lr,
                "control": int(arm.control),
                "val_accuracy": mean(r["val_accuracy"] for r in rows),
                "train_loss": mean(r["train_loss"] for r in rows)}
        for name in ("val_accuracy", "train_loss"):
            value = mean(v[name] for v in figures.values())
            if value is not None:  # every model diverged: nothing to show, and no NaN in JSON
                self.live.log_metric(name, value)
        self.live.log_metric("epoch", epoch, plot=False)
        self.live.log_plot("arms", list(self.points.values()), x="epoch", y="val_accuracy")
        self.live.next_step()

    def end(self):
        self.live.end()


def recorded(record, epoch):
    """A reused model's figures at ``epoch`` (None past the epoch in which it diverged)."""
    rows = [e for e in record["epochs"] if e["epoch"] == epoch]
    return rows[0] if rows else {"val_accuracy": None, "train_loss": None}

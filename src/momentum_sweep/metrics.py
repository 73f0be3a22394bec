"""The metrics files: metrics/epochs.tsv (DVC plots) and metrics/summary.json (DVC metrics).

epochs.tsv is long format, one row per (momentum, epoch). A momentum that diverged has rows up to
the epoch in which its loss stopped being finite; that row has ``diverged`` = 1 and empty losses.
"""

import io
import json
import math
from pathlib import Path

import pandas as pd

from .atomic import write_text
from .params import momentum_name

METRICS_DIR = Path("metrics")
EPOCHS_FILE = METRICS_DIR / "epochs.tsv"
SUMMARY_FILE = METRICS_DIR / "summary.json"

QUALITY = ["train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy"]
COST = ["epoch_seconds", "samples_per_second", "models_in_pass", "cpu_peak_rss_mib",
        "cuda_peak_allocated_mib", "cuda_peak_reserved_mib"]
COLUMNS = ["momentum", "epoch", *QUALITY, "diverged", *COST]
SELECTION = "max final val_accuracy; not diverged; ties: smaller momentum"


def finite_or_none(value):
    return value if value is not None and math.isfinite(value) else None


def epochs_table(results) -> pd.DataFrame:
    """One row per (momentum, epoch) from ``{momentum: (record, timing)}``."""
    rows = []
    for momentum, (record, timing) in results.items():
        for quality, cost in zip(record["epochs"], timing["epochs"]):
            rows.append({"momentum": momentum_name(momentum), **quality, **cost,
                         "models_in_pass": timing["models_in_pass"],
                         "diverged": int(record["diverged_epoch"] == quality["epoch"])})
    return pd.DataFrame(rows, columns=COLUMNS)


def summary(results) -> dict:
    momenta = {}
    for momentum, (record, timing) in results.items():
        last = record["epochs"][-1]
        momenta[repr(momentum)] = {
            **{key: last[key] for key in QUALITY},
            "epochs": last["epoch"],
            "diverged": record["diverged_epoch"] is not None,
            "diverged_epoch": record["diverged_epoch"],
            "mean_epoch_seconds": sum(e["epoch_seconds"] for e in timing["epochs"])
            / len(timing["epochs"]),
        }
    candidates = [(-v["val_accuracy"], float(m)) for m, v in momenta.items() if not v["diverged"]]
    best = None
    if candidates:
        momentum = repr(min(candidates)[1])
        best = {"momentum": float(momentum), "val_accuracy": momenta[momentum]["val_accuracy"],
                "test_accuracy": momenta[momentum]["test_accuracy"]}
    return {"best": best, "selection": SELECTION, "momenta": momenta}


def write(results, epochs_file=EPOCHS_FILE, summary_file=SUMMARY_FILE):
    buffer = io.StringIO()
    epochs_table(results).to_csv(buffer, sep="\t", index=False, float_format="%.6g")
    write_text(epochs_file, buffer.getvalue())
    write_text(summary_file, json.dumps(summary(results), indent=2) + "\n")


def read_epochs(epochs_file=EPOCHS_FILE) -> pd.DataFrame:
    return pd.read_csv(epochs_file, sep="\t")

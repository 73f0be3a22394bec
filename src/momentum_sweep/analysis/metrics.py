"""metrics/epochs.tsv: one row per (arm, replicate, epoch), in long format for DVC's plots.

Columns: ``arm`` (its folder name: momentum_0.4_lr_0.1, control_0.4_lr_0.1), ``momentum`` and
``lr`` (the listed pair the arm is about), ``control`` (1 for plain SGD at lr/(1 - momentum)),
``effective_lr`` (lr/(1 - momentum), the same for an arm and its control), ``replicate``,
``fold`` (the validation fold it held out), ``epoch``, the losses and accuracies (fractions),
``diverged`` (1 in the epoch in which a model's loss stopped being finite; its figures are then
empty), and the cost of the pass that trained the model (seconds, samples per second, models in
the pass, peak memory).
"""

import io
from pathlib import Path

import pandas as pd

from ..atomic import write_text
from ..errors import SweepError
from ..training import results
from ..training.arms import Arm, in_order

METRICS_DIR = Path("metrics")
EPOCHS_FILE = METRICS_DIR / "epochs.tsv"
SUMMARY_FILE = METRICS_DIR / "summary.json"

IDENTITY = ["arm", "momentum", "control", "lr", "effective_lr", "replicate", "fold"]
QUALITY = results.QUALITY
COST = ["epoch_seconds", "samples_per_second", "models_in_pass", "cpu_peak_rss_mib",
        "cuda_peak_allocated_mib", "cuda_peak_reserved_mib"]
COLUMNS = [*IDENTITY, "epoch", *QUALITY, "diverged", *COST]


def read_models(models_dir=results.MODELS_DIR) -> pd.DataFrame:
    """The epochs table of every model folder below models/, each checked against its seal."""
    rows = []
    for folder in results.model_folders(models_dir):
        record, timing = results.read_trained(folder)
        inputs = record["inputs"]
        arm = Arm(**inputs["arm"])
        for quality, cost in zip(record["epochs"], timing["epochs"]):
            rows.append({"arm": arm.name, "momentum": arm.momentum, "control": int(arm.control),
                         "lr": arm.lr, "effective_lr": arm.effective_lr,
                         "replicate": inputs["replicate"], "fold": inputs["fold"],
                         **quality, **cost,
                         "models_in_pass": timing["models_in_pass"],
                         "diverged": int(record["diverged_epoch"] == quality["epoch"])})
    if not rows:
        raise SweepError(f"{models_dir}: no trained models; run `dvc repro train`")
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.sort_values(["control", "lr", "momentum", "replicate", "epoch"],
                             kind="stable", ignore_index=True)


def write_tsv(table, path):
    buffer = io.StringIO()
    table.to_csv(buffer, sep="\t", index=False, float_format="%.6g")
    write_text(path, buffer.getvalue())


def read_epochs(path=EPOCHS_FILE) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep="\t")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise SweepError(f"{path}: cannot read it ({error}); run `dvc repro summarize`") from None


def arms_of(table) -> list[Arm]:
    """The arms in a table, in order (``in_order``)."""
    unique = table[["momentum", "lr", "control"]].drop_duplicates()
    found = [Arm(float(r.momentum), float(r.lr), bool(r.control)) for r in unique.itertuples()]
    return sorted(found, key=in_order)


def final_rows(table) -> pd.DataFrame:
    """One row per model: its last epoch (quality empty if it diverged)."""
    # Not groupby().last(): that skips empty values, and a diverged model's last row is empty.
    ordered = table.sort_values(["arm", "replicate", "epoch"], kind="stable")
    return ordered.drop_duplicates(["arm", "replicate"], keep="last")

"""results/epochs.tsv: one row per (arm, replicate, evaluation), in long format for DVC's plots
and every reader. An evaluation is each epoch's end, or, with ``train.target``, each step of the
evaluation schedule (and the step where a model stops).

Columns: ``arm`` (its folder name: momentum_0.4_lr_0.1_batch_20, control_0.4_lr_0.1_batch_20,
nesterov_0.9_step_0.1_batch_1024; ``Arm.from_name`` reads it back), then, for DVC's templates and
for grouping, ``kind`` (momentum, nesterov or control), ``momentum``, ``lr`` (as listed: the step
lr/(1 - momentum) for an arm named with ``step``), ``batch_size``, ``control``, ``effective_lr``
(lr/(1 - momentum), the same for an arm and its control); ``replicate``, ``fold`` (the validation
fold it held out), ``budget_steps`` (the steps of its budget) and ``target`` (train.target, empty
without one); ``step``, ``epoch`` (steps over steps per epoch) and ``examples`` (training
images seen) at the evaluation; the losses and accuracies (fractions; training figures are the
means over the batches since the previous evaluation; with a target, test figures only where a
model stops); ``diverged`` (1 where a model's figures stopped being finite; its figures are then
empty); ``stopped`` (on a model's last row: target, diverged or budget); and the cost of the pass
that trained the model since the previous evaluation (seconds training and evaluating, samples
per second, which pass and how many models it held, peak memory).
"""

import io

import pandas as pd

from ..atomic import write_text
from ..errors import SweepError
from ..training import results
from ..training.arms import Arm, in_order
from .files import EPOCHS_FILE

IDENTITY = ["arm", "kind", "momentum", "lr", "batch_size", "control", "effective_lr",
            "replicate", "fold", "budget_steps", "target"]
POSITION = ["step", "epoch", "examples"]
QUALITY = results.QUALITY
COST = ["train_seconds", "evaluation_seconds", "samples_per_second", "pass", "models_in_pass",
        "cpu_peak_rss_mib", "cuda_peak_allocated_mib", "cuda_peak_reserved_mib"]
COLUMNS = [*IDENTITY, *POSITION, *QUALITY, "diverged", "stopped", *COST]


def identity(arm, replicate, fold, budget) -> dict:
    """The identity columns of a model of ``arm`` (``budget``: its record's)."""
    return {"arm": arm.name, "kind": arm.kind, "momentum": arm.momentum, "lr": arm.lr,
            "batch_size": arm.batch_size, "control": int(arm.control),
            "effective_lr": arm.effective_lr, "replicate": replicate, "fold": fold,
            "budget_steps": budget["steps"], "target": budget["target"]}


def model_rows(key, record, timing) -> list[dict]:
    """A model's rows: one per evaluation of its record."""
    rows = []
    last = len(record["evaluations"]) - 1
    for i, (quality, cost) in enumerate(zip(record["evaluations"], timing["evaluations"])):
        inputs = record["inputs"]
        rows.append({**identity(key.arm, key.replicate, inputs["fold"], inputs["budget"]),
                     **{c: quality[c] for c in (*POSITION, *QUALITY)},
                     "diverged": int(quality["diverged"]),
                     "stopped": record["stopped"]["reason"] if i == last else None,
                     **{c: cost.get(c) for c in COST},
                     "pass": timing["pass"], "models_in_pass": timing["models_in_pass"]})
    return rows


def read_models(models_dir=results.MODELS_DIR) -> pd.DataFrame:
    """The epochs table of every model folder below models/, each checked against its seal and
    its path."""
    rows = []
    for folder in results.model_folders(models_dir):
        rows += model_rows(*results.read_trained(folder))
    if not rows:
        raise SweepError(f"{models_dir}: no trained models; run `dvc repro train`")
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["order"] = [in_order(Arm.from_name(name)) for name in table["arm"]]
    table = table.sort_values(["order", "replicate", "step"], kind="stable", ignore_index=True)
    return table.drop(columns="order")


def write_tsv(table, path=EPOCHS_FILE):
    buffer = io.StringIO()
    table.to_csv(buffer, sep="\t", index=False, float_format="%.6g")
    write_text(path, buffer.getvalue())


def parse(text, source) -> pd.DataFrame:
    """An epochs table from its text; a SweepError naming ``source`` when it is not one."""
    try:
        table = pd.read_csv(io.StringIO(text), sep="\t")
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise SweepError(f"{source}: not an epochs table ({error})") from None
    missing = [c for c in IDENTITY + POSITION + QUALITY if c not in table]
    if missing:
        raise SweepError(f"{source}: lacks column(s) {missing}: written by other code; rerun "
                         f"`dvc repro summarize` there")
    return table


def read_tsv(path=EPOCHS_FILE) -> pd.DataFrame:
    try:
        text = path.read_text()
    except OSError as error:
        raise SweepError(f"{path}: cannot read it ({error.strerror}); run `dvc repro "
                         f"summarize`") from None
    return parse(text, path)


def arms_of(table) -> list[Arm]:
    """The arms in a table, in order (``in_order``)."""
    return sorted({Arm.from_name(name) for name in table["arm"].unique()}, key=in_order)


def final_rows(table) -> pd.DataFrame:
    """One row per model: its last evaluation (quality empty if it diverged)."""
    # Not groupby().last(): that skips empty values, and a diverged model's last row is empty.
    ordered = table.sort_values(["arm", "replicate", "step"], kind="stable")
    return ordered.drop_duplicates(["arm", "replicate"], keep="last")

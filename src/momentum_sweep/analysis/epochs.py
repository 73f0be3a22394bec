"""results/epochs.tsv (its columns: ``vocabulary.schema``): written from the models' records,
read back by the readers of a run or of several (compare)."""

import io

import pandas as pd

from ..atomic import write_text
from ..errors import SweepError
from ..training import results
from ..vocabulary.arms import Arm, in_order
from ..vocabulary.files import EPOCHS_FILE
from ..vocabulary.schema import COLUMNS, COST, IDENTITY, POSITION, QUALITY, identity


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


def table_of_models(models_dir=results.MODELS_DIR) -> pd.DataFrame:
    """The epochs table of every model folder below models/, each checked against its seal and
    its path."""
    rows = []
    for folder in results.trained_folders(models_dir):
        rows += model_rows(*results.read_trained(folder))
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

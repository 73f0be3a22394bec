"""The epochs table's schema (results/epochs.tsv; what summarize, surface's readers, compare
and DVC's plots read): one row per (arm, replicate, evaluation), in long format. An evaluation is
each epoch's end, or, with ``train.target``, each step of the evaluation schedule (and the step
where a model stops).

Columns: ``arm`` (its folder name: momentum_0.4_lr_0.1_batch_20, control_0.4_lr_0.1_batch_20,
nesterov_0.9_step_0.1_batch_1024; ``Arm.from_name`` reads it back), then, for DVC's templates and
for grouping, ``kind`` (momentum, nesterov or control), ``momentum``, ``lr`` (as listed: the step
lr/(1 - momentum) for an arm named with ``step``), ``batch_size``, ``control``, ``effective_lr``
(lr/(1 - momentum), the same for an arm and its control); ``replicate``, ``fold`` (the validation
fold it held out), ``budget_steps`` (the steps of its budget) and ``target`` (train.target, empty
without one); ``step``, ``epoch`` (steps over steps per epoch) and ``examples`` (training
images seen) at the evaluation; the losses and accuracies (``QUALITY``: fractions; training
figures are the means over the batches since the previous evaluation; with a target, test
figures only where a model stops; a model's record holds the same for each evaluation);
``diverged`` (1 where a model's figures stopped being finite; its figures are then empty);
``stopped`` (on a model's last row: target, diverged or budget); and the cost of the pass that
trained the model since the previous evaluation (seconds training and evaluating, samples per
second, which pass and how many models it held, peak memory).
"""

from .arms import arm_columns

IDENTITY = ["arm", "kind", "momentum", "lr", "batch_size", "control", "effective_lr",
            "replicate", "fold", "budget_steps", "target"]
POSITION = ["step", "epoch", "examples"]
QUALITY = ["train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss",
           "test_accuracy"]
COST = ["train_seconds", "evaluation_seconds", "samples_per_second", "pass", "models_in_pass",
        "cpu_peak_rss_mib", "cuda_peak_allocated_mib", "cuda_peak_reserved_mib"]
COLUMNS = [*IDENTITY, *POSITION, *QUALITY, "diverged", "stopped", *COST]


def identity(arm, replicate, fold, budget) -> dict:
    """The identity columns of a model of ``arm`` (``budget``: its record's)."""
    found = arm_columns(arm, IDENTITY[:7])
    return {**found, "control": int(found["control"]), "replicate": replicate, "fold": fold,
            "budget_steps": budget["steps"], "target": budget["target"]}

"""What both trainers share about the models of a pass: which models belong to which replicate,
each replicate's initial weights, validation fold and mini-batch orders, and what training a
segment gives.

A pass holds models of one batch size, ordered by replicate. Replicate r's models start from the
same initial weights, hold out the same fold and see the same order of examples in each epoch,
drawn from the replicate's own generator on the CPU, so every device, both step implementations
and every batch size see the same order (a batch is a consecutive run of it).
"""

from dataclasses import dataclass

import numpy as np
import torch

from ..vocabulary.arms import replicate_seeds
from .model import initial_state


def replicate_groups(keys) -> list[range]:
    """The models of each replicate, as ranges of indices into ``keys``; they must be
    contiguous."""
    groups, replicates = [], []
    for k, key in enumerate(keys):
        if replicates and replicates[-1] == key.replicate:
            groups[-1] = range(groups[-1].start, k + 1)
        elif key.replicate in replicates:
            raise ValueError("models must be ordered by replicate")
        else:
            replicates.append(key.replicate)
            groups.append(range(k, k + 1))
    return groups


@dataclass
class Trained:
    """What training every model of a pass through one segment gives."""
    loss: np.ndarray         # [K] each model's summed training loss over the segment's batches
    correct: np.ndarray      # [K] its correct predictions on them
    images: int              # the images of the segment's batches
    step_losses: np.ndarray  # [K, steps] float64: each model's summed loss of each step's batch


class BatchOrders:
    """Each replicate's mini-batch order, one permutation of its training rows per epoch from
    its own generator."""

    def __init__(self, replicates, seed, rows):
        """``rows``: [G] each replicate's training rows, [N] int64 (the same N for every one)."""
        self.rows = rows
        self.generators = [torch.Generator().manual_seed(replicate_seeds(seed, r)["order"])
                           for r in replicates]

    def next_epoch(self) -> torch.Tensor:
        """[G, N] int64 on the CPU: this epoch's order of every replicate group, as rows."""
        return torch.stack([rows[torch.randperm(len(rows), generator=g)]
                            for rows, g in zip(self.rows, self.generators)])


@dataclass
class Replicates:
    """The replicate layout of a pass over ``keys``."""
    groups: list            # [G] range of model indices of each replicate group
    group_of: list          # [K] each model's group
    initial: list           # [K] each model's initial state_dict (one object per replicate)
    folds: list             # [G] the fold each group validates on
    validation: list        # [G] its validation split (one object per distinct fold)
    orders: BatchOrders     # the groups' batch orders, epoch after epoch

    @classmethod
    def of(cls, keys, hidden, train_params, folds) -> "Replicates":
        """For ``keys`` (ordered by replicate), trained on ``folds`` (data.splits.Folds)."""
        groups = replicate_groups(keys)
        replicates = [keys[g.start].replicate for g in groups]
        seed = train_params.seed
        initial = {r: initial_state(hidden, replicate_seeds(seed, r)["init"],
                                    train_params.init_scale) for r in replicates}
        held_out = [folds.fold_of(r) for r in replicates]
        return cls(groups, [g for g, models in enumerate(groups) for _ in models],
                   [initial[key.replicate] for key in keys], held_out,
                   folds.validations(held_out),
                   BatchOrders(replicates, seed, [folds.train_rows(f) for f in held_out]))

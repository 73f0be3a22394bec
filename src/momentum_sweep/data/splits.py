"""The images the trainer sees: the folds, the optional subset, on the device.

The *used* images are train.max_train_images of MNIST's training set (all 60,000 by default), in
an order drawn with ``train.seed``. Fold f is the f-th run of train.validation_size of them; a
model that validates on fold f trains on all the others. Replicate r validates on fold
``fold_of(r, train.folds)``: r mod the number of folds with cross-validation, fold 0 (the one
fixed hold-out) without. The folds belong to the data and the replicate, never to the arm: every
arm of a replicate shares its fold.

Images stay uint8 on the device, 4x smaller than floats, and are scaled to [0, 1] there, one batch
at a time (`scaled`).
"""

from dataclasses import dataclass

import torch

from .flatten import load_split
from .mnist import FLAT_DIR, TRAIN_IMAGES


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # uint8 [N, 784], on the training device
    labels: torch.Tensor  # int64 [N], on the training device

    def __len__(self):
        return len(self.labels)


def scaled(images_uint8):
    """float32 pixels in [0, 1]: x / 255, exactly as torchvision's ToTensor computes them."""
    return images_uint8.float().div_(255)


def fold_of(replicate, count) -> int:
    """The fold replicate r validates on, of ``count`` folds in turn."""
    return replicate % count


def used_indices(train_params) -> torch.Tensor:
    """[images_used] indices into MNIST's training set, in the order the folds cut them."""
    generator = torch.Generator().manual_seed(train_params.seed)
    return torch.randperm(TRAIN_IMAGES, generator=generator)[: train_params.images_used]


def fold_rows(size, fold, fold_size) -> tuple[torch.Tensor, torch.Tensor]:
    """(training rows, validation rows) of fold ``fold`` among ``size`` used images: the
    validation rows are the fold's run of ``fold_size``, the training rows all the others, in
    order."""
    start, stop = fold * fold_size, (fold + 1) * fold_size
    rows = torch.arange(size)
    return torch.cat([rows[:start], rows[stop:]]), rows[start:stop]


def split_indices(train_params, fold=0) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and validation indices into MNIST's training set of a model validating on
    ``fold``."""
    used = used_indices(train_params)
    train_rows, val_rows = fold_rows(len(used), fold, train_params.validation_size)
    return used[train_rows], used[val_rows]


def probe_indices(train_params, size, fold=0) -> list[int]:
    """``size`` training images of a model validating on ``fold`` (never its validation), as
    indices into MNIST's training set, ascending: the surface stage's probe for the replicates
    of that fold. They depend on train.seed and the fold alone."""
    train_idx, _ = split_indices(train_params, fold)
    generator = torch.Generator().manual_seed(train_params.seed + 1)  # not the split's stream
    chosen = torch.randperm(len(train_idx), generator=generator)[:size]
    return sorted(train_idx[chosen].tolist())


def load_probe(indices, device, flat_dir=FLAT_DIR) -> Split:
    """The probe's images and labels, on ``device``."""
    train = load_split("train", flat_dir)
    rows = torch.tensor(indices)
    return Split(train["images"][rows].to(device), train["labels"][rows].to(device))


@dataclass(frozen=True)
class Folds:
    """What a training pass reads: the used images (``pool``), cut into folds of ``fold_size``
    of which replicates validate on the first ``count``, and the test split."""
    pool: Split
    fold_size: int
    count: int
    test: Split

    def fold_of(self, replicate) -> int:
        return fold_of(replicate, self.count)

    def training(self, fold) -> Split:
        """The training images (uint8) and labels of a model validating on ``fold``."""
        rows = self.train_rows(fold).to(self.pool.images.device)
        return Split(self.pool.images[rows], self.pool.labels[rows])

    def train_rows(self, fold) -> torch.Tensor:
        """[N] int64 on the CPU: the rows of ``pool`` a model validating on ``fold`` trains on."""
        return fold_rows(len(self.pool), fold, self.fold_size)[0]

    def validation(self, fold) -> Split:
        """Fold ``fold``'s images and labels (views into ``pool``)."""
        start, stop = fold * self.fold_size, (fold + 1) * self.fold_size
        return Split(self.pool.images[start:stop], self.pool.labels[start:stop])

    def validations(self, folds) -> list[Split]:
        """The validation split of each of ``folds``, one object per distinct fold."""
        by_fold = {f: self.validation(f) for f in set(folds)}
        return [by_fold[f] for f in folds]


def load_folds(train_params, device, flat_dir=FLAT_DIR) -> Folds:
    """The used training images and the test split, moved to ``device`` as uint8."""
    train, test = load_split("train", flat_dir), load_split("test", flat_dir)
    used = used_indices(train_params)
    return Folds(Split(train["images"][used].to(device), train["labels"][used].to(device)),
                 train_params.validation_size, train_params.folds,
                 Split(test["images"].to(device), test["labels"].to(device)))

"""The images the trainer sees: the validation split, the optional subset, on the device.

Images stay uint8 on the device, 4x smaller than floats, and are scaled to [0, 1] there, one batch
at a time (`scaled`). The validation split depends on ``train.seed`` alone: it belongs to the
data, and is the same for every arm and replicate.
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


def split_indices(train_params):
    """Training and validation indices into MNIST's training set: the same for every model."""
    generator = torch.Generator().manual_seed(train_params.seed)
    used = torch.randperm(TRAIN_IMAGES, generator=generator)[: train_params.images_used]
    return used[train_params.validation_size:], used[: train_params.validation_size]


def probe_indices(train_params, size) -> list[int]:
    """``size`` training images (never validation), as indices into MNIST's training set,
    ascending: the surface stage's probe. They depend on train.seed and the split alone."""
    train_idx, _ = split_indices(train_params)
    generator = torch.Generator().manual_seed(train_params.seed + 1)  # not the split's stream
    chosen = torch.randperm(len(train_idx), generator=generator)[:size]
    return sorted(train_idx[chosen].tolist())


def load_probe(indices, device, flat_dir=FLAT_DIR) -> Split:
    """The probe's images and labels, on ``device``."""
    train = load_split("train", flat_dir)
    rows = torch.tensor(indices)
    return Split(train["images"][rows].to(device), train["labels"][rows].to(device))


def load_splits(train_params, device, flat_dir=FLAT_DIR) -> dict[str, Split]:
    """train, val and test splits, moved to ``device`` as uint8."""
    train, test = load_split("train", flat_dir), load_split("test", flat_dir)
    train_idx, val_idx = split_indices(train_params)

    def on_device(split, rows):
        return Split(split["images"][rows].to(device), split["labels"][rows].to(device))

    return {"train": on_device(train, train_idx), "val": on_device(train, val_idx),
            "test": on_device(test, slice(None))}

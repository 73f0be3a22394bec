"""Stage `flatten`: data/flat/{train,test}.pt, images as uint8 [N, 784] and labels as int64 [N].

Each file loads with one call (``load_split``), which checks shapes, dtypes and the label range,
so a replaced or corrupted file is an error that names it instead of a silently wrong input.
"""

import io
from pathlib import Path

import torch

from . import idx
from ..atomic import write_bytes
from ..errors import SweepError
from .mnist import (CLASSES, FLAT_DIR, MISSING_FLAT, PIXELS, RAW_DIR, TEST_IMAGES,
                    TRAIN_IMAGES)

SPLITS = {"train": ("train", TRAIN_IMAGES), "test": ("t10k", TEST_IMAGES)}


def flatten_split(raw_dir, prefix):
    images = idx.read(Path(raw_dir) / f"{prefix}-images-idx3-ubyte")
    labels = idx.read(Path(raw_dir) / f"{prefix}-labels-idx1-ubyte")
    if images.dim() != 3 or labels.dim() != 1 or len(images) != len(labels):
        raise SweepError(f"{raw_dir}/{prefix}-*: images {tuple(images.shape)} and labels "
                         f"{tuple(labels.shape)} do not match")
    return {"images": images.reshape(len(images), -1).contiguous(), "labels": labels.long()}


def check_split(split, path, expected_count):
    """Raise a SweepError naming ``path`` unless ``split`` is a valid flattened MNIST split."""
    if not isinstance(split, dict) or set(split) != {"images", "labels"}:
        raise SweepError(f"{path}: expected a dict with 'images' and 'labels'")
    images, labels = split["images"], split["labels"]
    if images.dtype != torch.uint8 or tuple(images.shape) != (expected_count, PIXELS):
        raise SweepError(f"{path}: images are {images.dtype} {tuple(images.shape)}, "
                         f"expected torch.uint8 ({expected_count}, {PIXELS})")
    if labels.dtype != torch.int64 or tuple(labels.shape) != (expected_count,):
        raise SweepError(f"{path}: labels are {labels.dtype} {tuple(labels.shape)}, "
                         f"expected torch.int64 ({expected_count},)")
    if labels.numel() and (labels.min() < 0 or labels.max() >= CLASSES):
        raise SweepError(f"{path}: labels outside 0-{CLASSES - 1} "
                         f"(min {labels.min()}, max {labels.max()})")


def load_split(name, flat_dir=FLAT_DIR):
    path = Path(flat_dir) / f"{name}.pt"
    try:
        split = torch.load(path, weights_only=True)
    except FileNotFoundError:
        raise SweepError(f"{path} is missing; {MISSING_FLAT}") from None
    except Exception as error:  # torch raises several types for a file that is not a tensor file
        raise SweepError(f"{path}: not a readable tensor file ({error})") from None
    check_split(split, path, SPLITS[name][1])
    return split


def flatten(raw_dir=RAW_DIR, flat_dir=FLAT_DIR):
    """Write data/flat/{train,test}.pt from the raw IDX files."""
    for name, (prefix, count) in SPLITS.items():
        path = Path(flat_dir) / f"{name}.pt"
        split = flatten_split(raw_dir, prefix)
        check_split(split, path, count)
        # Saved into memory first: given a path, torch.save names the archive inside after the
        # (random) temporary file, and the bytes, so the hash DVC records, would differ; and a
        # full disk is then an ordinary OSError, which write_bytes names.
        buffer = io.BytesIO()
        torch.save(split, buffer)
        write_bytes(path, buffer.getvalue())
        print(f"flatten: {path} images {tuple(split['images'].shape)} uint8", flush=True)


def run(p):
    """Stage `flatten` (needs no parameters)."""
    flatten()

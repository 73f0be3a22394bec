"""Reading MNIST's IDX files (plain or gzip) into tensors, with their headers checked."""

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import torch

from ..errors import SweepError

# Magic numbers of the IDX format: two zero bytes, the type code (0x08: unsigned byte), the rank.
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


def read_bytes(path) -> bytes:
    """The file's content, decompressed when it is gzip (by its magic bytes, not its name)."""
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise SweepError(f"{path}: not a valid gzip file ({error})") from None
    return data


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def parse(data: bytes, path) -> torch.Tensor:
    """An IDX byte string as a uint8 tensor of its declared shape."""
    if len(data) < 8:
        raise SweepError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    magic = struct.unpack(">I", data[:4])[0]
    if magic not in (IMAGES_MAGIC, LABELS_MAGIC):
        raise SweepError(f"{path}: wrong magic number 0x{magic:08x}; expected 0x{IMAGES_MAGIC:08x} "
                         f"(images) or 0x{LABELS_MAGIC:08x} (labels)")
    rank = magic & 0xFF
    header = 4 + 4 * rank
    shape = struct.unpack(f">{rank}I", data[4:header])
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise SweepError(f"{path}: {len(data)} bytes, but its header {tuple(shape)} "
                         f"needs {expected}: truncated or padded")
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)
    return torch.from_numpy(array.copy())


def read(path) -> torch.Tensor:
    return parse(read_bytes(path), path)

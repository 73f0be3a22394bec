"""IDX parsing on small generated files: good, gzip, truncated, padded, wrong magic."""

import gzip
import struct

import pytest
import torch

from momentum_sweep.data import idx
from momentum_sweep.errors import SweepError


def idx_bytes(array: torch.Tensor, magic=None):
    magic = magic if magic is not None else 0x00000800 | array.dim()
    return struct.pack(">I", magic) + struct.pack(f">{array.dim()}I", *array.shape) + \
        array.numpy().tobytes()


@pytest.fixture
def images():
    return torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_reads_images_and_labels(tmp_path, images, compress):
    labels = torch.tensor([7, 0, 9], dtype=torch.uint8)
    for name, array in (("images", images), ("labels", labels)):
        data = idx_bytes(array)
        (tmp_path / name).write_bytes(gzip.compress(data) if compress else data)
        assert torch.equal(idx.read(tmp_path / name), array)


@pytest.mark.parametrize("cut", [1, 100, 3 * 784])
def test_truncated_file_is_an_error_naming_it(tmp_path, images, cut):
    path = tmp_path / "train-images"
    path.write_bytes(idx_bytes(images)[:-cut])
    with pytest.raises(SweepError, match="train-images.*truncated"):
        idx.read(path)


def test_padded_file_is_an_error(tmp_path, images):
    path = tmp_path / "x"
    path.write_bytes(idx_bytes(images) + b"\0")
    with pytest.raises(SweepError, match="truncated or padded"):
        idx.read(path)


def test_wrong_magic_number(tmp_path, images):
    path = tmp_path / "x"
    path.write_bytes(idx_bytes(images, magic=0x00000D03))
    with pytest.raises(SweepError, match="wrong magic number 0x00000d03"):
        idx.read(path)


def test_broken_gzip(tmp_path, images):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(idx_bytes(images))[:-20])
    with pytest.raises(SweepError, match="not a valid gzip file"):
        idx.read(path)


def test_too_short_for_a_header(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"\0\0\x08")
    with pytest.raises(SweepError, match="too short"):
        idx.read(path)

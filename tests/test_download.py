"""The download stage: carried copy, real torchvision download from a loopback mirror, errors."""

import functools
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from clones import ROOT
from momentum_sweep.data import download
from momentum_sweep.data.mnist import CARRIED_DIR, MD5
from momentum_sweep.errors import SweepError
from momentum_sweep.params import DataParams

CARRIED = ROOT / CARRIED_DIR


def data_params(source="carried", mirrors=None):
    return DataParams(source=source, mirrors=mirrors)


@pytest.fixture
def mirror():
    """An HTTP server on 127.0.0.1 serving the carried gzip files, as an MNIST mirror would."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(CARRIED))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def closed_port_url():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


def md5_of(path):
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def test_carried_copy_gives_the_verified_files(tmp_path):
    download.download(data_params(), raw_dir=tmp_path, carried_dir=CARRIED)
    assert {md5_of(tmp_path / name) for name in MD5} == set(MD5.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(MD5)


def test_torchvision_download_from_a_mirror(tmp_path, mirror):
    params = data_params(source="download", mirrors=[closed_port_url(), mirror])
    download.download(params, raw_dir=tmp_path, carried_dir=tmp_path / "none")
    assert {md5_of(tmp_path / name) for name in MD5} == set(MD5.values())


def test_missing_copy_falls_back_to_download_and_says_why_it_failed(tmp_path):
    params = data_params(mirrors=[closed_port_url()])
    with pytest.raises(SweepError) as error:
        download.download(params, raw_dir=tmp_path / "raw", carried_dir=tmp_path / "none")
    message = str(error.value)
    assert "train-images-idx3-ubyte" in message
    assert "carried copy" in message and "does not exist" in message
    assert "torchvision download" in message and "no mirror could be reached" in message
    assert list((tmp_path / "raw").iterdir()) == []


def test_wrong_checksum_names_file_both_checksums_and_sources(tmp_path):
    carried = tmp_path / "carried"
    shutil.copytree(CARRIED, carried)
    target = carried / "t10k-labels-idx1-ubyte.gz"
    import gzip

    content = bytearray(gzip.decompress(target.read_bytes()))
    content[100] ^= 0xFF
    target.write_bytes(gzip.compress(bytes(content)))
    params = data_params(mirrors=[closed_port_url()])
    with pytest.raises(SweepError) as error:
        download.download(params, raw_dir=tmp_path / "raw", carried_dir=carried)
    message = str(error.value)
    expected = MD5["t10k-labels-idx1-ubyte"]
    actual = hashlib.md5(bytes(content)).hexdigest()
    assert "t10k-labels-idx1-ubyte" in message and expected in message and actual in message
    assert "torchvision download" in message
    # The files before it were verified and kept; nothing unverified or temporary is left.
    left = sorted(p.name for p in (tmp_path / "raw").iterdir())
    assert left == ["t10k-images-idx3-ubyte", "train-images-idx3-ubyte", "train-labels-idx1-ubyte"]


def test_truncated_carried_copy_names_the_file_and_both_checksums(tmp_path):
    carried = tmp_path / "carried"
    shutil.copytree(CARRIED, carried)
    target = carried / "t10k-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:100_000])
    with pytest.raises(SweepError) as error:
        download.download(data_params(mirrors=[closed_port_url()]), raw_dir=tmp_path / "raw",
                          carried_dir=carried)
    message = str(error.value)
    assert "t10k-images-idx3-ubyte.gz: not a valid gzip file" in message
    assert download.carried_gzip_md5(carried, target.name) in message
    assert md5_of(target) in message

"""Stage `download`: the four original MNIST IDX files in data/raw/, each verified by its MD5.

Sources, in order: the gzip copy the repository carries (data/mnist/), then torchvision's MNIST
downloader (the official mirrors) when that copy is missing or params.yaml says
``data.source: download``. A file is decompressed to a temporary name and renamed into place only
once its checksum is right, so data/raw never holds a half-written or unverified file.
"""

import tempfile
from pathlib import Path

from . import idx
from ..atomic import write_bytes
from ..errors import SweepError
from .mnist import CARRIED_DIR, MD5, RAW_DIR


def carried_gzip_md5(carried_dir, filename):
    """The MD5 the carried .gz file had when it was added (its MD5SUMS.gz.txt), or None."""
    sums = Path(carried_dir) / "MD5SUMS.gz.txt"
    if sums.exists():
        for line in sums.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == filename:
                return parts[0]
    return None


def from_carried_copy(name, carried_dir=CARRIED_DIR) -> bytes:
    path = Path(carried_dir) / f"{name}.gz"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return idx.read_bytes(path)
    except SweepError as error:
        # A damaged gzip stream has no content to checksum: compare the .gz file itself.
        raise SweepError(f"{error}; expected MD5 of {path.name} "
                         f"{carried_gzip_md5(carried_dir, path.name)}, actual "
                         f"{idx.md5(path.read_bytes())}") from None


def from_mirrors(name, mirrors=None) -> bytes:
    """Fetch ``name``.gz with torchvision's downloader, trying each mirror in turn."""
    from torchvision.datasets import MNIST
    from torchvision.datasets.utils import download_url

    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for mirror in mirrors or MNIST.mirrors:
            url = f"{mirror.rstrip('/')}/{name}.gz"
            try:
                # No md5 here: it would be that of the mirrors' gzip file; we verify the content.
                download_url(url, tmp, filename=f"{name}.gz")
                return idx.read_bytes(Path(tmp) / f"{name}.gz")
            except (OSError, RuntimeError, ValueError, SweepError) as error:
                failures.append(f"{url}: {error}")
    raise OSError("no mirror could be reached (is there network access?): " + "; ".join(failures))


def fetch_verified(name, sources) -> bytes:
    """The decompressed content of ``name`` from the first source whose MD5 is right."""
    tried = []
    for label, fetch in sources:
        try:
            data = fetch(name)
        except (OSError, SweepError) as error:
            tried.append(f"{label}: {error}")
            continue
        actual = idx.md5(data)
        if actual == MD5[name]:
            return data
        tried.append(f"{label}: checksum mismatch, expected MD5 {MD5[name]}, actual {actual}")
    raise SweepError(f"{name}: no source gave a verified copy. Sources tried:\n  "
                     + "\n  ".join(tried))


def sources_for(data_params, carried_dir=CARRIED_DIR):
    carried = (f"carried copy {carried_dir}", lambda name: from_carried_copy(name, carried_dir))
    mirrors = ("torchvision download", lambda name: from_mirrors(name, data_params.mirrors))
    return [mirrors] if data_params.source == "download" else [carried, mirrors]


def download(data_params, raw_dir=RAW_DIR, carried_dir=CARRIED_DIR):
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    sources = sources_for(data_params, carried_dir)
    for name in MD5:
        target = raw_dir / name
        write_bytes(target, fetch_verified(name, sources))
        print(f"download: {target} verified (MD5 {MD5[name]})", flush=True)


def run(p):
    """Stage `download`."""
    download(p.data)

"""DVC's own commands on the pipeline: `dvc repro` after a corrupted download, `dvc exp run -S`
with a number YAML 1.1 would read as a string, and `dvc plots show` and `dvc plots diff` through
the repository's Vega-Lite template."""

import hashlib
import json
import re

import pytest
import vl_convert

from momentum_sweep.data import download

pytestmark = pytest.mark.dvc


def test_corrupted_byte_stops_dvc_repro_and_restoring_fixes_it(fresh_clone, tmp_path):
    repo = fresh_clone.copy(tmp_path / "repo")
    target = repo / "data" / "mnist" / "train-labels-idx1-ubyte.gz"
    original = target.read_bytes()
    corrupted = bytearray(original)
    corrupted[-10] ^= 0x01  # inside the deflate stream or its CRC: gzip or MD5 must catch it
    target.write_bytes(bytes(corrupted))
    result = repo.dvc("repro", "flatten", check=False)
    assert result.returncode != 0
    assert "train-labels-idx1-ubyte" in result.stdout
    expected = download.carried_gzip_md5(repo / "data" / "mnist", target.name)
    actual = hashlib.md5(bytes(corrupted)).hexdigest()
    assert expected and expected in result.stdout and actual in result.stdout
    assert "Traceback" not in result.stdout
    target.write_bytes(original)
    repo.dvc("repro", "flatten")
    assert (repo / "data" / "flat" / "train.pt").exists()


def test_dvc_exp_run_with_a_tiny_learning_rate_is_accepted(repo):
    result = repo.dvc("exp", "run", "params", "-S", "train.lr=0.00001")
    assert "lr: 1e-05" in (repo / "params.yaml").read_text()
    assert "params: params.yaml is valid" in result.stdout


def rendered(spec, mark):
    """How many marks of a kind Vega-Lite draws for a filled spec, rendered offline to SVG."""
    svg = vl_convert.vegalite_to_svg(json.dumps(spec))
    return len(re.findall(f'aria-roledescription="{mark}"', svg))


def test_dvc_plots_show_and_diff_draw_a_mean_line_and_band_per_momentum_and_revision(repo):
    shown = json.loads(repo.dvc("plots", "show", "--json").stdout)["data"]
    spec = shown["test_accuracy"][0]["content"]
    points = spec["data"]["values"]
    assert {p["arm"] for p in points} == {"momentum_0.0", "momentum_0.4", "control_0.4"}
    assert rendered(spec, "line mark") == 2  # controls are left to the PNGs
    assert rendered(spec, "errorband") == 2  # the 95% bands
    assert vl_convert.vegalite_to_png(json.dumps(spec))[:4] == b"\x89PNG"

    repo.set_params({"momentum": [0.0, 0.4, 0.5]})
    repo.dvc("repro", "summarize")
    diff = json.loads(repo.dvc("plots", "diff", "HEAD", "--json").stdout)["data"]
    for name in ("train_loss", "test_loss", "val_accuracy", "test_accuracy"):
        spec = diff[name][0]["content"]
        revisions = {(p["rev"], float(p["momentum"])) for p in spec["data"]["values"]
                     if str(p["control"]) == "0"}
        assert revisions == {("HEAD", 0.0), ("HEAD", 0.4), ("workspace", 0.0),
                             ("workspace", 0.4), ("workspace", 0.5)}
        assert rendered(spec, "line mark") == 5 and rendered(spec, "errorband") == 5

"""DVC's own commands on the pipeline: `dvc repro` after a corrupted download, `dvc exp run -S`
with a number YAML 1.1 would read as a string, `dvc plots show` and `dvc plots diff` through
the repository's Vega-Lite template, and a learning-rate grid split over experiments and joined
by momentum-sweep-compare."""

import hashlib
import json
import re
import shlex

import pytest
import vl_convert

from clones import ROOT
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
    assert {p["arm"] for p in points} == {"momentum_0.0_lr_0.1", "momentum_0.4_lr_0.1",
                                          "control_0.4_lr_0.1"}
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


def tuned_comparisons(summary):
    return [{k: c[k] for k in ("arm", "against", "n", "outcome")} for c in summary["comparisons"]
            if c["family"] == "tuned_vs_zero"]


def readme_exp_show() -> list:
    """The README's `dvc exp show` command, as its arguments."""
    readme = (ROOT / "README.md").read_text()
    [command] = re.findall(r"^(dvc exp show .*?)\s*(?:#.*)?$", readme, re.M)
    return shlex.split(command)


def test_a_grid_split_over_three_experiments_and_joined_gives_the_whole_grids_answer(repo):
    """One experiment per lr, joined by momentum-sweep-compare, and the same grid in one run of
    the pipeline: the same tuned choice and verdicts, the same paired differences. Between them,
    the README's `dvc exp show` fits in 200 columns."""
    for lr in ("0.02", "0.1", "0.2"):  # up to summarize: what the comparison reads
        repo.dvc("exp", "run", "summarize", "-n", f"lr-{lr}", "-S", f"train.lr={lr}")
    shown = repo.run(*readme_exp_show(), "--no-pager", env={"COLUMNS": "100000"}).stdout
    assert "lr-0.02" in shown and max(len(line.rstrip()) for line in shown.splitlines()) < 200
    log = repo.run("momentum-sweep-compare").stdout
    assert "compare: 3 of 3 experiment(s)" in log and "tuned: momentum 0.4 at its best lr" in log
    joined = json.loads((repo / "comparison" / "summary.json").read_text())
    for name in ("accuracy", "effective_step", "lr_momentum", "differences"):
        assert (repo / "comparison" / f"{name}.png").stat().st_size > 10_000

    repo.set_params({"train": {"lr": [0.02, 0.1, 0.2]}})
    result = repo.dvc("repro", "summarize")
    assert "train: 0 trained, 18 reused" in result.stdout  # each slice's models, once
    whole = repo.summary()
    assert list(whole)[:2] == ["tuned", "best"]
    assert whole["tuned"] == joined["tuned"] and set(whole["tuned"]["best_lr"]) == {"0p0", "0p4"}
    assert tuned_comparisons(whole) == tuned_comparisons(joined) != []
    for mine, theirs in zip(whole["comparisons"], joined["comparisons"]):
        # the joined tables hold epochs.tsv's six significant digits
        assert mine["mean_difference"] == pytest.approx(theirs["mean_difference"], abs=1e-5)

    # DVC's template draws the lr dimension: one column of panels per lr
    spec = json.loads(repo.dvc("plots", "show", "--json").stdout)["data"]["test_accuracy"][0][
        "content"]
    assert rendered(spec, "line mark") == 6 and rendered(spec, "errorband") == 6

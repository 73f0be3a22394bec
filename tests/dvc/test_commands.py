"""DVC's own commands on the pipeline: `dvc repro` after a corrupted download, `dvc exp run -S`
with a number YAML 1.1 would read as a string, `dvc plots show` and `dvc plots diff` through
the repository's Vega-Lite template, every command the README shows run as written (a queued
experiment running the code it was queued with among them), a
batch-size grid split over experiments and joined by momentum-sweep-compare, the scripts on any
run, and the benchmarks, run so that they cannot rot."""

import hashlib
import json
import re

import pytest
import vl_convert

from clones import ROOT, statuses, wait_for_queue
from momentum_sweep import params
from momentum_sweep.data import download
from momentum_sweep.data.splits import load_folds
from momentum_sweep.surface import measures
from momentum_sweep.training.model import initial_state
from momentum_sweep.vocabulary.arms import replicate_seeds

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
    assert {p["arm"] for p in points} == {"momentum_0.0_lr_0.1_batch_20",
                                          "momentum_0.4_lr_0.1_batch_20",
                                          "control_0.4_lr_0.1_batch_20"}
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


def x_axes(svg) -> list:
    """The x axes Vega draws, as their descriptions ("X-axis titled ... with values from 0 to
    1500"), in the order drawn."""
    return re.findall(r'aria-label="(X-axis[^"]*)"', svg)


def test_dvc_plots_show_draws_a_batch_grid_with_a_target_by_update_in_steps(repo):
    """Batch sizes 20, 250 and 1000 with Nesterov's 0.4 beside heavy-ball 0.4, to a target:
    each update its own line, the batch sizes in numeric order, each row against its own steps."""
    repo.dvc("exp", "run", "summarize", "-S", "train.batch_size=[20,250,1000]",
             "-S", "train.nesterov=[0.4]", "-S", "train.target=0.85", "-S", "train.epochs=1")
    shown = json.loads(repo.dvc("plots", "show", "--json").stdout)["data"]
    spec = shown["val_accuracy"][0]["content"]
    assert {p["kind"] for p in spec["data"]["values"]} == {"momentum", "nesterov", "control"}
    svg = vl_convert.vegalite_to_svg(json.dumps(spec))
    assert rendered(spec, "line mark") == 3 * 3  # batch sizes x (0, heavy-ball 0.4, Nesterov 0.4)
    rows = re.findall(r'aria-label="batch size: (\d+)"|>(\d+)</text>', svg)
    headers = [int(a or b) for a, b in rows if int(a or b) in (20, 250, 1000)]
    assert headers[:3] == [20, 250, 1000]
    axes = x_axes(svg)
    assert len(axes) == 3 and all("training steps" in a for a in axes)
    # one epoch: 100, 8 and 2 steps, each row against its own range, not one shared epoch axis
    largest = [int(re.search(r"to (\d+)", a).group(1)) for a in axes]
    assert largest[0] >= 100 and largest[0] > largest[1] > largest[2]
    live = shown["live_val_accuracy"][0]["content"]
    assert {p["kind"] for p in live["data"]["values"]} >= {"momentum", "nesterov"}
    assert len(x_axes(vl_convert.vegalite_to_svg(json.dumps(live)))) == 3


def readme_commands() -> list:
    """The commands of the README's "Driving it" block, as written (one a line, comments off)."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Driving it.*?```\n(.*?)```", readme, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


KERNELS = "src/momentum_sweep/training/native_kernels.c"
STEP = "const float alpha = lr / (float)B;"


def accuracies_of(summary: dict) -> dict:
    return {a["arm"]: a["test_accuracy"]["mean"] for a in summary["arms"]}


@pytest.mark.long
def test_every_command_the_readme_shows_runs_as_written(repo):
    """On the small config, in order, each exactly as the README writes it (the shell splits
    it), each experiment from the committed params; what each says it does, it does. Between
    queuing and `dvc queue start` the workspace's training step is edited: a queued experiment
    runs the code it was queued with (its commit), as `dvc exp show` then records."""
    commands = readme_commands()
    assert commands[0] == "dvc repro" and len(commands) >= 8
    for command in commands:
        if command.startswith("dvc exp run"):
            repo.git("checkout", "params.yaml")
        if command == "dvc queue start":
            kernels = repo / KERNELS
            assert STEP in kernels.read_text()
            kernels.write_text(kernels.read_text().replace(STEP, "const float alpha = 2 * lr / B;"))
        result = repo.run("bash", "-c", command, env={"COLUMNS": "100000"})
        if command.startswith("dvc exp run --queue"):  # a sweep: one experiment each
            assert result.stdout.count("Queued experiment") == 2, result.stdout
        if command == "dvc queue start":
            assert wait_for_queue(repo).count("Success") == 2
        if command == "dvc exp run -S momentum=0.4":
            assert set(statuses(result.stdout).values()) == {"reused"}
            assert repo.headline()["vs_zero"] in ("no diff", "better: 0.4", "worse: 0.4")
        if command == "dvc exp run -S train.replicates=20":
            assert sum("trained" in v for v in statuses(result.stdout).values()) == 3 * 18
        if command.startswith("dvc exp run -S 'train.lr="):
            assert {"tuned", "vs_tuned_zero"} <= set(repo.headline())
        if "train.target" in command:
            # on the small config (2,000 training images) no model reaches 96%: said so
            headline = repo.headline()
            assert headline["target"] == 0.96
            assert not any(m["reached"] for m in repo.summary()["models"])
            assert headline["b20"] == headline["b1024"] == "not reached: 0.9"
        if command == "dvc exp show --only-changed":
            assert "vs_zero" in result.stdout and "train.lr" in result.stdout

    # The queued momentum 0.4 trains what the committed run trained (the same arms and
    # settings), with the committed step: its results are the committed ones.
    committed = accuracies_of(json.loads(repo.git("show", "HEAD:results/summary.json").stdout))
    shown = json.loads(repo.dvc("exp", "show", "--json").stdout)
    settings = [(e["rev"], e["data"]["params"]["params.yaml"]["data"]) for commit in shown
                for exp in (commit.get("experiments") or []) for e in exp["revs"]]
    queued = [rev for rev, s in settings if s["momentum"] == 0.4 and s["train"]["lr"] == 0.1
              and s["train"]["replicates"] == 2 and s["train"]["target"] is None]
    assert len(queued) == 2  # `dvc exp run -S momentum=0.4` and the queued one
    for rev in queued:  # the whole summary is a plain output: read it at the experiment
        found = json.loads(repo.git("show", f"{rev}:results/summary.json").stdout)
        assert accuracies_of(found) == committed, rev
    # The edit does change results: the workspace, which runs it, gets other figures.
    repo.git("checkout", "params.yaml")
    repo.dvc("repro", "summarize")
    assert accuracies_of(repo.summary()).keys() == committed.keys()
    assert accuracies_of(repo.summary()) != committed


def test_a_batch_size_grid_split_over_experiments_joins_into_the_whole_grids_answer(repo):
    """One experiment per batch size (as hosts of a sweep, or scripts/doc-experiment batch, run
    them), joined by momentum-sweep-compare, and the same grid in one run of the pipeline: the
    same steps, tuned choices and verdicts."""
    common = ["-S", "train.target=0.85", "-S", "train.min_steps=150", "-S", "train.epochs=1",
              "-S", "train.effective_lr=true", "-S", "train.lr=[0.1,0.4]"]
    for batch in ("20", "200"):  # up to summarize: what the comparison reads
        repo.dvc("exp", "run", "summarize", "-n", f"batch-{batch}", *common,
                 "-S", f"train.batch_size={batch}")
    log = repo.run("momentum-sweep-compare", "--names", "batch-20", "batch-200").stdout
    assert "compare: 2 of 2 experiment(s)" in log
    joined = json.loads((repo / "comparison" / "summary.json").read_text())

    # why: the tuned models' noise scale and sharpness, read from the experiments that trained
    # them; at the initial weights, the noise scale of the weights replicate 0 starts from
    log = repo.run("momentum-sweep-dynamics", "comparison/summary.json", "--names", "batch-20",
                   "batch-200", "--out", "dynamics").stdout
    found = json.loads((repo / "dynamics" / "dynamics.json").read_text())
    assert len(found["arms"]) == sum(a["best_lr_of_line"] for a in joined["arms"]) == 4
    assert (repo / "dynamics" / "stability.png").stat().st_size > 10_000
    p = params.load(repo / "params.yaml")
    weights = initial_state(p.model.hidden, replicate_seeds(p.train.seed, 0)["init"])
    start = measures.network(weights, p.model.hidden, "cpu")
    training = load_folds(p.train, "cpu", repo / "data" / "flat").training(0)  # fold 0's
    expected = measures.noise_scale(start, training.images, training.labels)["noise_scale"]
    initial = [m["noise_scale_initial"] for m in found["models"] if m["replicate"] == 0]
    assert initial == pytest.approx([expected] * len(initial)) and len(initial) == 4
    reached = [m for m in found["models"] if m["sharpness_over_limit_at_target"] is not None]
    assert all(m["lambda_max_at_target"] > 0 for m in reached)

    log = repo.dvc("exp", "run", "summarize", *common, "-S", "train.batch_size=[20,200]").stdout
    assert "train: 0 trained, 16 reused" in log  # each slice's models, once
    whole = repo.summary()
    assert json.loads((repo / "comparison" / "headline.json").read_text()) == repo.headline()
    assert [a["arm"] for a in whole["arms"]] == [a["arm"] for a in joined["arms"]]
    for mine, theirs in zip(whole["arms"], joined["arms"]):
        assert mine["steps"] == theirs["steps"] and mine["best_lr_of_line"] == \
            theirs["best_lr_of_line"]
    assert [(c["arm"], c["against"], c["outcome"]) for c in whole["comparisons"]] == \
        [(c["arm"], c["against"], c["outcome"]) for c in joined["comparisons"]]

    # DVC's template draws the batch dimension: a row of panels per batch size
    spec = json.loads(repo.dvc("plots", "show", "--json").stdout)["data"]["val_accuracy"][0][
        "content"]
    assert rendered(spec, "line mark") == 2 * 2 * 2  # batch sizes x lrs x momenta


def test_the_results_tables_print_any_run_keyed_by_arm(repo):
    """A two-lr, two-momentum grid, and an experiment on one momentum: every arm a row."""
    repo.set_params({"train": {"lr": [0.05, 0.2]}})
    repo.dvc("repro", "summarize")
    printed = repo.run("scripts/results-tables", "summary", "results/summary.json").stdout
    for arm in ("momentum 0.0 at lr 0.05, batch 20", "momentum 0.4 at lr 0.2, batch 20",
                "control 0.4 at lr 0.05, batch 20 (SGD at lr 0.08333)"):
        assert f"| {arm} |" in printed
    assert re.search(r"\| 0\.4 \| (0\.05|0\.2)( \(|, (smallest|largest) listed)", printed)  # tuned
    repo.git("checkout", "params.yaml")
    repo.dvc("exp", "run", "-S", "momentum=0.4")
    for kind in ("summary", "surface"):
        printed = repo.run("scripts/results-tables", kind, f"results/{kind}.json").stdout
        assert "| momentum 0.4 at lr 0.1, batch 20 |" in printed


def test_the_benchmarks_run(repo):
    """Each benchmark, shortest settings, on the small config: they cannot rot unseen."""
    speed = repo.run("python", "benchmarks/train_speed.py", "--epochs", "1", "--repeats", "1",
                     "--only", "native-5", "torch-5", "native-batch-1024",
                     "torch-batch-1024").stdout
    assert re.search(r"at batch 1024, K = \d+: PyTorch step / native = [\d.]+x", speed)
    surface = repo.run("python", "benchmarks/surface_cost.py", "--repeats", "1").stdout
    assert "product     ours" in surface and "per model" in surface


"""A sweep over two hosts, as the README describes it: a bare git repository as `origin`, a local
folder as the DVC remote, scripts/sweep-host on each host, a collector that pulls and compares
everything, and a fresh clone whose `dvc pull` restores models that reproduce their records."""

import json
import re

import pandas as pd
import pytest
import torch

from clones import Clone
from momentum_sweep.data import flatten
from momentum_sweep.training import model

pytestmark = pytest.mark.dvc


def git_clone(origin, dest) -> Clone:
    Clone(dest.parent).git("clone", "-q", str(origin), dest.name)
    return Clone(dest)


def experiments(clone):
    shown = json.loads(clone.dvc("exp", "show", "--json").stdout)
    return {e["name"]: e["revs"][0] for commit in shown for e in (commit.get("experiments") or [])}


@pytest.mark.long
def test_two_hosts_share_a_sweep_through_git_and_dvc_remotes(template, tmp_path):
    origin, storage = tmp_path / "origin.git", tmp_path / "storage"
    main = template.copy(tmp_path / "main")
    main.git("init", "-q", "--bare", "--initial-branch=main", str(origin))
    main.dvc("remote", "add", "-d", "storage", str(storage))
    main.commit("a DVC remote")
    main.git("remote", "add", "origin", str(origin))
    main.git("push", "-q", "origin", "HEAD:main")
    main.dvc("push")

    # Host a sweeps two momenta on two workers, host b one momentum on one; up to the summary.
    slices = {"a": ("0,1", "momentum=0.1,0.2", 2), "b": ("0", "momentum=0.4", 1)}
    sweeps = []
    for name, (devices, sweep, count) in slices.items():  # each: clone, pull, its slice, push
        host = git_clone(origin, tmp_path / f"host-{name}")
        host.dvc("pull")
        sweeps.append((host.start("scripts/sweep-host", "origin", devices, "-S", sweep,
                                  "-S", "train.epochs=1", "--stage", "summarize"), count))
    for sweep, count in sweeps:  # the hosts work at the same time, as real hosts do
        log = sweep.communicate(timeout=900)[0]
        assert sweep.returncode == 0 and log.count("Success") == count, log

    collector = git_clone(origin, tmp_path / "collector")
    collector.dvc("exp", "pull", "origin")
    found = experiments(collector)
    assert len(found) == 3
    momenta = sorted(str(rev["data"]["params"]["params.yaml"]["data"]["momentum"])
                     for rev in found.values())
    assert momenta == ["0.1", "0.2", "0.4"]
    for rev in found.values():
        assert "vs_zero" in rev["data"]["metrics"]["metrics/summary.json"]["data"]
        # Each worker ran with the device it was started with.
        momentum = rev["data"]["params"]["params.yaml"]["data"]["momentum"]
        read = "import dvc.api, sys; print(dvc.api.read(sys.argv[1], rev=sys.argv[2]))"
        timing = json.loads(collector.run(
            "python", "-c", read,
            f"models/control_{momentum}_lr_0.1_batch_20/replicate_0/timing.json",
            rev["rev"]).stdout)
        assert timing["cuda_visible_devices"] in ("0", "1")

    log = collector.run("momentum-sweep-compare").stdout
    assert "compare: 3 of 3 experiment(s)" in log
    arms = pd.read_csv(collector / "comparison" / "arms.tsv", sep="\t")
    listed = arms[arms["control"] == 0]
    assert sorted(listed.loc[listed["lr"] == 0.1, "momentum"]) == [0.0, 0.1, 0.2, 0.4]
    assert len(arms) == 7 and (arms["replicates"] == 2).all()  # and three controls
    assert (collector / "comparison" / "accuracy.png").stat().st_size > 10_000

    # A fourth clone restores an experiment's models from the DVC remote.
    fourth = git_clone(origin, tmp_path / "fourth")
    name = sorted(found)[0]
    fourth.dvc("exp", "pull", "origin", name)
    fourth.dvc("exp", "apply", name)
    fourth.dvc("pull")
    test = flatten.load_split("test", fourth / "data" / "flat")
    folders = sorted((fourth / "models").glob("*/replicate_*"))
    assert len(folders) == 6  # momentum 0, the slice's momentum and its control
    for folder in folders:
        net = model.MLP([50, 50])
        net.load_state_dict(torch.load(folder / "model.pt", weights_only=True))
        record = json.loads((folder / "record.json").read_text())
        with torch.no_grad():
            accuracy = (net(test["images"].float() / 255).argmax(1) == test["labels"]).double()
        assert accuracy.mean().item() == record["evaluations"][-1]["test_accuracy"]


@pytest.mark.parametrize("args, message", [
    (["origin", "", "-S", "momentum=0.1"], "the device list '' is empty"),
    (["origni", "0", "-S", "momentum=0.1"], "git remote 'origni' cannot be reached"),
    (["origin", "0", "--temp", "-S", "momentum=0.1"], "unknown argument '--temp'"),
    (["origin", "0"], "nothing to sweep"),
    (["origin", "0", "-S", "momentum=0.1", "--stage", "summary"],
     "--stage 'summary' is not a stage of dvc.yaml: params download flatten train summarize"),
])
def test_sweep_host_refuses_bad_arguments_before_queuing_anything(repo, tmp_path, args, message):
    repo.git("init", "-q", "--bare", str(tmp_path / "origin.git"))
    repo.git("remote", "add", "origin", str(tmp_path / "origin.git"))
    result = repo.run("scripts/sweep-host", *args, check=False, timeout=60)
    assert result.returncode == 2 and f"sweep-host: {message}" in result.stdout, result.stdout
    assert len(result.stdout.splitlines()) == 2  # the error and the usage, not dvc's help
    assert not re.search(r"Queued|Running", repo.dvc("queue", "status").stdout)

"""Fixtures: temporary clones of this repository, and real MNIST splits for the unit tests.

The tests under tests/dvc/ drive `dvc` in clones and take minutes; `pytest tests
--ignore=tests/dvc` runs the rest in about a minute. What several tests only read is built once
per run, for every pytest-xdist worker (``built_once``).
"""

import momentum_sweep  # noqa: F401  first: sets MKL's reproducibility mode before torch computes

import os

import pytest
import torch
from threadpoolctl import threadpool_limits

from clones import ROOT, SMALL, Clone, built_once, clone_repository


def pytest_configure(config):
    """With one pytest-xdist worker per core, each worker and everything it starts (dvc, the
    stages, their threads) stays on its own core: two workers' thread pools on two shared cores
    spin against each other and take several times as long. Results do not depend on the number
    of threads (tests/test_native_step.py holds them equal). BLAS (numpy's, scipy's) sized its
    pool when it was imported, before the pinning: it is cut to one thread too."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    cores = sorted(os.sched_getaffinity(0))
    if worker and int(os.environ["PYTEST_XDIST_WORKER_COUNT"]) == len(cores) > 1:
        os.sched_setaffinity(0, {cores[int(worker.removeprefix("gw"))]})
        torch.set_num_threads(1)
        threadpool_limits(1)


def pytest_collection_modifyitems(items):
    """The longest tests first, then the other dvc tests, then the unit tests: each worker takes
    the next test when it frees up, so the long ones run side by side from the start and the
    short ones fill in around them. Among the long ones, those that need no template first: one
    worker starts on them while the other builds the template, instead of waiting for it.

    pytest-xdist hands each worker two consecutive tests to start with: the long tests are dealt
    to the workers in turn, so that no worker starts with two of them while another has none."""
    def cost(item):
        rank = 0 if item.get_closest_marker("long") else 1 if item.get_closest_marker("dvc") \
            else 2
        return rank, "template" in item.fixturenames

    items.sort(key=cost)
    # set in each worker: the workers collect and order the tests that xdist then hands out
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    long = [item for item in items if item.get_closest_marker("long")]
    if workers > 1:
        hands = [long[w::workers] for w in range(workers)]
        first = [item for hand in hands for item in hand[:2]]
        items[:len(long)] = first + [item for item in long if item not in first]


@pytest.fixture(scope="session")
def template(tmp_path_factory) -> Clone:
    """A clone with the small config committed and its whole pipeline run: copied per test,
    never changed."""
    def build(folder):
        clone = clone_repository(folder)
        clone.set_params(SMALL)
        clone.dvc("repro")
        clone.commit("small config, reproduced")

    return Clone(built_once(tmp_path_factory, "template", build))


@pytest.fixture
def repo(template, tmp_path) -> Clone:
    return template.copy(tmp_path / "repo")


@pytest.fixture(scope="session")
def fresh_clone(tmp_path_factory) -> Clone:
    return clone_repository(tmp_path_factory.mktemp("fresh"))


@pytest.fixture(scope="session")
def flat_dir(tmp_path_factory, default_params):
    """data/flat of real MNIST, built from the carried copy in a temporary folder."""
    from momentum_sweep.data import download, flatten
    from momentum_sweep.data.mnist import CARRIED_DIR

    def build(root):
        download.download(default_params.data, raw_dir=root / "raw",
                          carried_dir=ROOT / CARRIED_DIR)
        flatten.flatten(raw_dir=root / "raw", flat_dir=root / "flat")

    return built_once(tmp_path_factory, "mnist", build) / "flat"


@pytest.fixture(scope="session")
def default_params():
    from momentum_sweep.params import load

    return load(ROOT / "params.yaml")


@pytest.fixture(scope="session")
def small_splits(flat_dir, default_params):
    """train (2,500 images), validation (500) and test splits on the CPU."""
    from reference import splits_of

    train = default_params.train.model_copy(update={"max_train_images": 3000,
                                                    "validation_size": 500, "epochs": 2})
    return train, splits_of(train, flat_dir)

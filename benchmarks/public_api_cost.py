"""What the PyTorch step pays for using public operations only: the step as it was before
(commit 8763aa4: torch._log_softmax, torch._log_softmax_backward_data and
torch.ops.aten.threshold_backward) against the current one, 5 models on the same 2,750 batches,
taking turns; the median of --repeats runs each. Needs this repository's git history.

Run from the repository root after `dvc repro flatten`:  python benchmarks/public_api_cost.py
"""

import argparse
import statistics
import subprocess
import time

import momentum_sweep  # noqa: F401  (before torch computes: MKL reproducibility mode)
import torch

from momentum_sweep import params as parameters
from momentum_sweep.data.splits import load_splits
from momentum_sweep.training import model
from momentum_sweep.training.torch_step import TorchStep, neg_onehot, with_ones

BEFORE = "8763aa4"
MOMENTA = [0.0, 0.1, 0.2, 0.4, 0.5]


def previous_step_class():
    """StackedMLPs as committed at BEFORE, with its package imports resolved here."""
    source = subprocess.run(["git", "show", f"{BEFORE}:src/momentum_sweep/trainer.py"],
                            check=True, text=True, stdout=subprocess.PIPE).stdout
    source = source.replace("from .model import INPUTS, layer_sizes",
                            "from momentum_sweep.training.model import layer_sizes\nINPUTS = 784")
    namespace = {"__name__": "previous_trainer"}
    exec(compile(source, f"{BEFORE}:trainer.py", "exec"), namespace)
    return namespace["StackedMLPs"]


def time_steps(step, inputs, targets):
    started = time.perf_counter()
    for x, t in zip(inputs, targets):
        step(x, t)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    p = parameters.load()
    train = load_splits(p.train, torch.device("cpu"))["train"]
    state = model.initial_state(p.model.hidden, p.train.seed)
    batches = torch.randperm(len(train), generator=torch.Generator().manual_seed(0)).split(
        p.train.batch_size)
    inputs = [with_ones(train.images[b]) for b in batches]          # [B, 800] each
    onehots = [neg_onehot(train.labels[b]) for b in batches]         # [B, 10] each
    K = len(MOMENTA)
    Previous = previous_step_class()
    times = {"before": [], "now": []}
    for _ in range(args.repeats):
        before = Previous(p.model.hidden, state, MOMENTA, "cpu")
        times["before"].append(time_steps(lambda x, t: before.step(x, t, p.train.lr),
                                          inputs, onehots))
        now = TorchStep(p.model.hidden, [state] * K, MOMENTA, [p.train.lr] * K, [(0, K)], "cpu")
        times["now"].append(time_steps(lambda x, t: now.step(x[None], t.expand(K, -1, -1)),
                                       inputs, onehots))
    before, now = statistics.median(times["before"]), statistics.median(times["now"])
    print(f"PyTorch step, {K} models, {len(batches)} steps (median of {args.repeats}): "
          f"private operations ({BEFORE}) {before / K:.3f} s, public operations {now / K:.3f} s "
          f"per model-epoch: {now / before:.2f}x")


if __name__ == "__main__":
    main()

"""Seconds per model-epoch, side by side in one run on the same machine and the same data.

  notebook   the notebook's loop: torchvision MNIST + DataLoader with ToTensor and a flatten per
             image, one model at a time;
  plain      a plain loop over a pre-loaded tensor with torch.optim.SGD, one model at a time;
  torch K=k  this project's PyTorch step, k models in one pass (the path on CUDA);
  native K=k this project's native CPU step, k models in one pass (the path on the CPU).

The k models are the default params.yaml's arms, replicate after replicate (K = 45 is the
default sweep: 9 arms x 5 replicates). Everything else (learning rate, batch, network, data)
comes from params.yaml. Each variant runs in its own process, so its peak resident memory is its
own; the variants take turns, --repeats times, and the median is printed, since a shared
machine's speed drifts. Also printed: the arithmetic floors of one model-epoch at this machine's
measured multiply rate, dense and counting only the pixels that are non-zero; the native step at
the default K with one busy process beside it; and, with --stage, the train stage itself.

Run from the repository root after `dvc repro flatten`:  python benchmarks/train_speed.py
"""

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import momentum_sweep  # noqa: F401  (before torch computes: MKL reproducibility mode)
import torch

from momentum_sweep import params as parameters
from momentum_sweep.data.mnist import PIXELS
from momentum_sweep.data.splits import Split, load_splits, scaled, split_indices
from momentum_sweep.training import arms, model, trainer
from momentum_sweep.training.device import peak_rss_mib

P = parameters.load()
SIZES = model.layer_sizes(P.model.hidden)
K_VALUES = (1, 5, 25, 45, 100)
DEFAULT_K = len(arms.models(P))


def keys(k):
    """The first k models of the default sweep, with as many replicates as that takes."""
    per_replicate = len(arms.arms(P))
    more = P.model_copy(update={"train": P.train.model_copy(
        update={"replicates": math.ceil(k / per_replicate)})})
    return arms.models(more)[:k]


def notebook_loop(epochs):
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    with tempfile.TemporaryDirectory() as root:
        (Path(root) / "MNIST" / "raw").mkdir(parents=True)
        for f in Path("data/raw").iterdir():
            os.symlink(f.resolve(), Path(root) / "MNIST" / "raw" / f.name)
        transform = transforms.Compose([transforms.ToTensor(),
                                        transforms.Lambda(lambda x: x.view(-1))])
        dataset = datasets.MNIST(root=root, train=True, transform=transform, download=False)
        train_idx, _ = split_indices(P.train)
        loader = DataLoader(Subset(dataset, train_idx.tolist()), batch_size=P.train.batch_size)
        net = model.MLP(P.model.hidden)
        optimizer = torch.optim.SGD(net.parameters(), lr=P.train.lr, momentum=0.1)
        started = time.perf_counter()
        for _ in range(epochs):
            for x, y in loader:
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(net(x), y).backward()
                optimizer.step()
        return (time.perf_counter() - started) / epochs


def plain_loop(epochs):
    train = load_splits(P.train, torch.device("cpu"))["train"]
    images = scaled(train.images)
    net = model.MLP(P.model.hidden)
    optimizer = torch.optim.SGD(net.parameters(), lr=P.train.lr, momentum=0.1)
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    for _ in range(epochs):
        for batch in torch.randperm(len(train), generator=generator).split(P.train.batch_size):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(images[batch]), train.labels[batch]).backward()
            optimizer.step()
    return (time.perf_counter() - started) / epochs


def project_step(implementation, k, epochs):
    splits = load_splits(P.train, torch.device("cpu"))
    # Load the compiled kernels (or compile them) before the clock starts: a tiny pass.
    tiny = {**splits, "train": Split(splits["train"].images[:40], splits["train"].labels[:40])}
    trainer.make_trainer(implementation, keys(1), P.model.hidden, P.train, tiny,
                         torch.device("cpu")).train_epoch()
    t = trainer.make_trainer(implementation, keys(k), P.model.hidden,
                             P.train.model_copy(update={"epochs": epochs}), splits,
                             torch.device("cpu"))
    started = time.perf_counter()
    for _ in range(epochs):
        t.train_epoch()
    return (time.perf_counter() - started) / epochs / k


def variants():
    found = {"notebook": ("notebook loop (DataLoader, per-image transforms)", notebook_loop),
             "plain": ("plain pre-loaded loop, torch.optim.SGD", plain_loop)}
    for implementation in ("torch", "native"):
        for k in K_VALUES:
            found[f"{implementation}-{k}"] = (
                f"{'PyTorch' if implementation == 'torch' else 'native'} step, K = {k}",
                lambda epochs, i=implementation, k=k: project_step(i, k, epochs))
    return found


VARIANTS = variants()


def measure_one(variant, epochs):
    """Child process: one variant, its seconds per model-epoch and its peak memory."""
    seconds = VARIANTS[variant][1](epochs)
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak_rss_mib()}))


def measure(variant, epochs):
    out = subprocess.run([sys.executable, __file__, "--child", variant, "--epochs", str(epochs)],
                         check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_in_turns(names, epochs, repeats, runs=None):
    """Each variant ``repeats`` times, taking turns; {variant: [figures of each run]}, added to
    ``runs`` when given."""
    runs = runs or {v: [] for v in names}
    for _ in range(repeats):
        for v in names:
            runs[v].append(measure(v, epochs))
    return runs


def busy_neighbour():
    """A process that keeps one CPU busy until it is killed."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def under_load(variant, epochs, repeats):
    """The variant quiet and with one busy process beside it, taking turns: median seconds."""
    quiet, busy = [], []
    for _ in range(repeats):
        quiet.append(measure(variant, epochs)["seconds"])
        neighbour = busy_neighbour()
        try:
            busy.append(measure(variant, epochs)["seconds"])
        finally:
            neighbour.kill()
            neighbour.wait()
    return statistics.median(quiet), statistics.median(busy)


def matmul_gflops():
    """This machine's float32 multiply rate, as the PyTorch step sees it (all its threads)."""
    a = torch.randn(1024, 1024)
    for _ in range(3):
        a @ a
    started, runs = time.perf_counter(), 20
    for _ in range(runs):
        a @ a
    return 2 * 1024 ** 3 * runs / (time.perf_counter() - started) / 1e9


def flops_per_model_epoch(first_layer_inputs):
    """Forward and backward of one model-epoch: the first layer's forward and weight gradient
    over ``first_layer_inputs`` inputs per image, the later layers' forward and both gradients."""
    first = 2 * 2 * first_layer_inputs * SIZES[1]
    later = 3 * 2 * sum(a * b for a, b in zip(SIZES[1:], SIZES[2:]))
    return (first + later) * P.train.train_size


def nonzero_pixels_per_image():
    train = load_splits(P.train, torch.device("cpu"))["train"]
    return (train.images != 0).sum().item() / len(train)


def train_stage_run():
    """`python src/run_stage.py train` on the default params from flattened data, nothing to
    reuse, in a copy of the repository; returns (seconds, the peak resident memory its models'
    timing.json record in MiB, its log)."""
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("src", "params.yaml"):
            (shutil.copytree if Path(name).is_dir() else shutil.copy)(name, Path(tmp) / name)
        shutil.copytree("data/flat", Path(tmp) / "data" / "flat")
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "src/run_stage.py", "train"], cwd=tmp, check=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seconds = time.perf_counter() - started
        peak = max(epoch["cpu_peak_rss_mib"]
                   for timing in Path(tmp, "models").glob("*/*/timing.json")
                   for epoch in json.loads(timing.read_text())["epochs"])
        return seconds, peak, out.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1, help="epochs per variant (default 1)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per variant, taking turns; the median is printed (default 3)")
    parser.add_argument("--stage", action="store_true",
                        help="also time the train stage on the default params (10 epochs)")
    parser.add_argument("--child", choices=VARIANTS)
    args = parser.parse_args()
    if args.child:
        return measure_one(args.child, args.epochs)

    nonzero = nonzero_pixels_per_image()
    names = list(VARIANTS)
    rates = []
    results = {}
    for _ in range(args.repeats):  # the multiply rate too is measured in turn with the variants
        rates.append(matmul_gflops())
        results = measure_in_turns(names, args.epochs, 1, results)
    rate = statistics.median(rates)
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; "
          + (f"GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "no GPU"))
    dense = flops_per_model_epoch(PIXELS) / (rate * 1e9)
    sparse = flops_per_model_epoch(nonzero) / (rate * 1e9)
    print(f"multiply rate: {rate:.0f} GFLOP/s (1024x1024 float32 matmul, all threads; median of "
          f"{args.repeats}, taken in turn with the variants)")
    print(f"arithmetic floor per model-epoch: dense {dense:.3f} s; counting only the "
          f"{nonzero:.0f} non-zero pixels of an image (of {PIXELS}) {sparse:.3f} s")

    results = {v: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
               for v, runs in results.items()}
    print(f"\ncpu: seconds per model-epoch ({P.train.train_size:,} images, batch "
          f"{P.train.batch_size}, {args.epochs} epoch(s) each; median of {args.repeats} runs "
          f"per variant, taking turns)")
    print(f"  {'variant':<50} {'s/model-epoch':>14} {'peak RSS MiB':>13}")
    for v in names:
        print(f"  {VARIANTS[v][0]:<50} {results[v]['seconds']:>14.3f} "
              f"{results[v]['peak_rss_mib']:>13.0f}")
    default = results[f"native-{DEFAULT_K}"]["seconds"] if DEFAULT_K in K_VALUES else None
    if default:
        print(f"  at the default K = {DEFAULT_K}: notebook / native = "
              f"{results['notebook']['seconds'] / default:.1f}x, plain / native = "
              f"{results['plain']['seconds'] / default:.1f}x, PyTorch step / native = "
              f"{results[f'torch-{DEFAULT_K}']['seconds'] / default:.1f}x; native / sparse "
              f"floor = {default / sparse:.1f}x")
        quiet, busy = under_load(f"native-{DEFAULT_K}", args.epochs, args.repeats)
        print(f"\nnative step, K = {DEFAULT_K}, with one busy process beside it: {busy:.3f} s "
              f"against {quiet:.3f} s quiet = {busy / quiet:.2f}x")
    if args.stage:
        seconds, peak, log = train_stage_run()
        print(f"\ntrain stage, default params ({DEFAULT_K} models, {P.train.epochs} epochs) from "
              f"flattened data, nothing reused: {seconds:.1f} s, peak RSS {peak:.0f} MiB")
        print("  " + "\n  ".join(line for line in log.splitlines() if "epoch  " in line))


if __name__ == "__main__":
    main()

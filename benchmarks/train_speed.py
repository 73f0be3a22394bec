"""Seconds per model-epoch, side by side in one run on the same machine and the same data:

  (a) the notebook's loop: torchvision MNIST + DataLoader with ToTensor and a flatten per image,
      one model at a time, batch 20;
  (b) a plain loop over a pre-loaded tensor with torch.optim.SGD, one model at a time;
  (c) this project's trainer: the default five momenta together in one pass.

Each variant runs in its own process, so its peak resident memory is its own; the variants take
turns, --repeats times, and the median is printed, since a shared machine's speed drifts. Also
printed: the FLOP floor, the arithmetic of one model-epoch at this machine's measured
matrix-multiply rate, and the first-layer floor, the four full passes over the first layer that
every step of (c) makes, timed alone.
Run from the repository root after `dvc repro flatten`:  python benchmarks/train_speed.py
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import momentum_sweep  # noqa: F401  (before torch computes: MKL reproducibility mode)
import torch

from momentum_sweep import data, model, trainer
from momentum_sweep.device import MemoryProbe
from momentum_sweep.params import TrainParams

MOMENTA = [0.0, 0.1, 0.2, 0.4, 0.5]
TRAIN = TrainParams()  # the defaults: 55,000 training images, batch 20, lr 0.1


def notebook_loop(device, epochs):
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    with tempfile.TemporaryDirectory() as root:
        (Path(root) / "MNIST" / "raw").mkdir(parents=True)
        for f in Path("data/raw").iterdir():
            os.symlink(f.resolve(), Path(root) / "MNIST" / "raw" / f.name)
        transform = transforms.Compose([transforms.ToTensor(),
                                        transforms.Lambda(lambda x: x.view(-1))])
        dataset = datasets.MNIST(root=root, train=True, transform=transform, download=False)
        train_idx, _ = data.split_indices(TRAIN)
        loader = DataLoader(Subset(dataset, train_idx.tolist()), batch_size=TRAIN.batch_size)
        net = model.MLP([50, 50]).to(device)
        optimizer = torch.optim.SGD(net.parameters(), lr=TRAIN.lr, momentum=0.1)
        started = time.perf_counter()
        for _ in range(epochs):
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(net(x), y).backward()
                optimizer.step()
        synchronize(device)
        return (time.perf_counter() - started) / epochs


def plain_loop(device, epochs):
    train = data.load_splits(TRAIN, device)["train"]
    net = model.MLP([50, 50]).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=TRAIN.lr, momentum=0.1)
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(train), generator=generator).to(device)
        for start in range(0, len(train), TRAIN.batch_size):
            batch = order[start:start + TRAIN.batch_size]
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(train.images[batch]),
                                              train.labels[batch]).backward()
            optimizer.step()
    synchronize(device)
    return (time.perf_counter() - started) / epochs


def project_trainer(device, epochs):
    splits = data.load_splits(TRAIN, device)
    initial = model.initial_state([50, 50], TRAIN.seed)
    params = TRAIN.model_copy(update={"epochs": epochs})
    seconds = [stats.train_seconds for _, stats in trainer.train_together(
        MOMENTA, initial, [50, 50], params, splits, MemoryProbe(device))]
    return sum(seconds) / len(seconds) / len(MOMENTA)


VARIANTS = {"a": ("notebook loop (DataLoader, per-image transforms)", notebook_loop),
            "b": ("plain pre-loaded loop, torch.optim.SGD", plain_loop),
            "c": ("this project's trainer, 5 momenta in one pass", project_trainer)}


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops():
    a = torch.randn(1024, 1024)
    for _ in range(3):
        a @ a
    started, runs = time.perf_counter(), 20
    for _ in range(runs):
        a @ a
    return 2 * 1024 ** 3 * runs / (time.perf_counter() - started) / 1e9


def first_layer_floor(models=len(MOMENTA), hidden=50):
    """Seconds per model-epoch of the first-layer work each step of (c) cannot skip: the forward
    and gradient matrix multiplies, the momentum decay and the weight update, at (c)'s shapes."""
    batch = TRAIN.batch_size
    inputs = torch.rand(batch, trainer.PADDED_INPUTS)
    weights = torch.randn(models * hidden, trainer.PADDED_INPUTS)
    velocity = torch.zeros_like(weights)
    grad = torch.randn(models * hidden, batch)
    mu = torch.rand_like(weights)

    def passes():
        velocity.mul_(mu)
        torch.mm(inputs, weights.T)
        velocity.addmm_(grad, inputs, alpha=0.01)
        weights.sub_(velocity)

    steps = TRAIN.train_size // batch
    for _ in range(100):
        passes()
    started = time.perf_counter()
    for _ in range(steps):
        passes()
    return (time.perf_counter() - started) / models


def flops_per_model_epoch():
    """Forward and backward (weight gradients and the inputs' of the later layers) of one epoch."""
    sizes = [784, 50, 50, 10]
    macs = sum(a * b for a, b in zip(sizes, sizes[1:]))
    return 3 * 2 * macs * TRAIN.train_size


def measure_one(variant, device, epochs):
    """Child process: one variant, its seconds per model-epoch and its peak memory."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = VARIANTS[variant][1](device, epochs)
    result = {"seconds": seconds,
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        result["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
    print(json.dumps(result))


def measure(variant, device, epochs):
    out = subprocess.run([sys.executable, __file__, "--child", variant, "--device", device,
                          "--epochs", str(epochs)], check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_in_turns(device, epochs, repeats):
    """Each variant ``repeats`` times, taking turns; per variant the median of every figure."""
    runs = {v: [] for v in VARIANTS}
    for _ in range(repeats):
        for v in VARIANTS:
            runs[v].append(measure(v, device, epochs))
    return {v: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
            for v, rs in runs.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1, help="epochs per variant (default 1)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per variant, taking turns; the median is printed (default 3)")
    parser.add_argument("--child", choices=VARIANTS)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    if args.child:
        return measure_one(args.child, args.device, args.epochs)

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rate = matmul_gflops()
    floor = flops_per_model_epoch() / (rate * 1e9)
    first_layer = first_layer_floor()
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; "
          + (f"GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "no GPU"))
    print(f"FLOP floor (CPU): {flops_per_model_epoch() / 1e9:.1f} GFLOP per model-epoch at a "
          f"measured {rate:.0f} GFLOP/s (1024x1024 matmul) = {floor:.3f} s")
    print(f"first-layer floor (CPU): (c)'s two first-layer matrix multiplies and two momentum "
          f"passes alone = {first_layer:.3f} s per model-epoch")
    for device in devices:
        results = measure_in_turns(device, args.epochs, args.repeats)
        print(f"\n{device}: seconds per model-epoch (55,000 images, batch 20, {args.epochs} "
              f"epoch(s) each; median of {args.repeats} runs per variant, taking turns)")
        print(f"  {'variant':<52} {'s/model-epoch':>14} {'peak RSS MiB':>13}"
              + ("  CUDA peak MiB" if device == "cuda" else ""))
        for v, (label, _) in VARIANTS.items():
            r = results[v]
            print(f"  ({v}) {label:<48} {r['seconds']:>14.3f} {r['peak_rss_mib']:>13.0f}"
                  + (f" {r['cuda_peak_mib']:>14.0f}" if device == "cuda" else ""))
        c = results["c"]["seconds"]
        print(f"  (a)/(c) = {results['a']['seconds'] / c:.1f}x   "
              f"(b)/(c) = {results['b']['seconds'] / c:.1f}x"
              + (f"   (c)/floor = {c / floor:.1f}x   (c)/first-layer floor = "
                 f"{c / first_layer:.1f}x" if device == "cpu" else ""))


if __name__ == "__main__":
    main()

"""Seconds per model-epoch, side by side in one run on the same machine and the same data.

  notebook   the notebook's loop: torchvision MNIST + DataLoader with ToTensor and a flatten per
             image, one model at a time;
  plain      a plain loop over a pre-loaded tensor with torch.optim.SGD, one model at a time;
  vmap K=k   what a PyTorch user writes to train k models at once: torch.func's
             stack_module_state and vmap over functional_call, with a functional SGD update;
  torch K=k  this project's PyTorch step, k models in one pass (the path on CUDA);
  native K=k this project's native CPU step, k models in the train stage's passes (the path on
             the CPU);
  ... batch b the same at batch size b (1024 and 8192: where momentum starts to matter), so that
             the step ``train.step: auto`` picks on the CPU is shown to be the faster there
             (with --device cuda, the PyTorch step's variants run on the GPU).

The k models are the default params.yaml's arms, replicate after replicate (K = 45 is the
default sweep: 9 arms x 5 replicates; K = 400 is 20 arms x 20 replicates, four learning rates'
worth). Everything else (learning rate, batch, network, data) comes from params.yaml (its first
batch size). Each variant runs in its own process, so its peak resident memory is its
own; the variants take turns, --repeats times, and the median is printed, since a shared
machine's speed drifts. Also printed: the arithmetic floors of one model-epoch at this machine's
measured multiply rate, dense and counting only the pixels that are non-zero; what evaluating an
image costs against training on one (it sets how often a target run may evaluate); the native
step at the default K with one busy process beside it; with --stage, the train stage itself; and
with --memory, the train stage's peak resident memory as train.replicates grows.

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
from momentum_sweep.data.splits import Folds, Split, load_folds, scaled, split_indices
from momentum_sweep.vocabulary import arms
from momentum_sweep.vocabulary.schedule import Schedule
from momentum_sweep.training import batches, model, train, trainer
from momentum_sweep.training.device import peak_rss_mib

P = parameters.load()
SIZES = model.layer_sizes(P.model.hidden)
BATCH = P.train.batch_sizes[0]
K_VALUES = {"torch": (1, 5, 25, 45, 100), "native": (1, 5, 25, 45, 100, 400)}
VMAP_K = (45, 400)
DEFAULT_K = len(arms.models(P))
LARGE_BATCHES = (1024, 8192)
MEMORY_REPLICATES = (5, 20, 100)


def keys(k, batch=BATCH):
    """The first k models of the default sweep at one batch size, with as many replicates as
    that takes."""
    train = P.train.model_copy(update={"batch_size": batch})
    per_replicate = len(arms.arms(P.model_copy(update={"train": train})))
    more = P.model_copy(update={"train": train.model_copy(
        update={"replicates": math.ceil(k / per_replicate)})})
    return arms.models(more)[:k]


def train_rows():
    """The training split of a model validating on fold 0."""
    folds = load_folds(P.train, torch.device("cpu"))
    rows = folds.train_rows(0)
    return Split(folds.pool.images[rows], folds.pool.labels[rows])


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
        loader = DataLoader(Subset(dataset, train_idx.tolist()), batch_size=BATCH)
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
    train = train_rows()
    images = scaled(train.images)
    net = model.MLP(P.model.hidden)
    optimizer = torch.optim.SGD(net.parameters(), lr=P.train.lr, momentum=0.1)
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    for _ in range(epochs):
        for batch in torch.randperm(len(train), generator=generator).split(BATCH):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(images[batch]), train.labels[batch]).backward()
            optimizer.step()
    return (time.perf_counter() - started) / epochs


# The device the PyTorch step runs on (--device; the native step runs on the CPU).
DEVICE = torch.device(os.environ.get("BENCHMARK_DEVICE", "cpu"))


def device_of(implementation):
    return DEVICE if implementation == "torch" else torch.device("cpu")


def one_pass(implementation, keys_of_pass, train_params, folds):
    schedule = Schedule.of(train_params, keys_of_pass[0].arm.batch_size)
    return trainer.make_trainer(implementation, keys_of_pass, P.model.hidden, train_params,
                                schedule, folds, device_of(implementation))


def project_step(implementation, k, epochs, batch=BATCH):
    folds = load_folds(P.train, device_of(implementation))
    train_params = P.train.model_copy(update={"epochs": epochs, "batch_size": batch,
                                              "min_steps": 0, "target": None})
    # Load the compiled kernels (or compile them) before the clock starts: a tiny pass.
    few = Split(folds.pool.images[:2 * batch], folds.pool.labels[:2 * batch])
    tiny = train_params.model_copy(update={"max_train_images": 2 * batch,
                                           "validation_size": batch, "epochs": 1})
    warm = one_pass(implementation, keys(1, batch), tiny, Folds(few, batch, 1, few))
    warm.train_until(warm.schedule.steps_per_epoch)
    warm.close()
    # the native step as the stage runs it, in passes; the PyTorch step in one (as on CUDA)
    chosen = keys(k, batch)
    p = P.model_copy(update={"train": train_params})
    planned = ([each.keys for each in train.passes(chosen, implementation, p,
                                                    train.schedules_of(p))]
               if implementation == "native" else [chosen])
    per_epoch = Schedule.of(train_params, batch).steps_per_epoch
    started = time.perf_counter()
    for keys_of_pass in planned:
        t = one_pass(implementation, keys_of_pass, train_params, folds)
        for epoch in range(1, epochs + 1):
            t.train_until(epoch * per_epoch)
        t.close()
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / epochs / k


def evaluation_cost(epochs):
    """Seconds to evaluate one image over seconds to train on one, the native step, K = 45."""
    folds = load_folds(P.train, torch.device("cpu"))
    train_params = P.train.model_copy(update={"epochs": epochs})
    t = one_pass("native", keys(DEFAULT_K), train_params, folds)
    per_epoch = t.schedule.steps_per_epoch
    t.train_until(per_epoch)  # the first epoch builds its batches before training
    started = time.perf_counter()
    t.train_until(2 * per_epoch)
    training = (time.perf_counter() - started) / P.train.train_size
    started = time.perf_counter()
    t.evaluate_validation(range(DEFAULT_K))
    evaluating = (time.perf_counter() - started) / P.train.validation_size
    t.close()
    return evaluating / training


def vmap_step(k, epochs):
    """k models with torch.func: parameters stacked [K, ...], one vmapped gradient per step,
    each model on its replicate's batch, and SGD with momentum (PyTorch's rule) by hand."""
    from torch.func import functional_call, grad_and_value, stack_module_state, vmap

    folds = load_folds(P.train, torch.device("cpu"))
    chosen = keys(k)
    layout = batches.Replicates.of(chosen, P.model.hidden, P.train, folds)
    nets = [model.MLP(P.model.hidden) for _ in chosen]
    for net, state in zip(nets, layout.initial):
        net.load_state_dict(state)
    params, buffers = stack_module_state(nets)                      # each [K, *shape]
    base = model.MLP(P.model.hidden).to("meta")

    def loss(p, b, x, y):
        return torch.nn.functional.cross_entropy(functional_call(base, (p, b), (x,)), y)

    step = vmap(grad_and_value(loss))
    mu = torch.tensor([key.arm.sgd_momentum for key in chosen])     # [K]
    lr = torch.tensor([key.arm.sgd_lr for key in chosen])           # [K]
    velocity = {name: torch.zeros_like(p) for name, p in params.items()}
    group_of = torch.tensor(layout.group_of)                        # [K]
    started = time.perf_counter()
    for _ in range(epochs):
        orders = layout.orders.next_epoch()[group_of]               # [K, N]
        for start in range(0, orders.shape[1], BATCH):
            rows = orders[:, start:start + BATCH]                   # [K, B]
            x = scaled(folds.pool.images[rows])                     # [K, B, 784]
            grads, _ = step(params, buffers, x, folds.pool.labels[rows])
            with torch.no_grad():
                for name, g in grads.items():
                    shape = (-1,) + (1,) * (g.dim() - 1)
                    velocity[name].mul_(mu.view(shape)).add_(g)     # buf = mu*buf + grad
                    params[name].sub_(lr.view(shape) * velocity[name])  # p -= lr*buf
    return (time.perf_counter() - started) / epochs / k


def variants():
    found = {"notebook": ("notebook loop (DataLoader, per-image transforms)", notebook_loop),
             "plain": ("plain pre-loaded loop, torch.optim.SGD", plain_loop)}
    for k in VMAP_K:
        found[f"vmap-{k}"] = (f"torch.func vmap + functional SGD, K = {k}",
                              lambda epochs, k=k: vmap_step(k, epochs))
    for implementation, k_values in K_VALUES.items():
        for k in k_values:
            found[f"{implementation}-{k}"] = (
                f"{'PyTorch' if implementation == 'torch' else 'native'} step, K = {k}",
                lambda epochs, i=implementation, k=k: project_step(i, k, epochs))
    for batch in LARGE_BATCHES:
        for implementation in K_VALUES:
            found[f"{implementation}-batch-{batch}"] = (
                f"{'PyTorch' if implementation == 'torch' else 'native'} step, K = {DEFAULT_K}, "
                f"batch {batch}",
                lambda epochs, i=implementation, b=batch: project_step(i, DEFAULT_K, epochs, b))
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
    train = train_rows()
    return (train.images != 0).sum().item() / len(train)


def train_stage_run(**train_changes):
    """`python src/run_stage.py train` on the default params (with ``train_changes``) from
    flattened data, nothing to reuse, in a copy of the repository; returns (seconds, the peak
    resident memory its models' timing.json record in MiB, its log)."""
    from ruamel.yaml import YAML

    with tempfile.TemporaryDirectory() as tmp:
        for name in ("src", "params.yaml"):
            (shutil.copytree if Path(name).is_dir() else shutil.copy)(name, Path(tmp) / name)
        yaml = YAML()
        changed = yaml.load(Path("params.yaml").read_text())
        changed["train"].update(train_changes)
        with open(Path(tmp) / "params.yaml", "w") as f:
            yaml.dump(changed, f)
        shutil.copytree("data/flat", Path(tmp) / "data" / "flat")
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "src/run_stage.py", "train"], cwd=tmp, check=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seconds = time.perf_counter() - started
        peak = max(evaluation["cpu_peak_rss_mib"]
                   for timing in Path(tmp, "models").glob("*/*/timing.json")
                   for evaluation in json.loads(timing.read_text())["evaluations"])
        return seconds, peak, out.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1, help="epochs per variant (default 1)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per variant, taking turns; the median is printed (default 3)")
    parser.add_argument("--stage", action="store_true",
                        help="also time the train stage on the default params (10 epochs)")
    parser.add_argument("--memory", action="store_true",
                        help="also the train stage's peak memory at train.replicates "
                             f"{', '.join(map(str, MEMORY_REPLICATES))} (1 epoch each)")
    parser.add_argument("--only", nargs="+", choices=VARIANTS, metavar="VARIANT",
                        help=f"run only these variants (of {', '.join(VARIANTS)})")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the PyTorch step's variants run (default cpu)")
    parser.add_argument("--child", choices=VARIANTS)
    args = parser.parse_args()
    os.environ["BENCHMARK_DEVICE"] = args.device  # the children's, too
    if args.child:
        return measure_one(args.child, args.epochs)

    nonzero = nonzero_pixels_per_image()
    names = args.only or list(VARIANTS)
    rates = []
    results = {}
    for _ in range(args.repeats):  # the multiply rate too is measured in turn with the variants
        rates.append(matmul_gflops())
        results = measure_in_turns(names, args.epochs, 1, results)
    rate = statistics.median(rates)
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; "
          + (f"GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "no GPU")
          + f"; the PyTorch step on {args.device}")
    dense = flops_per_model_epoch(PIXELS) / (rate * 1e9)
    sparse = flops_per_model_epoch(nonzero) / (rate * 1e9)
    print(f"multiply rate: {rate:.0f} GFLOP/s (1024x1024 float32 matmul, all threads; median of "
          f"{args.repeats}, taken in turn with the variants)")
    print(f"arithmetic floor per model-epoch: dense {dense:.3f} s; counting only the "
          f"{nonzero:.0f} non-zero pixels of an image (of {PIXELS}) {sparse:.3f} s")

    results = {v: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
               for v, runs in results.items()}
    print(f"\ncpu: seconds per model-epoch ({P.train.train_size:,} images, batch "
          f"{BATCH} unless said, {args.epochs} epoch(s) each; median of {args.repeats} runs "
          f"per variant, taking turns)")
    print(f"  {'variant':<50} {'s/model-epoch':>14} {'peak RSS MiB':>13}")
    for v in names:
        print(f"  {VARIANTS[v][0]:<50} {results[v]['seconds']:>14.3f} "
              f"{results[v]['peak_rss_mib']:>13.0f}")
    default = results.get(f"native-{DEFAULT_K}", {}).get("seconds")
    if default and "native-400" in results:
        print(f"  native K = 400 / K = {DEFAULT_K} per model-epoch: "
              f"{results['native-400']['seconds'] / default:.2f}x")
    if default and all(f"vmap-{k}" in results for k in VMAP_K):
        print("  vmap / native: " + ", ".join(
            f"K = {k}: {results[f'vmap-{k}']['seconds'] / results[f'native-{k}']['seconds']:.1f}x"
            for k in VMAP_K if f"native-{k}" in results))
    if default:
        print(f"  evaluating an image / training on one (native step, K = {DEFAULT_K}): "
              f"{evaluation_cost(max(args.epochs, 2)):.2f}")
    for batch in LARGE_BATCHES:
        native = results.get(f"native-batch-{batch}", {}).get("seconds")
        pytorch = results.get(f"torch-batch-{batch}", {}).get("seconds")
        if native and pytorch:
            print(f"  at batch {batch}, K = {DEFAULT_K}: PyTorch step / native = "
                  f"{pytorch / native:.1f}x; native / dense floor = {native / dense:.1f}x, "
                  f"PyTorch step / dense floor = {pytorch / dense:.1f}x")
    if default and {"notebook", "plain", f"torch-{DEFAULT_K}"} <= results.keys():
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
        print("  " + "\n  ".join(line for line in log.splitlines() if line.startswith("step ")))
    if args.memory:
        print("\ntrain stage peak resident memory against train.replicates (1 epoch, nothing "
              "reused): streamed in passes, it should not grow")
        for replicates in MEMORY_REPLICATES:
            seconds, peak, log = train_stage_run(replicates=replicates, epochs=1,
                                                 checkpoints=[0, 1])
            models = replicates * len(arms.arms(P))
            passes = max(1, log.count("train: pass "))
            print(f"  replicates {replicates:>3}: {models:>4} models in {passes} pass(es), peak "
                  f"RSS {peak:.0f} MiB, {seconds:.1f} s")


if __name__ == "__main__":
    main()

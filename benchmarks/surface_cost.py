"""What the surface stage costs per model, and the two choices that decide it, side by side in one
run on the same weights (a trained model from models/, the default probe):

  product     one Hessian-vector product: this project's (autograd's double backward through the
              gradient's graph) against curvlinops' HessianLinearOperator (the test extra), as a
              ratio;
  eigsh       one curvature measurement (both extreme eigenvalues, scipy's eigsh) with ARPACK's
              BLAS on one thread, as the stage runs it, against BLAS on its default threads,
              which compete with torch's for the same cores;
  noise       one gradient noise scale on the fold's training images (float32 passes, float64
              sums), as the stage runs it;
  per model   a model's measurements as the stage makes them at the default params, estimated
              from this model's: the curvature and the noise scale at each checkpoint epoch but 0
              (the initial weights are shared by a replicate's arms and measured once), the line
              from its initial weights and its share of the lines between final weights; and the
              total for 45 models.

Each timing is the median of --repeats, taken in turns. Run from the repository root after
`dvc repro train`:  python benchmarks/surface_cost.py
"""

import argparse
import statistics
import time

import momentum_sweep  # noqa: F401  (before torch computes: MKL reproducibility mode)
import numpy as np
import torch
from curvlinops import HessianLinearOperator
from scipy.sparse.linalg import eigsh
from threadpoolctl import threadpool_limits

from momentum_sweep import params as parameters
from momentum_sweep.data import splits
from momentum_sweep.surface import measures
from momentum_sweep.vocabulary import arms
from momentum_sweep.vocabulary.schedule import Schedule
from momentum_sweep.training import results

P = parameters.load()
BATCH = P.train.batch_sizes[0]
# plain SGD's first model: replicate 0, which validates on fold 0, the probe's
FOLDER = results.MODELS_DIR / arms.models(P)[0].name


def median_seconds(function, repeats):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def curvlinops_product(net, images, labels):
    """curvlinops' product, as a function of a float64 vector."""
    operator = HessianLinearOperator(net, torch.nn.CrossEntropyLoss(), list(net.parameters()),
                                     [(images, labels)], check_deterministic=False).to_scipy()
    return lambda v: operator @ v


def eigsh_run(net, images, labels, limit):
    hessian = measures.Hessian(net, images, labels)
    start = np.random.default_rng(0).standard_normal(sum(hessian.sizes))
    with threadpool_limits(limit, user_api="blas"):
        eigsh(hessian.operator(), k=2, which="BE", tol=P.surface.lanczos_tol, v0=start,
              return_eigenvectors=False)
    return hessian.products


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    repeats = parser.parse_args().repeats
    probe = splits.load_probe(splits.probe_indices(P.train, P.surface.probe_size), "cpu")
    images, labels = splits.scaled(probe.images), probe.labels
    net = measures.network(torch.load(FOLDER / "model.pt", weights_only=True), P.model.hidden,
                           "cpu")
    print(f"surface cost on {FOLDER}, probe of {len(labels)} images, "
          f"{torch.get_num_threads()} torch threads")

    hessian = measures.Hessian(net, images, labels)
    v = np.random.default_rng(1).standard_normal(sum(hessian.sizes))
    ours = median_seconds(lambda: hessian.product(v), 10 * repeats)
    theirs = curvlinops_product(net, images, labels)
    theirs(v)  # warm up
    other = median_seconds(lambda: theirs(v), 10 * repeats)
    print(f"product     ours {1000 * ours:.1f} ms, curvlinops {1000 * other:.1f} ms: "
          f"{other / ours:.2f}x ours")

    products = eigsh_run(net, images, labels, 1)
    timings = {limit: [] for limit in (1, None)}
    for _ in range(repeats):  # in turns: the machine's drift touches both alike
        for limit in timings:
            started = time.perf_counter()
            eigsh_run(net, images, labels, limit)
            timings[limit].append(time.perf_counter() - started)
    one, default = (statistics.median(timings[limit]) for limit in (1, None))
    print(f"eigsh       {products} products: BLAS on 1 thread {one:.2f} s, on its default "
          f"threads {default:.2f} s ({default / one:.2f}x)")

    training = splits.load_folds(P.train, "cpu").training(0)
    norms = measures.image_norms(training.images)  # as the stage: once per fold
    once = median_seconds(lambda: measures.image_norms(training.images), repeats)
    noise = median_seconds(
        lambda: measures.noise_scale(net, training.images, training.labels, norms), repeats)
    print(f"noise       {len(training.labels)} training images: {noise:.2f} s, after their "
          f"norms ({once:.2f} s, once per fold)")

    start = torch.load(FOLDER / "checkpoints.pt", weights_only=True)[0]
    final = net.state_dict()
    line_seconds = median_seconds(lambda: measures.line(start, final, P.model.hidden,
                                                        P.surface.line_points, images, labels,
                                                        "cpu"), repeats)
    checkpoints = Schedule.of(P.train, BATCH).checkpoints
    epochs = [e for e in checkpoints if e > 0]
    # A model's share of the lines between final weights: one per listed arm above momentum 0
    # against momentum 0 and one against its control, among the replicate's arms.
    per_replicate = len(arms.arms(P))
    lines = 2 * len([a for a in arms.arms(P) if not a.control and a.momentum > 0])
    share = lines / per_replicate
    per_model = len(epochs) * (one + noise) + (1 + share) * line_seconds
    shared = (one + noise) / per_replicate if 0 in checkpoints else 0.0  # epoch 0
    models = len(arms.models(P))
    print(f"per model   {len(epochs)} curvature and noise measurement(s) "
          f"({', '.join(map(str, epochs))}) "
          f"+ {1 + share:.2f} lines of {P.surface.line_points} points ({line_seconds:.3f} s "
          f"each): {per_model + shared:.2f} s; {models} models: "
          f"{models * (per_model + shared):.0f} s")


if __name__ == "__main__":
    main()

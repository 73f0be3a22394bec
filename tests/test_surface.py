"""The surface stage's measures, against exact references: the explicit Hessian, planted curves
and lines; and its statistics on planted measurements."""

import numpy as np
import pytest
import torch

import json
import warnings

from momentum_sweep.analysis import statistics
from momentum_sweep.data import splits as data_splits
from momentum_sweep.surface import figures, measures, summary
from momentum_sweep.surface.cache import SurfaceCache, seal
from momentum_sweep.vocabulary.arms import Arm, ModelKey, line_key
from momentum_sweep.training.model import MLP, initial_state

TINY = [3]  # 784-3-10: 2,395 parameters, small enough for the explicit Hessian


@pytest.fixture(scope="module")
def probe(small_splits):
    _, splits = small_splits
    return data_splits.scaled(splits["train"].images[:64]), splits["train"].labels[:64]


def flat_loss(net, images, labels):
    """The probe's loss as a function of all parameters flattened, in ``parameters()`` order."""
    names = [name for name, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    sizes = [p.numel() for p in net.parameters()]

    def loss(flat):
        params = {n: c.view(s) for n, c, s in zip(names, flat.split(sizes), shapes)}
        logits = torch.func.functional_call(net, params, (images,))
        return torch.nn.functional.cross_entropy(logits, labels)

    return loss, torch.cat([p.detach().reshape(-1) for p in net.parameters()])


@pytest.mark.parametrize("scale", [1.0, 0.1])
def test_hessian_products_and_extreme_eigenvalues_equal_the_explicit_hessians(probe, scale):
    images, labels = probe
    net = measures.network(initial_state(TINY, 5, scale), TINY, "cpu")
    loss, flat = flat_loss(net, images, labels)
    explicit = torch.autograd.functional.hessian(loss, flat, vectorize=True)         # [P, P]
    explicit = explicit.double().numpy()
    hessian = measures.Hessian(net, images, labels)
    rng = np.random.default_rng(0)
    for _ in range(3):
        v = rng.standard_normal(len(flat))
        expected = explicit @ v
        assert np.linalg.norm(hessian.product(v) - expected) <= 1e-4 * np.linalg.norm(expected)
    eigenvalues = np.linalg.eigvalsh(explicit)
    found = measures.curvature(net, images, labels, tol=1e-8, maxiter=10_000)
    spread = eigenvalues[-1] - eigenvalues[0]
    assert found["converged"] and eigenvalues[0] < 0 < eigenvalues[-1]  # a saddle, both ends
    assert found["lambda_max"] == pytest.approx(eigenvalues[-1], abs=1e-4 * spread)
    assert found["lambda_min"] == pytest.approx(eigenvalues[0], abs=1e-4 * spread)
    gradient = torch.func.grad(loss)(flat).double().norm().item()
    assert found["grad_norm"] == pytest.approx(gradient, rel=1e-5)
    assert found["loss"] == loss(flat).item()


def test_batch_sharpness_is_the_explicit_mini_batch_curvature_along_its_gradient(probe):
    """Each mini-batch's g' H g / |g|^2 from its explicit Hessian and gradient, on the batches
    the same seed draws, averaged."""
    images, labels = probe
    net = measures.network(initial_state(TINY, 5), TINY, "cpu")
    generator = torch.Generator().manual_seed(3)
    expected = []
    for _ in range(4):
        chosen = torch.randperm(len(images), generator=generator)[:8]
        loss, flat = flat_loss(net, images[chosen], labels[chosen])
        hessian = torch.autograd.functional.hessian(loss, flat).double()         # [P, P]
        gradient = torch.func.grad(loss)(flat).double()                          # [P]
        expected.append(float(gradient @ hessian @ gradient / (gradient @ gradient)))
    found = measures.batch_sharpness(net, images, labels, 8, 4, seed=3)
    assert found == pytest.approx(np.mean(expected), rel=1e-4)
    # uint8 images are scaled as training scales them: the same figure
    raw = (images * 255).round().to(torch.uint8)
    assert measures.batch_sharpness(net, raw, labels, 8, 4, seed=3) == pytest.approx(found,
                                                                                   rel=1e-4)


def test_hessian_products_equal_curvlinops(probe):
    """An independent implementation (curvlinops, through torch.func) on the default network."""
    from curvlinops import HessianLinearOperator

    images, labels = probe
    net = measures.network(initial_state([50, 50], 3), [50, 50], "cpu")
    theirs = HessianLinearOperator(net, torch.nn.CrossEntropyLoss(), list(net.parameters()),
                                   [(images, labels)], check_deterministic=False).to_scipy()
    ours = measures.Hessian(net, images, labels)
    for seed in range(3):
        v = np.random.default_rng(seed).standard_normal(ours.operator().shape[0])
        expected = theirs @ v
        assert np.linalg.norm(ours.product(v) - expected) <= 1e-5 * np.linalg.norm(expected)


def test_a_line_starts_and_ends_at_exactly_the_two_ends_losses(probe):
    images, labels = probe
    start, end = initial_state(TINY, 1), initial_state(TINY, 2)
    losses = measures.line(start, end, TINY, 7, images, labels, "cpu")
    assert len(losses) == 7
    for state, loss in ((start, losses[0]), (end, losses[-1])):
        assert loss == measures.probe_loss(measures.network(state, TINY, "cpu"), images, labels)
    middle = {k: (start[k] + end[k]) / 2 for k in start}
    assert losses[3] == pytest.approx(
        measures.probe_loss(measures.network(middle, TINY, "cpu"), images, labels), rel=1e-6)


def test_escape_steps_on_planted_curves():
    curve = [2.3, 2.3, None, 1.0, 0.99, 0.5, 1.2]
    assert measures.escape_step(curve, 25, 1.0, 175) == 125  # the fifth point: first below 1.0
    assert measures.escape_step(curve, 10, 0.4, 70) is None  # never below: reported as None
    assert measures.escape_step([None, 0.5], 25, 1.0, 50) == 50  # a missing point never counts
    assert measures.escape_step([0.5], 7, 1.0, 7) == 7


def test_escape_steps_are_never_more_than_the_steps_trained():
    """A curve's last point may hold fewer steps than the others (loss_every larger than the
    run): escape there is at the last step trained."""
    assert measures.escape_step([0.5], 1000, 1.0, 250) == 250
    assert measures.escape_step([2.0, 0.5], 100, 1.0, 130) == 130


def test_largest_rise_and_barrier_on_planted_lines():
    assert measures.largest_rise([3.0, 2.0, 2.0, 0.5]) == 0.0  # a monotone fall
    assert measures.largest_rise([3.0, 1.0, 2.5, 0.5, 1.0]) == 1.5  # from 1.0 back up to 2.5
    assert measures.barrier([1.0, 2.0, 0.5]) == 2.0 - 0.75
    assert measures.barrier([1.0, 0.9, 0.5]) == 1.0 - 0.75  # the higher end counts as the top


def test_init_scale_one_is_pytorchs_default_init_bit_for_bit():
    torch.manual_seed(11)
    default = MLP([50, 50]).state_dict()
    scaled = initial_state([50, 50], 11, 0.1)
    for name, tensor in initial_state([50, 50], 11).items():
        assert torch.equal(tensor, default[name])
        assert torch.equal(scaled[name], default[name] * 0.1)


def planted_model(key, escape, lambda_max, epochs=(0, 1), loss_every=25):
    return key, {"arm": key.arm.name, "line": line_key(key.arm.line),
        "escape_steps": escape, "train_loss_every": loss_every,
        "line_from_initial": {"largest_rise": 0.0},
        "curvature": [{"epoch": e, "lambda_max": lambda_max, "lambda_min": -0.1, "ratio": -0.1,
                       "grad_norm": 0.2, "sharpness_over_threshold": 0.1, "noise_scale": 500.0,
                       "batch_sharpness": 30.0, "batch_sharpness_over_threshold": 1.5,
                       "batch_sharpness_over_step_edge": 0.75}
                      for e in epochs]}


def test_escape_verdicts_and_never_escaped_on_planted_measurements():
    """Momentum 0.5 escapes 40 or 15 steps sooner than momentum 0 (30 on average) but one model
    never escapes; its control is as fast as it (on average)."""
    zero, half, control = Arm(0.0, 0.1, 20), Arm(0.5, 0.1, 20), Arm(0.5, 0.1, 20, control=True)
    measured = []
    for r in range(6):
        measured += [planted_model(ModelKey(zero, r), 200 + 10 * r, 1.0),
                     planted_model(ModelKey(half, r),
                                   None if r == 5 else 160 + 25 * (r % 2) + 10 * r, 1.0),
                     planted_model(ModelKey(control, r), 150 + 20 * (r % 2) + 10 * r, 1.0)]
    found = summary.summary(measured, [], [zero, half, control], 0.05)
    assert found["headline"]["escape"] == "faster: 0.5"
    assert next(c for c in found["comparisons"] if c["figure"] == "escape_steps"
                and c["family"] == "vs_control")["verdict"] == "no diff"
    entry = next(a for a in found["arms"] if a["arm"] == "momentum_0.5_lr_0.1_batch_20")
    assert entry["escape_steps"]["mean"] == np.mean([160, 195, 180, 215, 200])
    assert entry["never_escaped"] == 1 and entry["escape_steps"]["n"] == 5
    row = next(c for c in found["comparisons"] if c["figure"] == "escape_steps"
               and c["family"] == "vs_zero")
    assert row["n"] == 5 and row["mean_difference"] == -30
    # each escape is known to its curve's 25 steps: the interval holds -30 - 25 to -30 + 25
    assert row["ci"][0] <= -55 and row["ci"][1] >= -5
    # Epoch 0 is never compared: every arm of a replicate starts from the same weights.
    assert {c["figure"] for c in found["comparisons"]} == {
        "escape_steps", "rise_from_initial", "lambda_max_epoch_1", "lambda_min_epoch_1",
        "grad_norm_epoch_1", "sharpness_over_threshold_epoch_1", "noise_scale_epoch_1",
        "batch_sharpness_epoch_1"}


def test_escape_steps_tied_by_the_curves_resolution_give_no_verdict():
    """Every replicate escapes 50 steps sooner, read off a curve of 25-step points: no spread to
    test against (no p of 0), and an interval as wide as the points resolve."""
    zero, half = Arm(0.0, 0.1, 20), Arm(0.5, 0.1, 20)
    measured = [m for r in range(3) for m in (planted_model(ModelKey(zero, r), 200, 1.0),
                                              planted_model(ModelKey(half, r), 150, 1.0))]
    found = summary.summary(measured, [], [zero, half], 0.05)
    row = next(c for c in found["comparisons"] if c["figure"] == "escape_steps")
    assert row["tied"] and row["p"] is None and row["verdict"] == "cannot tell"
    assert row["ci"] == [-75, -25]
    assert found["headline"]["escape"] == "cannot tell: 0.5"
    # each arm's own escape steps: all 150, so somewhere in (125, 150], never [150, 150]
    entry = next(a for a in found["arms"] if a["arm"] == half.name)
    assert entry["escape_steps"]["mean"] == 150 and entry["escape_steps"]["ci"] == [125, 150]


def test_comparisons_are_holm_adjusted_per_figure_and_reference():
    zero = Arm(0.0, 0.1, 20)
    arms = [zero] + [Arm(m, 0.1, 20) for m in (0.2, 0.4)]
    rng = np.random.default_rng(3)
    measured = [planted_model(ModelKey(arm, r), int(rng.integers(100, 200)), rng.normal(1, 0.1))
                for r in range(5) for arm in arms]
    rows = [c for c in summary.summary(measured, [], arms, 0.05)["comparisons"]
            if c["figure"] == "lambda_max_epoch_1"]
    assert [r["p_holm"] for r in rows] == statistics.holm([r["p"] for r in rows])


@pytest.mark.parametrize("barriers, verdict", [
    ([0.010, 0.012, 0.011, 0.013], "same basin"),
    ([0.30, 0.32, 0.31, 0.35], "separate minima"),
    ([0.01, 0.09, 0.02, 0.12], "cannot tell"),
    ([0.01], "cannot tell"),
])
def test_barrier_verdicts_follow_the_rule(barriers, verdict):
    arm = Arm(0.5, 0.1, 20)
    lines = [{"family": "vs_zero", "arm": arm.name, "line": "0p5", "momentum": 0.5, "lr": 0.1,
              "batch_size": 20, "barrier": b} for b in barriers]
    [row] = summary.barriers(lines, tolerance=0.05)
    assert row["verdict"] == verdict and row["replicates"] == len(barriers)


CURVATURE = {"lambda_max": 2.0, "lambda_min": -0.1, "grad_norm": 0.3, "loss": 0.1,
             "products": 40, "converged": True}


@pytest.mark.parametrize("stored, why", [
    ({**CURVATURE, "lambda_max": 999.0}, "edited, its seal no longer matches"),
    ({"a": 1}, "not a curvature"),
    ({}, "not a curvature"),
    ({**CURVATURE, "grad_norm": None}, "a figure missing"),
])
def test_only_a_sealed_well_formed_cache_entry_is_reused(tmp_path, stored, why):
    cache = SurfaceCache({"probe": [1, 2], "code": "c"}, tmp_path)
    computed = []

    def compute():
        computed.append(1)
        return dict(CURVATURE)

    assert cache.get("curvature", ["w"], {"tol": 0.01}, compute) == CURVATURE
    [entry] = tmp_path.glob("*.json")
    found = json.loads(entry.read_text())
    if "edited" in why:
        found["value"] = stored
    else:
        found = {**found, "value": stored}
        found["seal"] = seal(found["key"], stored)
    entry.write_text(json.dumps(found))
    assert cache.get("curvature", ["w"], {"tol": 0.01}, compute) == CURVATURE, why
    assert len(computed) == 2 and cache.damaged == 1 and cache.reused == 0
    assert cache.get("curvature", ["w"], {"tol": 0.01}, compute) == CURVATURE
    assert cache.reused == 1  # what it wrote again is trusted


def test_a_line_of_the_wrong_length_is_measured_again(tmp_path):
    cache = SurfaceCache({"probe": [1], "code": "c"}, tmp_path)
    cache.get("line", ["a", "b"], {"points": 3}, lambda: [1.0, 0.5, 0.2])
    [entry] = tmp_path.glob("*.json")
    found = json.loads(entry.read_text())
    found["value"] = []
    found["seal"] = seal(found["key"], [])
    entry.write_text(json.dumps(found))
    assert cache.get("line", ["a", "b"], {"points": 3}, lambda: [1.0, 0.4, 0.2]) == [1.0, 0.4, 0.2]


def planted_result():
    """What the surface stage writes, for two replicates of momentum 0, 0.5 and its control."""
    arms = [Arm(0.0, 0.1, 20), Arm(0.5, 0.1, 20), Arm(0.5, 0.1, 20, control=True)]
    rng = np.random.default_rng(1)
    models, lines = [], []
    for r in range(2):
        for arm in arms:
            models.append({
                "model": f"{arm.name}/replicate_{r}", "arm": arm.name, "line": line_key(arm.line),
                "momentum": arm.momentum, "lr": arm.lr, "batch_size": 20, "sgd_lr": arm.sgd_lr,
                "control": arm.control, "replicate": r, "fold": r, "steps": 200,
                "escape_steps": int(rng.integers(50, 150)), "train_loss_every": 25,
                "early_train_loss": list(np.linspace(2.3, 0.5, 8) + rng.normal(0, 0.05, 8)),
                "curvature": [{"epoch": e, **CURVATURE, "ratio": -0.05, "threshold": 20.0,
                               "sharpness_over_threshold": 0.1, "noise_scale": 400.0 + r,
                               "batch_sharpness": 25.0 + r, "batch_sharpness_over_threshold": 1.2,
                               "batch_sharpness_over_step_edge": 0.6}
                              for e in (0, 1)],
                "line_from_initial": {"losses": list(np.linspace(2.3, 0.3, 5)),
                                      "largest_rise": 0.0}})
        for family, other in (("vs_zero", arms[0]), ("vs_control", arms[2])):
            lines.append({"family": family, "arm": arms[1].name, "line": "0p5", "momentum": 0.5,
                          "lr": 0.1, "batch_size": 20, "replicate": r, "model": "m",
                          "other": other.name, "losses": [0.3, 0.5, 0.31, 0.4, 0.32],
                          "barrier": 0.5 - 0.31})
    measured = [(ModelKey(Arm.from_name(m["arm"]), m["replicate"]), m) for m in models]
    found = summary.summary(measured, lines, arms, 0.05)
    found.update({"settings": {"surface": {"escape_loss": 1.0, "line_points": 5,
                                           "barrier_tolerance": 0.05}},
                  "models": models, "lines": lines})
    return found


def test_the_surface_figures_draw_a_curve_band_and_interval_per_arm():
    result = planted_result()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        drawn = figures.draw(result)
    assert list(drawn) == figures.NAMES
    curves, dots = drawn["surface_escape"].axes
    labels = [line.get_label() for line in curves.get_lines()]
    assert labels == [Arm.from_name(a["arm"]).label for a in result["arms"]] + [
        "escape: loss < 1"]
    assert len(curves.collections) == 3                      # a band per arm
    assert len(dots.containers) == 3                         # an interval per arm
    assert [t.get_text() for t in dots.get_xticklabels()] == [
        "momentum 0, lr 0.1, batch 20", "momentum 0.5, lr 0.1, batch 20",
        "control 0.5, lr 0.1, batch 20"]
    for ax in drawn["surface_curvature"].axes:
        assert len(ax.containers) == 3                       # each arm's points with intervals
    barriers = drawn["surface_barriers"].axes[0]
    assert len(barriers.containers) == 2                     # vs momentum 0, vs its control
    assert barriers.get_lines()[-1].get_ydata()[0] == 0.05   # the tolerance
    # the values drawn: each curve is the mean over replicates of the planted points
    for line, arm in zip(curves.get_lines(), result["arms"]):
        rows = [m["early_train_loss"] for m in result["models"] if m["arm"] == arm["arm"]]
        np.testing.assert_allclose(line.get_xdata(), 25 * np.arange(1, 9))
        np.testing.assert_allclose(line.get_ydata(), np.mean(rows, axis=0))
    # each interval bar is the arm's mean escape steps with its 95% interval
    for container, arm in zip(dots.containers, result["arms"]):
        described = arm["escape_steps"]
        _, (bar,) = container.lines[0], container.lines[2]
        assert container.lines[0].get_ydata()[0] == pytest.approx(described["mean"])
        np.testing.assert_allclose(sorted(bar.get_segments()[0][:, 1]), described["ci"])
    largest = drawn["surface_curvature"].axes[0]
    for container, arm in zip(largest.containers, result["arms"]):
        np.testing.assert_allclose(container.lines[0].get_ydata(), [CURVATURE["lambda_max"]] * 2)
    edge = drawn["surface_curvature"].axes[-1]  # batch sharpness over a larger step's edge
    for container in edge.containers:
        np.testing.assert_allclose(container.lines[0].get_ydata(), [0.6] * 2)
    assert list(edge.get_lines()[-1].get_ydata()) == [1, 1]  # the edge
    scattered = [c for c in dots.collections if type(c).__name__ == "PathCollection"]
    values = [c.get_offsets()[:, 1] for c in scattered]
    assert len(values) == 3
    for found, arm in zip(values, result["arms"]):
        assert sorted(found) == sorted(m["escape_steps"] for m in result["models"]
                                       if m["arm"] == arm["arm"])
    for fig in drawn.values():
        figures.plt.close(fig)


def test_the_noise_scale_is_the_explicit_per_example_computation(monkeypatch):
    """B_simple from the per-example gradient norms of one backward pass, against each
    example's gradient taken by autograd one at a time (float64) and the estimators written out
    in numpy."""
    torch.manual_seed(0)
    net = MLP([12, 8])
    images, labels = torch.rand(37, 784), torch.randint(0, 10, (37,))
    found = measures.noise_scale(net, images, labels)
    rows, net64 = [], MLP([12, 8]).double()
    net64.load_state_dict({k: v.double() for k, v in net.state_dict().items()})
    for image, label in zip(images.double(), labels):
        loss = torch.nn.functional.cross_entropy(net64(image[None]), label[None])
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(
            loss, list(net64.parameters()))]).numpy())
    g = np.array(rows)                                             # [n, P]
    trace = np.var(g, axis=0, ddof=1).sum()
    true_sq = np.sum(g.mean(0) ** 2) - trace / len(g)
    # The passes are float32 (eps 6e-8), as training; B_simple (about 800 here) is 20 times the
    # 37 examples, and |G|^2, a difference, loses that factor: about 1e-6, so 1e-5 holds on any
    # summation order.
    assert found["gradient_variance_trace"] == pytest.approx(trace, rel=1e-6)
    assert found["true_gradient_norm_sq"] == pytest.approx(true_sq, rel=1e-5)
    assert found["noise_scale"] == pytest.approx(trace / true_sq, rel=1e-5)
    # the images' norms computed once for many weights (the surface stage's way): the same
    assert measures.noise_scale(net, images, labels, measures.image_norms(images)) == found
    # in chunks, the same up to the float32 order of the sums
    monkeypatch.setattr(measures, "NOISE_CHUNK", 10)
    assert measures.noise_scale(net, images, labels)["noise_scale"] == pytest.approx(
        found["noise_scale"], rel=1e-5)
    # the mean gradient is the full-probe gradient autograd gives
    full = torch.autograd.grad(torch.nn.functional.cross_entropy(net(images), labels),
                               list(net.parameters()))
    assert np.sum(g.mean(0) ** 2) == pytest.approx(
        float(sum((f.double() ** 2).sum() for f in full)), rel=1e-5)


def test_a_model_that_reached_its_target_is_measured_there_and_compared():
    zero, half = Arm(0.0, 0.1, 20), Arm(0.5, 0.1, 20)
    measured = []
    for r in range(4):
        for arm, sharp in ((zero, 0.9 + 0.01 * r), (half, 0.5 + 0.02 * r)):
            key, model = planted_model(ModelKey(arm, r), 100, 1.0)
            model["at_target"] = {**model["curvature"][0], "sharpness_over_threshold": sharp}
            measured.append((key, model))
    found = summary.summary(measured, [], [zero, half], 0.05)
    row = next(c for c in found["comparisons"]
               if c["figure"] == "sharpness_over_threshold_at_target")
    assert row["mean_difference"] == pytest.approx(np.mean([0.5 + 0.02 * r - 0.9 - 0.01 * r
                                                            for r in range(4)]))
    entry = next(a for a in found["arms"] if a["arm"] == half.name)
    assert entry["noise_scale_at_target"]["mean"] == 500.0


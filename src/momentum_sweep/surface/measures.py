"""What the surface stage measures on one network, as functions of its weights and the probe.

- ``escape_step``: the steps until a fine training-loss curve first falls below a threshold.
- ``curvature``: the Hessian's largest and smallest eigenvalues, by Lanczos (scipy's ``eigsh``,
  both ends in one run) on exact Hessian-vector products (autograd's double backward; finite
  differences of gradients would be wrong across a ReLU's kink), and the gradient's norm.
- ``line``: the loss along the straight line between two sets of weights, and the two figures
  read from it: ``largest_rise`` (how much the loss ever goes back up along the way) and
  ``barrier`` (the highest loss minus the mean of the two ends).
- ``batch_sharpness``: the mean curvature of a mini-batch's loss along its own gradient (Andreyev
  and Beneventano 2024), at the batch size the model trained with: the curvature its steps meet.
- ``noise_scale``: the gradient noise scale of McCandlish et al. 2018, B_simple = tr(Sigma) /
  |G|^2 (Sigma the covariance of one example's gradient, G the mean gradient), from per-example
  gradients with both estimators unbiased: the batch size above which a larger batch no longer
  cuts the steps in proportion. Taken on every training image of the model's fold, not the
  probe: near a minimum |G|^2 is about tr(Sigma)/B_simple, so its estimate from n images is
  no better than the noise of n images allows, and n must be well above B_simple.

Every loss here but the noise scale's and the batch sharpness's (the fold's training images) is
the mean cross-entropy of the probe, a fixed set of training images.
"""

import math

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
from threadpoolctl import threadpool_limits

from ..data.splits import scaled
from ..training.model import MLP


def escape_step(curve, every, threshold, steps):
    """The steps taken when the curve (one point per ``every`` of the ``steps`` trained, each
    the mean loss of those steps; the last may hold fewer) first falls below ``threshold``: the
    end of that point's steps, never past the last step trained. None if it never does (a point
    that is None, a diverged model's, never counts as below)."""
    for i, loss in enumerate(curve):
        if loss is not None and loss < threshold:
            return min((i + 1) * every, steps)
    return None


def network(state, hidden, device) -> MLP:
    net = MLP(hidden).to(device)
    net.load_state_dict(state)
    return net


def is_finite_state(state) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in state.values())


def probe_loss(net, images, labels) -> float:
    """Mean cross-entropy of the probe. images: [N, 784] float; labels: [N]."""
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(net(images), labels).item()


class Hessian:
    """The Hessian of the probe's mean loss at a net's weights, as a scipy operator over the
    flattened parameters (float64, as eigsh works; the products are float32, as training).

    Each product is exact: autograd's double backward through the gradient's graph, built once.
    ``products`` counts them."""

    def __init__(self, net, images, labels):
        self.params = list(net.parameters())
        loss = torch.nn.functional.cross_entropy(net(images), labels)
        self.gradient = torch.autograd.grad(loss, self.params, create_graph=True)
        self.loss = loss.item()
        self.sizes = [p.numel() for p in self.params]
        self.products = 0

    def product(self, v: np.ndarray) -> np.ndarray:
        """H v. v: [P] float64 -> [P] float64."""
        self.products += 1
        device = self.params[0].device
        pieces = torch.from_numpy(np.asarray(v, np.float32).ravel()).to(device).split(self.sizes)
        hv = torch.autograd.grad(self.gradient, self.params,
                                 [c.view_as(p) for c, p in zip(pieces, self.params)],
                                 retain_graph=True)
        return torch.cat([h.reshape(-1) for h in hv]).double().cpu().numpy()

    def operator(self) -> LinearOperator:
        n = sum(self.sizes)
        return LinearOperator((n, n), matvec=self.product, dtype=np.float64)

    def gradient_norm(self) -> float:
        return math.sqrt(sum(float((g.detach().double() ** 2).sum()) for g in self.gradient))


def curvature(net, images, labels, tol, maxiter, seed=0) -> dict:
    """The Hessian's extreme eigenvalues at the net's weights on the probe, the gradient's norm
    and the loss there. ``products``: Hessian-vector products used; ``converged``: whether eigsh
    reached ``tol`` within ``maxiter``."""
    hessian = Hessian(net, images, labels)
    start = np.random.default_rng(seed).standard_normal(sum(hessian.sizes))  # fixed: reproducible
    try:
        # "BE", k=2: one eigenvalue from each end of the spectrum, in one Lanczos run. ARPACK's
        # BLAS on one thread: its threads and torch's, spinning for the same two cores between
        # products, made each product three times slower (docs/performance.md).
        with threadpool_limits(1, user_api="blas"):
            low, high = eigsh(hessian.operator(), k=2, which="BE", tol=tol, maxiter=maxiter,
                              v0=start, return_eigenvectors=False)
        converged = True
    except ArpackNoConvergence:
        low = high = None
        converged = False
    return {"lambda_max": None if high is None else float(high),
            "lambda_min": None if low is None else float(low),
            "grad_norm": hessian.gradient_norm(), "loss": hessian.loss,
            "products": hessian.products, "converged": converged}


NOISE_CHUNK = 5000  # examples through one forward and backward pass at a time


def gradient_moments(net, images, labels, norms=None):
    """(sum over the n examples of |g_i|^2, |sum of g_i|^2), g_i example i's gradient of its own
    loss, without holding any g_i: for a linear layer g_i is the outer product of its output's
    gradient d_i and its input a_i (and d_i for the bias), so |g_i|^2 is |d_i|^2 (|a_i|^2 + 1)
    summed over layers (Goodfellow 2015); the sum of the g_i is the gradient of the summed loss.
    A forward and a backward pass per NOISE_CHUNK examples in float32, as training computes;
    every square and sum over examples in float64, where the estimators' differences cancel.
    images: [n, 784] float (or uint8, scaled here); labels: [n]; norms: ``image_norms(images)``
    [n], computed here if None (they depend on the images alone: a caller measuring many sets
    of weights on the same images computes them once)."""
    norms = image_norms(images) if norms is None else norms
    squares, summed = 0.0, None
    for start in range(0, len(images), NOISE_CHUNK):
        chunk = images[start:start + NOISE_CHUNK]
        chunk = scaled(chunk) if chunk.dtype == torch.uint8 else chunk
        part, gradient = chunk_moments(net, chunk, labels[start:start + NOISE_CHUNK],
                                       norms[start:start + NOISE_CHUNK])
        squares += part
        summed = gradient if summed is None else summed + gradient
    return squares, float((summed ** 2).sum())


def image_norms(images):
    """|a_i|^2 of each image as the first layer reads it, in float64. images: [n, 784] float
    (or uint8, scaled here) -> [n]."""
    return torch.cat([squared_norms(scaled(chunk) if chunk.dtype == torch.uint8 else chunk)
                      for chunk in images.split(NOISE_CHUNK)])


def chunk_moments(net, images, labels, norms):
    """(sum of |g_i|^2, the summed gradient [P] float64) of one chunk (``gradient_moments``);
    norms: the chunk's ``image_norms`` [n]."""
    weights = [(layer.weight.detach().requires_grad_(),                      # [out, in]
                layer.bias.detach().requires_grad_()) for layer in net.layers]
    x, inputs, outputs = images, [norms], []                # x: [n, 784]; inputs: |a_i|^2, [n]
    for i, (weight, bias) in enumerate(weights):
        z = torch.nn.functional.linear(x, weight, bias)                      # [n, out]
        outputs.append(z)
        if i == len(weights) - 1:
            x = z
        else:
            x = torch.relu(z)                                                # [n, out]
            inputs.append(squared_norms(x.detach()))                         # [n]
    loss = torch.nn.functional.cross_entropy(x, labels, reduction="sum")
    params = [p for pair in weights for p in pair]
    found = torch.autograd.grad(loss, [*params, *outputs])
    per_example = sum((squared_norms(d) * (a + 1)).sum()                     # [n] -> []
                      for d, a in zip(found[len(params):], inputs))
    return float(per_example), torch.cat([g.reshape(-1).double() for g in found[:len(params)]])


def squared_norms(rows):
    """|row|^2 of each row, in float64. rows: [n, k] -> [n]."""
    return (rows.double() ** 2).sum(1)


def noise_scale(net, images, labels, norms=None) -> dict:
    """B_simple on the probe (McCandlish et al. 2018, appendix A), from the n per-example
    gradients g_i with mean g: tr(Sigma) = sum |g_i - g|^2 / (n - 1) (unbiased), |G|^2 = |g|^2 -
    tr(Sigma)/n (unbiased: the mean of n gradients has E|g|^2 = |G|^2 + tr(Sigma)/n), B_simple
    their ratio; None where the estimate of |G|^2 is not positive (the noise hides the
    gradient). norms: as ``gradient_moments``."""
    n = len(images)
    squares, total = gradient_moments(net, images, labels, norms)
    mean_sq = total / n ** 2                                           # |g|^2
    trace = (squares - n * mean_sq) / (n - 1)                          # tr(Sigma)
    true_sq = mean_sq - trace / n                                      # |G|^2
    return {"noise_scale": trace / true_sq if true_sq > 0 else None,
            "gradient_variance_trace": trace, "true_gradient_norm_sq": true_sq}


def batch_sharpness(net, images, labels, batch_size, batches, seed=0) -> float:
    """Batch sharpness (Andreyev & Beneventano 2024): over ``batches`` mini-batches of
    ``batch_size`` images, each drawn without replacement with ``seed``, the mean of g_B' H_B g_B
    / |g_B|^2, the curvature of the mini-batch's own mean loss along its own gradient: what a
    step of that mini-batch meets. Plain SGD trains where it reaches 2/lr. None if every
    gradient is zero. images: [n, 784] float (or uint8, scaled here); labels: [n]."""
    params = list(net.parameters())
    generator = torch.Generator().manual_seed(seed)
    ratios = []
    for _ in range(batches):
        chosen = torch.randperm(len(images), generator=generator)[:batch_size]  # [B]
        batch = images[chosen.to(images.device)]                               # [B, 784]
        batch = scaled(batch) if batch.dtype == torch.uint8 else batch
        loss = torch.nn.functional.cross_entropy(net(batch), labels[chosen.to(labels.device)])
        gradient = torch.autograd.grad(loss, params, create_graph=True)         # [P] in pieces
        along = torch.autograd.grad(gradient, params, [g.detach() for g in gradient])  # H_B g_B
        squared = sum(float((g.detach().double() ** 2).sum()) for g in gradient)  # |g_B|^2
        if squared > 0:
            curved = sum(float((h.double() * g.detach().double()).sum())          # g_B' H_B g_B
                         for h, g in zip(along, gradient))
            ratios.append(curved / squared)
    return float(np.mean(ratios)) if ratios else None


def line(start_state, end_state, hidden, points, images, labels, device) -> list:
    """The probe's loss at ``points`` evenly spaced a in [0, 1] on (1 - a) * start + a * end;
    a = 0 and a = 1 are the two sets of weights exactly."""
    net = MLP(hidden).to(device)
    losses = []
    for a in np.linspace(0.0, 1.0, points):
        # At the ends the weights are copied, not computed: (1 - 1) * s + 1 * e can differ from
        # e in the last bit.
        if a == 0.0:
            state = start_state
        elif a == 1.0:
            state = end_state
        else:
            state = {name: torch.lerp(start_state[name], end_state[name], float(a))
                     for name in start_state}
        net.load_state_dict(state)
        losses.append(probe_loss(net, images, labels))
    return losses


def largest_rise(losses) -> float:
    """The most the loss goes back up along a line: max over i < j of losses[j] - losses[i],
    and 0 where it never rises (a monotone fall)."""
    lowest, rise = math.inf, 0.0
    for loss in losses:
        rise = max(rise, loss - lowest)
        lowest = min(lowest, loss)
    return rise


def barrier(losses) -> float:
    """The highest loss on the line minus the mean of its two ends (Frankle et al. 2020): near
    zero when both ends lie in one basin."""
    return max(losses) - (losses[0] + losses[-1]) / 2

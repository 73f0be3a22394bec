"""What the surface stage measures on one network, as functions of its weights and the probe.

- ``escape_step``: the steps until a fine training-loss curve first falls below a threshold.
- ``curvature``: the Hessian's largest and smallest eigenvalues, by Lanczos (scipy's ``eigsh``,
  both ends in one run) on exact Hessian-vector products (autograd's double backward; finite
  differences of gradients would be wrong across a ReLU's kink), and the gradient's norm.
- ``line``: the loss along the straight line between two sets of weights, and the two figures
  read from it: ``largest_rise`` (how much the loss ever goes back up along the way) and
  ``barrier`` (the highest loss minus the mean of the two ends).

Every loss here is the mean cross-entropy of the probe, a fixed set of training images.
"""

import math

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
from threadpoolctl import threadpool_limits

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

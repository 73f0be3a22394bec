"""The native CPU step: a fused, sparse first layer, one model per thread at a time.

Why it is faster than the PyTorch step on a CPU. At batch 20 a step is bound by passes over the
first layer's weights ([784 + 1, 50] per model), which PyTorch makes four times, in full, every
step: the forward multiply, the gradient multiply, the momentum decay and the update. But MNIST
is sparse (19% of an image's pixels are non-zero, 55% of a batch's), and a pixel that is zero in
every image of a batch contributes nothing to the forward pass and has no gradient. So:

- Only the rows of the pixels active in the batch are read: an image's first-layer output is
  the sum of its non-zero pixels' rows times their values, and only active rows have a gradient.
- The other rows would only decay: ``v = mu*v; w -= v``. That is applied in closed form, n
  skipped steps at once: ``w -= v*(mu + ... + mu^n)`` and ``v *= mu^n`` (v in PyTorch's scaling;
  tables ``drift`` and ``decay``). The epoch's batches are known in advance, so a row's skipped
  steps up to its next use are applied right after its update, while it is in registers; a row
  not used again in the epoch is brought to the epoch's end, before evaluation and saving, and
  caught up when it is first used in the next.
- The gradient of an active row goes straight into its velocity (pre-scaled by lr, as in the
  PyTorch step), and the row is updated in the same pass.
- The first layer's forward pass runs image by image, each image's outputs held in vector
  registers while its pixels' rows are added; the gradient pass runs pixel by pixel, each row's
  velocity held in registers while its images' gradients are added. Neither writes a partial sum
  to memory.
- One call into compiled code (C, ``native_kernels.c``) trains one model for a quarter of a
  segment (below: why not a whole one). A segment is the run of steps between two points where
  the weights are read (evaluated, kept, or a model stops): each epoch's end, and with a target
  each scheduled evaluation. At a segment's end every row is brought up to date; the default run
  has one segment per epoch.
- Nesterov's update (``torch.optim.SGD(nesterov=True)``) subtracts lr*g + mu*v where heavy-ball
  subtracts v (v = mu*v + lr*g, as PyTorch's buffer times lr); rows a step skips subtract mu*v
  per step, so its drift table is mu times heavy-ball's.

The batch's pixel-by-pixel view (which pixels are active, and which images have them) depends
only on the replicate's batch order, so it is built once per replicate and epoch and shared by
the replicate's models; the next epoch's is built while this one trains. Threads take work
from a queue, a quarter of a model's segment at a time, and a model's next quarter joins the end
of the queue when its last one finishes: each model's arithmetic is the same whichever models
share the pass, and in whichever pieces, on whichever threads; the threads finish a segment
together even when the models do not divide evenly between them (5 models on 2 threads: 2.5
model-segments each, not 3 and 2); and a thread that the system does not schedule delays only the
piece it holds, never the others (no barrier inside a segment). A model that has stopped (it
reached the target, or diverged) takes no more pieces.

Widths are padded to a multiple of 8 floats, with zero weights that stay zero, so that the
compiled loops run in full vector registers. The later layers' zero (ReLU'd) inputs are multiplied
like any other: a branch on them would be mispredicted half the time.
"""

import os
import queue
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.mnist import PIXELS
from .batches import Replicates, Trained
from .model import layer_sizes, parameter_count
from .native_kernels import Batches, Images, Model, Net, library

SCALE = np.arange(256, dtype=np.float32) / np.float32(255)  # pixel value -> x, as ToTensor
LANES = 8  # floats in a vector register (AVX)
PIECES = 4  # tasks per model-segment, so that the threads finish together (see the docstring)


def padded(width: int) -> int:
    return -(-width // LANES) * LANES


def _leave_signals_to_the_main_thread():
    """Worker threads block SIGINT and SIGTERM, so the kernel delivers them to the main thread,
    which raises KeyboardInterrupt at once even while it waits; a signal taken by a worker in a
    kernel could go unnoticed until the run ended."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def aligned_zeros(shape, alignment=64) -> np.ndarray:
    """float32 zeros whose first element starts a cache line. numpy aligns small arrays to 16
    bytes only, and then half the kernels' 32-byte vector loads would straddle two cache
    lines."""
    size = int(np.prod(shape)) * 4
    buffer = np.zeros(size + alignment, np.uint8)
    start = -buffer.ctypes.data % alignment
    return buffer[start:start + size].view(np.float32).reshape(shape)


def worker_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def sparse_images(images_uint8: torch.Tensor) -> Images:
    """uint8 images [N, 784] compressed by row: indptr [N+1], pixels [nnz], values [nnz]."""
    images = images_uint8.cpu().numpy()
    rows, cols = np.nonzero(images)
    indptr = np.zeros(len(images) + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=len(images)), out=indptr[1:])
    return Images.of(indptr=indptr, pixels=cols.astype(np.uint16), values=images[rows, cols],
                     n=len(images))


class NativeModel:
    """One model's parameters in the kernels' layout (see native_kernels.c), with its momentum
    tables."""

    def __init__(self, state, sizes, widths, momentum, nesterov, lr, total_steps, batch_size):
        L, M = len(sizes) - 1, max(widths[1:])
        self.w1 = aligned_zeros((PIXELS + 1, widths[1]))            # [785, H1], pixel-major
        self.w1[:PIXELS, :sizes[1]] = state["layers.0.weight"].T.numpy()
        self.w1[PIXELS, :sizes[1]] = state["layers.0.bias"].numpy()
        self.W = aligned_zeros((max(L - 1, 1), M + 1, M))           # [L-1, M+1, M]
        for l in range(1, L):
            fi, fo = sizes[l], sizes[l + 1]
            self.W[l - 1, :fi, :fo] = state[f"layers.{l}.weight"].T.numpy()
            self.W[l - 1, fi, :fo] = state[f"layers.{l}.bias"].numpy()
        self.Wt = aligned_zeros((len(self.W), M, M))                # [L-1, M, M]
        self.Wt[...] = self.W[:, :M, :].transpose(0, 2, 1)
        self.v1, self.V = aligned_zeros(self.w1.shape), aligned_zeros(self.W.shape)
        self.last = np.zeros(PIXELS, np.int64)
        self.mu = np.float32(momentum)
        self.lr = float(lr)
        powers = np.cumprod(np.full(total_steps + 1, float(self.mu)))     # mu^1 .. mu^(T+1)
        self.decay = np.concatenate([[1.0], powers]).astype(np.float32)   # decay[n] = mu^n
        drift = np.concatenate([[0.0], np.cumsum(powers)])                # mu + ... + mu^n
        self.drift = (drift * float(self.mu) if nesterov else drift).astype(np.float32)
        self.hs = aligned_zeros((L, batch_size, M))
        self.struct = Model.of(w1=self.w1, v1=self.v1, W=self.W, Wt=self.Wt, V=self.V,
                               last=self.last, decay=self.decay, drift=self.drift, hs=self.hs,
                               lr=self.lr, mu=float(self.mu), nesterov=int(nesterov))

    def state_dict(self, sizes) -> dict:
        state = {"layers.0.weight": torch.from_numpy(self.w1[:PIXELS, :sizes[1]].T.copy()),
                 "layers.0.bias": torch.from_numpy(self.w1[PIXELS, :sizes[1]].copy())}
        for l in range(1, len(sizes) - 1):
            fi, fo = sizes[l], sizes[l + 1]
            state[f"layers.{l}.weight"] = torch.from_numpy(self.W[l - 1, :fi, :fo].T.copy())
            state[f"layers.{l}.bias"] = torch.from_numpy(self.W[l - 1, fi, :fo].copy())
        return state


def batch_structure(kernels, images: Images, labels: np.ndarray, order: np.ndarray,
                    batch_size: int, sync: np.ndarray) -> Batches:
    """An epoch's batches of one replicate in ``order``, pixel by pixel, as pass B reads them,
    its segments starting at the steps in ``sync`` (see native_kernels.c)."""
    nnz = len(images.arrays["pixels"])  # each image is in the epoch once: one entry per non-zero
    steps = -(-len(order) // batch_size)
    most = min(nnz, steps * PIXELS)  # active pixels: at most one per entry, PIXELS per step
    found = Batches.of(order=order, labels=labels[order], n=len(order), batch_size=batch_size,
                       act=np.empty(most, np.uint16), act_ptr=np.empty(steps + 1, np.int64),
                       ahead=np.empty(most, np.int32), first=np.empty(most, np.uint8),
                       ent_ptr=np.empty(most + 1, np.int32), ent_image=np.empty(nnz, np.uint16),
                       ent_value=np.empty(nnz, np.uint8), sync=sync, n_sync=len(sync))
    n_act = kernels.batch_structure(images, found, PIXELS)
    # A batch's active pixels are about a seventh of its entries: keep only what is used.
    used = {"act": n_act, "ahead": n_act, "first": n_act, "ent_ptr": n_act + 1}
    arrays = {name: array[:used[name]].copy() if name in used else array
              for name, array in found.arrays.items()}
    return Batches.of(**arrays, n=len(order), batch_size=batch_size, n_sync=len(sync))


@dataclass
class Epoch:
    """One epoch of a pass: each replicate's batches, and what its segments add up."""
    start: int                # the global step it starts at
    structures: list          # [G]: futures of each replicate's batches (Batches)
    step_losses: np.ndarray   # [K, steps]: each model's summed loss of each step's batch


@dataclass
class Segment:
    """A run of an epoch's steps, as its pieces share it."""
    epoch: Epoch
    bounds: list              # the pieces' steps within the epoch
    figures: np.ndarray       # [K, 2]: each model's summed loss and correct predictions
    # per finished piece: None, or the error it raised
    finished: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    # set after Ctrl-C or an error: no more pieces start
    stop: threading.Event = field(default_factory=threading.Event)


class NativeTrainer:
    def __init__(self, keys, hidden, train_params, schedule, folds, device=None, threads=None,
                 kernels=None):
        """``keys``: models of one batch size, ordered by replicate; ``folds`` on the CPU (the
        ``device``). ``kernels``: the compiled library (default: built for this machine's
        CPU)."""
        self.schedule = schedule
        self.batch_size = schedule.batch_size
        self.sizes = np.array(layer_sizes(hidden), np.int64)
        self.widths = np.array([PIXELS] + [padded(s) for s in self.sizes[1:]], np.int64)
        self.L, self.M = len(self.sizes) - 1, int(max(self.widths[1:]))
        self.net = Net.of(L=self.L, sizes=self.sizes, widths=self.widths, M=self.M,
                          batch=self.batch_size)
        # compiled now, so that a compiler error comes before any work
        self.kernels = kernels or library()
        # Every used image; each replicate's orders pick its training rows among them.
        self.train = sparse_images(folds.pool.images)
        self.labels = folds.pool.labels.cpu().numpy()
        self.steps_per_epoch = schedule.steps_per_epoch
        if len(folds.train_rows(0)) != train_params.train_size:
            raise ValueError(f"the folds hold {len(folds.train_rows(0))} training images, the "
                             f"parameters {train_params.train_size}")
        self.ends = schedule.segment_ends
        replicates = Replicates.of(keys, hidden, train_params, folds)
        self.group_models, self.group_of = replicates.groups, replicates.group_of
        self.initial = replicates.initial
        self.validation = replicates.validation                                 # [G]
        self.orders = replicates.orders
        total = schedule.total_steps
        self.models = [NativeModel(state, self.sizes, self.widths, key.arm.sgd_momentum,
                                   key.arm.method["nesterov"], key.arm.sgd_lr, total,
                                   self.batch_size)
                       for key, state in zip(keys, replicates.initial)]
        self.K = len(keys)
        self.active = [True] * self.K
        self.step = 0
        self.threads = threads or worker_threads()
        self.description = f"native step, {self.threads} threads"
        self.pool = ThreadPoolExecutor(self.threads, initializer=_leave_signals_to_the_main_thread)
        self.epochs_left = schedule.epochs
        self._epoch = None
        self._ahead = None  # the next epoch's orders, being built into batch structures
        self._evaluation_sets = {}

    @staticmethod
    def bytes_per_model(hidden, train_params, schedule) -> int:
        """Weights, velocities and W transposed, the first layer's row bookkeeping, the momentum
        tables (decay, drift: one entry per step of the run) and the activations of a batch."""
        sizes = layer_sizes(hidden)
        return 4 * (3 * parameter_count(hidden) + 2 * 16 * sizes[1]
                    + 2 * (schedule.total_steps + 2) + schedule.batch_size * sum(sizes[1:]))

    def _collect(self, futures):
        """The futures' results, in order. Ctrl-C (or an error) cancels those not started; a
        running kernel finishes its model."""
        try:
            return [future.result() for future in futures]
        finally:
            for future in futures:
                future.cancel()

    def _sync(self, start) -> np.ndarray:
        """The steps within the epoch starting at global step ``start`` that start a segment."""
        return np.array([end - start for end in self.ends
                         if start < end < start + self.steps_per_epoch], np.int64)

    def _build(self, order, start):
        return self.pool.submit(batch_structure, self.kernels, self.train, self.labels, order,
                                self.batch_size, self._sync(start))

    def _next_orders(self):
        return list(self.orders.next_epoch().numpy())                              # [G][N]

    def _begin_epoch(self):
        """The epoch starting now: its batch structures, built ahead during the last one, or
        (the first) built as its first pieces are queued (``_queue``)."""
        start = self.step
        if self._ahead:
            orders, structures = self._ahead
        else:
            orders, structures = self._next_orders(), []
        self._epoch = Epoch(start, structures, np.zeros((self.K, self.steps_per_epoch)))
        self._orders = orders
        self.epochs_left -= 1

    def _queue(self, segment):
        """Each active model's first piece, replicate by replicate. In an epoch's first
        segment, its missing batch structures are queued one replicate ahead of their models'
        first pieces (one thread trains while another builds the next), and behind them the
        next epoch's."""
        epoch, orders = segment.epoch, self._orders
        first_segment = self.step == epoch.start
        for g, models in enumerate(self.group_models):
            while len(epoch.structures) < min(g + 2, len(orders)):
                epoch.structures.append(self._build(orders[len(epoch.structures)], epoch.start))
            for k in models:
                if self.active[k]:
                    self.pool.submit(self._piece, segment, k, 0)
        if first_segment:
            start = epoch.start + self.steps_per_epoch
            self._ahead = None
            if self.epochs_left > 0:
                orders = self._next_orders()
                self._ahead = orders, [self._build(order, start) for order in orders]

    def train_until(self, end, progress=None) -> Trained:
        """Train every active model from the current step to global step ``end``, the end of a
        segment (an evaluation, or the epoch's end). ``progress(images)``: model-images so far
        in this call."""
        if self.step % self.steps_per_epoch == 0:
            self._begin_epoch()
        epoch = self._epoch
        first, last = self.step - epoch.start, end - epoch.start
        bounds = sorted({first + round(i * (last - first) / PIECES) for i in range(PIECES + 1)})
        segment = Segment(epoch, bounds, np.zeros((self.K, 2)))
        self._queue(segment)
        pieces = sum(self.active) * (len(bounds) - 1)
        images = self.batch_size * (last - first)  # at most: the epoch's last batch may be short
        try:
            for done in range(1, pieces + 1):
                error = segment.finished.get()
                if error is not None:
                    raise error
                if progress is not None:
                    progress(done * images // (len(bounds) - 1))
        finally:
            segment.stop.set()  # after Ctrl-C or an error: running pieces finish, no more start
        self.step = end
        n = len(self._orders[0])
        seen = min(last * self.batch_size, n) - first * self.batch_size
        return Trained(segment.figures[:, 0].copy(), segment.figures[:, 1].copy(), seen,
                       epoch.step_losses[:, first:last].copy())

    def _piece(self, segment, k, i):
        """Piece i of model k's segment; then piece i + 1 is queued, behind every other piece."""
        try:
            if segment.stop.is_set():
                return
            epoch = segment.epoch
            m, g, (first, last) = self.models[k], self.group_of[k], segment.bounds[i:i + 2]
            out = np.zeros(2)                                      # summed loss, correct
            self.kernels.train_steps(self.net, m.struct, SCALE, self.train,
                                     epoch.structures[g].result(), first, last,
                                     epoch.start + first, out, epoch.step_losses[k])
            segment.figures[k] += out
            if i + 2 < len(segment.bounds):
                self.pool.submit(self._piece, segment, k, i + 1)
            else:  # the segment's end: every row up to date
                self.kernels.catch_up(m.struct, PIXELS, int(self.widths[1]), epoch.start + last)
            segment.finished.put(None)
        except BaseException as error:
            segment.finished.put(error)

    def stop(self, k):
        """Model k trains no more; its weights stay as they are."""
        self.active[k] = False

    def _evaluation_set(self, split):
        if id(split) not in self._evaluation_sets:
            self._evaluation_sets[id(split)] = (sparse_images(split.images),
                                                split.labels.cpu().numpy())
        return self._evaluation_sets[id(split)]

    def _evaluate(self, splits, models):
        """Mean loss and accuracy of model k on splits[k], for every k in ``models`` (None for
        the others)."""
        def one(m, split):
            images, labels = self._evaluation_set(split)
            figures = np.zeros(2)                              # summed loss, correct
            self.kernels.evaluate(self.net, m.struct, SCALE, images, labels, figures)
            return figures[0] / len(labels), figures[1] / len(labels)

        for k in models:  # compressed once, before the threads read them
            self._evaluation_set(splits[k])
        found = dict(zip(models, self._collect([self.pool.submit(one, self.models[k], splits[k])
                                                for k in models])))
        return ([found[k][0] if k in found else None for k in range(self.K)],
                [found[k][1] if k in found else None for k in range(self.K)])

    def evaluate(self, split, models):
        """Mean loss and accuracy of each model in ``models`` on ``split``; None for others."""
        return self._evaluate([split] * self.K, models)

    def evaluate_validation(self, models):
        """Mean loss and accuracy of each model in ``models`` on its replicate's validation
        fold; None for the others."""
        return self._evaluate([self.validation[g] for g in self.group_of], models)

    def state_dict(self, k):
        return self.models[k].state_dict(self.sizes)

    def close(self):
        """Stop the worker threads (each pass of the train stage has its own)."""
        self.pool.shutdown(wait=True, cancel_futures=True)

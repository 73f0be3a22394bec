"""Training one MLP per momentum, all of them together in one pass over the data.

Every model starts from the same weights and sees the same mini-batches, so they differ by
momentum alone. Their parameters live in one flat tensor, and each step is one batched
forward/backward for all of them followed by one momentum update with a per-model ``mu``.

The update is PyTorch's SGD rule, ``buf = mu*buf + grad; p -= lr*buf``, kept with the buffer
pre-scaled by the learning rate (``v = lr*buf``): ``v = mu*v + lr*grad; p -= v``, the same update
in fewer passes over memory, with ``lr*grad`` accumulated into ``v`` by the gradient matmuls.
Biases are stored as one more input row of each weight matrix (the inputs carry a column of ones),
so a layer is one matrix multiply forward and one backward.

The first layer's input is the same batch for every model, so its weights are stacked,
``[K*50, 800]`` (pixels, bias, zero padding): one matrix multiply serves all K models. Later
layers are batched, ``[K, in + 1, out]``.
Each model's arithmetic does not depend on which models share the pass: on the CPU a momentum
trained alone gives bit-for-bit the weights it gets in a batch, which the result reuse relies on.
"""

import math
import time
from dataclasses import dataclass, field

import torch

from .model import INPUTS, layer_sizes

PADDED_INPUTS = 800
PROGRESS_EVERY = 100  # steps between progress reports


class StackedMLPs:
    """K MLPs of one shape, parameters in one flat tensor; model k has momentum ``momenta[k]``.
    Nothing here requires grad, so no step or evaluation builds an autograd graph: no no_grad
    guard is needed."""

    def __init__(self, hidden, initial_state, momenta, device):
        self.sizes = layer_sizes(hidden)
        self.K = K = len(momenta)
        pairs = list(zip(self.sizes, self.sizes[1:]))
        shapes = [(K * pairs[0][1], PADDED_INPUTS)] + [(K, a + 1, b) for a, b in pairs[1:]]
        numels = [math.prod(shape) for shape in shapes]
        self.flat = torch.zeros(sum(numels), device=device)
        self.velocity = torch.zeros_like(self.flat)
        self.weights = [c.view(s) for c, s in zip(self.flat.split(numels), shapes)]
        self.velocities = [c.view(s) for c, s in zip(self.velocity.split(numels), shapes)]
        mu = torch.tensor(momenta, dtype=torch.float32, device=device)
        per_layer = [mu.repeat_interleave(pairs[0][1]).unsqueeze(1).expand(shapes[0])]
        per_layer += [mu.view(K, 1, 1).expand(shape) for shape in shapes[1:]]
        self.mu = torch.cat([m.reshape(-1) for m in per_layer])
        self._activations = {}
        for k in range(K):
            for layer, (weight, bias) in enumerate(self._layer(k)):
                weight.copy_(initial_state[f"layers.{layer}.weight"].T)
                bias.copy_(initial_state[f"layers.{layer}.bias"])

    def _layer(self, k):
        """(weight transposed [in, out], bias [out]) views of model k, layer by layer."""
        first = self.weights[0]
        width = first.shape[0] // self.K
        block = first[k * width:(k + 1) * width]
        yield block[:, :INPUTS].T, block[:, INPUTS]
        for weights in self.weights[1:]:
            yield weights[k, :-1], weights[k, -1]

    def state_dict(self, k):
        """Model k as an ordinary ``MLP`` state_dict, on the CPU."""
        state = {}
        for layer, (weight, bias) in enumerate(self._layer(k)):
            # clone: a view would carry the whole flat buffer, every model's, into torch.save
            state[f"layers.{layer}.weight"] = weight.T.cpu().clone(
                memory_format=torch.contiguous_format)
            state[f"layers.{layer}.bias"] = bias.cpu().clone(memory_format=torch.contiguous_format)
        return state

    def logits(self, images):
        """Logits of every model, [K, N, 10], for float images [N, 784]."""
        first = self.weights[0]
        z = torch.addmm(first[:, INPUTS], images, first[:, :INPUTS].T)
        h = z.view(len(images), self.K, -1).transpose(0, 1)
        for weights in self.weights[1:]:
            z = torch.baddbmm(weights[:, -1:], h.relu(), weights[:, :-1])
            h = z
        return z

    def _activation_buffers(self, batch):
        """Hidden activations with a trailing column of ones (the bias input), per batch size."""
        if batch not in self._activations:
            self._activations[batch] = [
                torch.ones(self.K, batch, size + 1, device=self.flat.device)
                for size in self.sizes[1:-1]]
        return self._activations[batch]

    def step(self, inputs, neg_onehot, lr):
        """One SGD step of every model on one batch. inputs: [B, 800] from ``with_ones``;
        neg_onehot: [B, 10], minus the one-hot labels. Returns log-probabilities [K, B, 10]."""
        batch, K = len(inputs), self.K
        acts = self._activation_buffers(batch)
        self.velocity.mul_(self.mu)
        z = torch.mm(inputs, self.weights[0].T).view(batch, K, -1).transpose(0, 1)
        for act, weights in zip(acts, self.weights[1:]):
            torch.clamp_min(z, 0, out=act[..., :-1])
            z = torch.bmm(act, weights)
        log_probs = torch._log_softmax(z, -1, False)
        # d(mean cross-entropy)/dz times B: softmax - onehot, in one op.
        dz = torch._log_softmax_backward_data(neg_onehot.expand(K, batch, -1), log_probs, -1,
                                              torch.float32)
        alpha = lr / batch
        for act, weights, velocity in zip(acts[::-1], self.weights[:0:-1], self.velocities[:0:-1]):
            velocity.baddbmm_(act.transpose(1, 2), dz, alpha=alpha)
            dh = torch.bmm(dz, weights[:, :-1].transpose(1, 2))
            dz = torch.ops.aten.threshold_backward(dh, act[..., :-1], 0)
        self.velocities[0].addmm_(dz.transpose(1, 2).reshape(-1, batch), inputs, alpha=alpha)
        self.flat.sub_(self.velocity)
        return log_probs


def with_ones(images):
    """[N, 800]: the pixels, a 1 (the bias input), then zeros that align each row to 64 bytes."""
    padded = torch.zeros(len(images), PADDED_INPUTS, device=images.device)
    padded[:, :INPUTS] = images
    padded[:, INPUTS] = 1
    return padded


def loss_sum_and_correct(log_probs, labels):
    """Summed cross-entropy (float64) and correct predictions per model, for [K, N, 10]."""
    picked = log_probs.gather(2, labels.expand(len(log_probs), -1).unsqueeze(2)).squeeze(2)
    return -picked.double().sum(1), (log_probs.argmax(2) == labels).sum(1)


def loss_and_accuracy(log_probs, labels):
    """Mean cross-entropy and accuracy per model from log-probabilities [K, N, 10]."""
    loss, correct = loss_sum_and_correct(log_probs, labels)
    return (loss / len(labels)).tolist(), (correct.double() / len(labels)).tolist()


def evaluate(stack, split, chunk=10_000):
    """Mean loss and accuracy of every model on a split, in chunks to bound memory."""
    loss = torch.zeros(stack.K, dtype=torch.float64, device=split.images.device)
    correct = torch.zeros(stack.K, dtype=torch.int64, device=split.images.device)
    for start in range(0, len(split), chunk):
        log_probs = torch.log_softmax(stack.logits(split.images[start:start + chunk]), -1)
        labels = split.labels[start:start + chunk]
        chunk_loss, chunk_correct = loss_sum_and_correct(log_probs, labels)
        loss += chunk_loss
        correct += chunk_correct
    return (loss / len(split)).tolist(), (correct.double() / len(split)).tolist()


@dataclass
class EpochStats:
    """One epoch of a pass: per-model losses and accuracies, and the pass's cost."""
    epoch: int
    train_loss: list
    train_accuracy: list
    val_loss: list
    val_accuracy: list
    test_loss: list
    test_accuracy: list
    train_seconds: float
    epoch_seconds: float
    memory: dict = field(default_factory=dict)


def train_together(momenta, initial_state, hidden, train_params, splits, memory_probe,
                   progress=None):
    """Train one model per momentum in one pass; yields (stack, EpochStats) after each epoch."""
    train = splits["train"]
    device = train.images.device
    stack = StackedMLPs(hidden, initial_state, momenta, device)
    inputs = with_ones(train.images)
    neg_onehot = -torch.nn.functional.one_hot(train.labels, 10).float()
    # The mini-batch order comes from its own CPU generator: the same on every device.
    generator = torch.Generator().manual_seed(train_params.seed + 1)
    batch_size, lr = train_params.batch_size, train_params.lr
    train_log_probs = torch.empty(stack.K, len(train), 10, device=device)
    for epoch in range(1, train_params.epochs + 1):
        memory_probe.start_epoch()
        started = time.perf_counter()
        order = torch.randperm(len(train), generator=generator).to(device)
        batches = zip(order.split(batch_size), train_log_probs.split(batch_size, dim=1))
        for step, (batch, log_probs) in enumerate(batches, 1):
            log_probs.copy_(stack.step(inputs.index_select(0, batch),
                                       neg_onehot.index_select(0, batch), lr))
            if progress is not None and step % PROGRESS_EVERY == 0:
                progress(epoch, min(step * batch_size, len(train)))
        if progress is not None:
            progress(epoch, len(train))
        memory_probe.synchronize()
        train_seconds = time.perf_counter() - started
        train_loss, train_accuracy = loss_and_accuracy(train_log_probs, train.labels[order])
        val_loss, val_accuracy = evaluate(stack, splits["val"])
        test_loss, test_accuracy = evaluate(stack, splits["test"])
        memory_probe.synchronize()
        yield stack, EpochStats(epoch, train_loss, train_accuracy, val_loss, val_accuracy,
                                test_loss, test_accuracy, train_seconds,
                                time.perf_counter() - started, memory_probe.peak())

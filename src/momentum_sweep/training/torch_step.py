"""The PyTorch step: K MLPs trained together, one batched forward/backward per step.

This is the path on CUDA and the reference the native CPU step is tested against. It uses public
PyTorch operations only.

Layout. All K models' parameters live in one flat tensor. The first layer's weights are stacked,
``[K*H1, 800]`` (784 pixels, the bias as input 784 fed by a constant 1, then zero padding that
aligns each row to 64 bytes). Models are ordered by replicate, and the models of a replicate see
the same batch, so the first layer is one matrix multiply per replicate for all of its models.
Later layers are batched, ``[K, in + 1, out]``, the bias again as the last input row.

The update is PyTorch's SGD rule, ``buf = mu*buf + grad; p -= lr*buf``, with the buffer kept
pre-scaled by each model's learning rate (``v = lr*buf``): ``v = mu*v + lr*grad; p -= v``. This
relies on a constant learning rate per model. It needs fewer passes over memory: ``lr*grad`` is
accumulated straight into ``v`` by the gradient matrix multiplies, because backpropagation is
linear in the output gradient, which is scaled by ``lr/B`` once. Nesterov's update
(``nesterov=True``: ``p -= lr*(grad + mu*buf)``) is ``p -= lr*grad + mu*v``: with the decayed
velocity ``d = mu*v`` kept aside before the gradient is accumulated into it, its models take
``p - v + d - mu*v``, which is ``p - lr*grad - mu*v``.

Each model's arithmetic does not depend on which other models share the pass (MKL runs in its
strict reproducible mode; see the package's __init__), which the result reuse relies on.
"""

import math

import torch

from ..data.mnist import CLASSES, PIXELS
from ..data.splits import scaled
from .batches import Replicates, Trained
from .model import layer_sizes, parameter_count

PROGRESS_EVERY = 100  # steps between progress reports
EVAL_CHUNK = 10_000   # images evaluated at once
PADDED_INPUTS = 800  # 784 pixels, the bias input, zeros up to a multiple of 16 floats
BIAS_INPUT = PIXELS


class TorchStep:
    """K MLPs of one shape. Model k has momentum ``momenta[k]``, Nesterov's update if
    ``nesterov[k]``, and learning rate ``lrs[k]``; the models of replicate group g are
    ``range(*groups[g])``. Nothing requires grad: no step builds an autograd graph."""

    def __init__(self, hidden, initial_states, momenta, nesterov, lrs, groups, device):
        self.sizes = layer_sizes(hidden)
        self.K = K = len(momenta)
        self.groups = groups
        self.width = width = self.sizes[1]
        pairs = list(zip(self.sizes, self.sizes[1:]))
        shapes = [(K * width, PADDED_INPUTS)] + [(K, a + 1, b) for a, b in pairs[1:]]
        numels = [math.prod(shape) for shape in shapes]
        self.flat = torch.zeros(sum(numels), device=device)
        self.velocity = torch.zeros_like(self.flat)
        self.weights = [c.view(s) for c, s in zip(self.flat.split(numels), shapes)]
        self.velocities = [c.view(s) for c, s in zip(self.velocity.split(numels), shapes)]
        mu = torch.tensor(momenta, dtype=torch.float32, device=device)  # [K]
        self.mu = self._per_parameter(mu, shapes)                       # [parameters]
        # [parameters]: 1 for Nesterov's models, 0 for the others; None if there is none
        is_nesterov = torch.tensor(nesterov, dtype=torch.float32, device=device)   # [K]
        self.nesterov = self._per_parameter(is_nesterov, shapes) if any(nesterov) else None
        self.nesterov_mu = None if self.nesterov is None else self.mu * self.nesterov
        self.lr = torch.tensor(lrs, dtype=torch.float32, device=device).view(K, 1, 1)
        self._activations = {}
        self._lr_over_batch = {}
        for k, state in enumerate(initial_states):
            for layer, (weight, bias) in enumerate(self._layer(k)):
                weight.copy_(state[f"layers.{layer}.weight"].T)
                bias.copy_(state[f"layers.{layer}.bias"])

    def _per_parameter(self, values, shapes):
        """[parameters]: each model's value ([K]) for every one of its parameters."""
        per_layer = [values.repeat_interleave(self.width).unsqueeze(1).expand(shapes[0])]
        per_layer += [values.view(self.K, 1, 1).expand(shape) for shape in shapes[1:]]
        return torch.cat([v.reshape(-1) for v in per_layer])

    def _layer(self, k):
        """(weight transposed [in, out], bias [out]) views of model k, layer by layer."""
        block = self.weights[0][k * self.width:(k + 1) * self.width]  # [H1, 800]
        yield block[:, :PIXELS].T, block[:, BIAS_INPUT]
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
        """Logits of every model, [K, N, 10], for float images [N, 784] shared by all models."""
        first = self.weights[0]
        z = torch.addmm(first[:, BIAS_INPUT], images, first[:, :PIXELS].T)  # [N, K*H1]
        h = z.view(len(images), self.K, -1).transpose(0, 1)                  # [K, N, H1]
        for weights in self.weights[1:]:
            z = torch.baddbmm(weights[:, -1:], h.relu(), weights[:, :-1])   # [K, N, out]
            h = z
        return z

    def _lr_over(self, batch):
        """[K, 1, 1]: each model's learning rate over the batch size."""
        if batch not in self._lr_over_batch:
            self._lr_over_batch[batch] = self.lr / batch
        return self._lr_over_batch[batch]

    def _activation_buffers(self, batch):
        """Hidden activations [K, B, width + 1], the last column all ones (the bias input)."""
        if batch not in self._activations:
            self._activations[batch] = [
                torch.ones(self.K, batch, size + 1, device=self.flat.device)
                for size in self.sizes[1:-1]]
        return self._activations[batch]

    def step(self, inputs, neg_onehot):
        """One SGD step of every model. inputs: [G, B, 800], group g's batch from ``with_ones``;
        neg_onehot: [K, B, 10], minus each model's one-hot labels. Returns log-probabilities
        [K, B, 10] before the step."""
        batch, K = inputs.shape[1], self.K
        acts = self._activation_buffers(batch)
        self.velocity.mul_(self.mu)                                                 # v = mu*v
        # [parameters]: Nesterov's models' decayed velocity, 0 for the others
        decayed = None if self.nesterov is None else self.velocity * self.nesterov
        first = self.weights[0]
        blocks = [inputs[g] @ first[a * self.width:b * self.width].T               # [B, n*H1]
                  for g, (a, b) in enumerate(self.groups)]
        z = blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=1)             # [B, K*H1]
        z = z.view(batch, K, -1).transpose(0, 1)                                    # [K, B, H1]
        for act, weights in zip(acts, self.weights[1:]):
            torch.clamp_min(z, 0, out=act[..., :-1])                               # ReLU
            z = torch.bmm(act, weights)                                             # [K, B, out]
        log_probs = torch.log_softmax(z, -1)                                        # [K, B, 10]
        # lr * d(mean cross-entropy)/dz = lr/B * (softmax - onehot), per model.
        dz = log_probs.exp().add_(neg_onehot).mul_(self._lr_over(batch))          # [K, B, 10]
        for act, weights, velocity in zip(acts[::-1], self.weights[:0:-1], self.velocities[:0:-1]):
            velocity.baddbmm_(act.transpose(1, 2), dz)                              # [K, in+1, out]
            dh = torch.bmm(dz, weights[:, :-1].transpose(1, 2))                     # [K, B, in]
            dz = dh.masked_fill_(act[..., :-1] == 0, 0)  # no gradient where the ReLU was off
        for g, (a, b) in enumerate(self.groups):
            rows = slice(a * self.width, b * self.width)
            self.velocities[0][rows].addmm_(                                        # [n*H1, 800]
                dz[a:b].transpose(1, 2).reshape(-1, batch), inputs[g])
        self.flat.sub_(self.velocity)                                               # p -= v
        if decayed is not None:  # Nesterov's models: p += d - mu*v
            self.flat.add_(decayed).addcmul_(self.velocity, self.nesterov_mu, value=-1)
        return log_probs


def with_ones(images_uint8):
    """[..., 800] float inputs: the scaled pixels, a 1 (the bias input), zeros."""
    padded = torch.zeros(*images_uint8.shape[:-1], PADDED_INPUTS, device=images_uint8.device)
    padded[..., :PIXELS] = scaled(images_uint8)
    padded[..., BIAS_INPUT] = 1
    return padded


def neg_onehot(labels):
    """[..., 10]: minus the one-hot encoding of ``labels``."""
    return -torch.nn.functional.one_hot(labels, CLASSES).float()


class TorchTrainer:
    """A pass's models through ``TorchStep`` (the trainer interface: ``trainer.py``)."""

    def __init__(self, keys, hidden, train_params, schedule, folds, device):
        """``keys``: models of one batch size (``schedule``'s), ordered by replicate."""
        self.train = folds.pool
        self.schedule = schedule
        self.batch_size = schedule.batch_size
        self.steps_per_epoch = schedule.steps_per_epoch
        if len(folds.train_rows(0)) != train_params.train_size:
            raise ValueError(f"the folds hold {len(folds.train_rows(0))} training images, the "
                             f"parameters {train_params.train_size}")
        self.K = len(keys)
        replicates = Replicates.of(keys, hidden, train_params, folds)
        self.initial = replicates.initial
        self.validation = replicates.validation                                 # [G]
        self.torch_step = TorchStep(hidden, replicates.initial,
                                    [key.arm.sgd_momentum for key in keys],
                                    [key.arm.method["nesterov"] for key in keys],
                                    [key.arm.sgd_lr for key in keys],
                                    [(g.start, g.stop) for g in replicates.groups], device)
        self.orders = replicates.orders
        self.description = "PyTorch step"
        self.group_of_model = torch.tensor(replicates.group_of, device=device)     # [K]
        self.step = 0
        self._order = None                                                         # [G, N]
        self.stopped = {}  # {k: its weights when it stopped}; the step keeps computing it

    @staticmethod
    def bytes_per_model(hidden, train_params, schedule) -> int:
        """Weights, velocities and gradients, and the activations of a batch and of an
        evaluation chunk."""
        sizes = layer_sizes(hidden)
        chunk = min(EVAL_CHUNK, train_params.validation_size)
        return 4 * (3 * parameter_count(hidden) + 3 * sizes[1]
                    + 2 * (chunk + schedule.batch_size) * sum(sizes[1:]))

    def train_until(self, end, progress=None) -> Trained:
        """Train every model from the current step to global step ``end``, within one epoch.
        ``progress(images)``: model-images so far in this call."""
        device = self.train.images.device
        if self.step % self.steps_per_epoch == 0:
            self._order = self.orders.next_epoch().to(device)                   # [G, N]
        n = self._order.shape[1]
        first = self.step % self.steps_per_epoch
        steps = range(first, first + end - self.step)
        step_losses = torch.zeros(len(steps), self.K, dtype=torch.float64, device=device)
        correct = torch.zeros(self.K, dtype=torch.int64, device=device)
        for i, step in enumerate(steps):
            batch = self._order[:, step * self.batch_size:(step + 1) * self.batch_size]  # [G, B]
            labels = self.train.labels[batch][self.group_of_model]     # [K, B]
            log_probs = self.torch_step.step(with_ones(self.train.images[batch]),
                                             neg_onehot(labels))
            picked = log_probs.gather(2, labels.unsqueeze(2)).squeeze(2)  # [K, B]
            step_losses[i] = -picked.double().sum(1)
            correct += (log_probs.argmax(2) == labels).sum(1)
            if progress is not None and (i + 1) % PROGRESS_EVERY == 0:
                progress(self.K * (i + 1) * self.batch_size)
        self.step = end
        images = min(steps.stop * self.batch_size, n) - first * self.batch_size
        step_losses = step_losses.T.cpu().numpy()                       # [K, steps]
        return Trained(step_losses.sum(1), correct.cpu().numpy().astype(float), images,
                       step_losses)

    def _evaluate(self, split):
        """Mean loss and accuracy of every model on a split, in chunks to bound memory."""
        device = split.images.device
        loss = torch.zeros(self.K, dtype=torch.float64, device=device)
        correct = torch.zeros(self.K, dtype=torch.int64, device=device)
        for start in range(0, len(split), EVAL_CHUNK):
            images = scaled(split.images[start:start + EVAL_CHUNK])            # [n, 784]
            log_probs = torch.log_softmax(self.torch_step.logits(images), -1)  # [K, n, 10]
            labels = split.labels[start:start + EVAL_CHUNK].expand(self.K, -1)  # [K, n]
            loss -= log_probs.gather(2, labels.unsqueeze(2)).squeeze(2).double().sum(1)
            correct += (log_probs.argmax(2) == labels).sum(1)
        return (loss / len(split)).tolist(), (correct.double() / len(split)).tolist()

    def evaluate(self, split, models):
        """Mean loss and accuracy of each model in ``models`` on ``split``; None for others."""
        models = set(models)
        if not models:
            return [None] * self.K, [None] * self.K
        loss, accuracy = self._evaluate(split)
        return ([loss[k] if k in models else None for k in range(self.K)],
                [accuracy[k] if k in models else None for k in range(self.K)])

    def evaluate_validation(self, models):
        """Mean loss and accuracy of each model in ``models`` on its replicate's validation
        fold (one evaluation per distinct fold among them); None for the others."""
        loss, accuracy = [None] * self.K, [None] * self.K
        groups = self.group_of_model.tolist()
        for split in {id(self.validation[groups[k]]): self.validation[groups[k]]
                      for k in models}.values():
            every_loss, every_accuracy = self._evaluate(split)
            for k in models:
                if self.validation[groups[k]] is split:
                    loss[k], accuracy[k] = every_loss[k], every_accuracy[k]
        return loss, accuracy

    def stop(self, k):
        """Model k trains no more: its weights now are the ones it keeps."""
        self.stopped[k] = self.torch_step.state_dict(k)

    def state_dict(self, k):
        return self.stopped.get(k) or self.torch_step.state_dict(k)

    def close(self):
        """Nothing to release beyond its tensors."""

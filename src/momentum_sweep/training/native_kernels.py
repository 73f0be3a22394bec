"""Numba kernels of the native CPU step (see ``native_step`` for the layout and the method).

One call trains one model for one epoch, so threads split by whole models and each model's
arithmetic is the same whichever models share the pass. Plain IEEE float32 arithmetic: no
fastmath, so a multiply and an add are never fused differently in different places.

This file imports nothing from the package: its compiled code is cached by its content.
"""

import numba as nb
import numpy as np


@nb.njit(nogil=True, cache=True)
def batch_structure(indptr, pixels, values, order, batch_size, inputs):
    """Every batch of an epoch, pixel by pixel: the sparse first layer reads it row by row.

    indptr [N+1], pixels [nnz], values [nnz]: the images, compressed by row (CSR). order [N]:
    the epoch's order. Returns, for step s, the active pixels act[act_ptr[s]:act_ptr[s+1]]
    (non-zero in some image of the batch), and for active pixel a its entries
    ent_ptr[a]:ent_ptr[a+1]: (image within the batch, pixel value).
    """
    n = len(order)
    steps = (n + batch_size - 1) // batch_size
    nnz = 0
    for i in range(n):
        nnz += indptr[order[i] + 1] - indptr[order[i]]
    ent_image = np.empty(nnz, np.uint8)
    ent_value = np.empty(nnz, np.uint8)
    act = np.empty(nnz, np.uint16)                 # at most one active pixel per entry
    act_ptr = np.empty(steps + 1, np.int64)
    ent_ptr = np.empty(nnz + 1, np.int64)
    slot = np.full(inputs, -1, np.int64)           # pixel -> its index among the active ones
    fill = np.zeros(inputs, np.int64)              # pixel -> next free entry
    n_act = 0
    e = 0
    act_ptr[0] = 0
    for s in range(steps):
        start = s * batch_size
        stop = min(start + batch_size, n)
        first = n_act
        for b in range(stop - start):
            img = order[start + b]
            for q in range(indptr[img], indptr[img + 1]):
                p = pixels[q]
                if slot[p] < 0:
                    slot[p] = n_act
                    act[n_act] = p
                    fill[p] = 0
                    n_act += 1
                fill[p] += 1
        for a in range(first, n_act):
            p = act[a]
            ent_ptr[a] = e
            e += fill[p]
            fill[p] = ent_ptr[a]
        for b in range(stop - start):
            img = order[start + b]
            for q in range(indptr[img], indptr[img + 1]):
                p = pixels[q]
                ent_image[fill[p]] = b
                ent_value[fill[p]] = values[q]
                fill[p] += 1
        for a in range(first, n_act):
            slot[act[a]] = -1
        act_ptr[s + 1] = n_act
    ent_ptr[n_act] = e
    return act[:n_act].copy(), act_ptr, ent_ptr[:n_act + 1].copy(), ent_image, ent_value


@nb.njit(nogil=True, cache=True)
def catch_up(w1, v1, last, decay, drift, step):
    """Apply every pixel row's deferred momentum steps, up to global step ``step``."""
    for p in range(w1.shape[0] - 1):
        gap = step - last[p]
        if gap > 0:
            s = drift[gap]
            d = decay[gap]
            for j in range(w1.shape[1]):
                w1[p, j] -= v1[p, j] * s
                v1[p, j] *= d
            last[p] = step


@nb.njit(nogil=True, cache=True)
def _forward_later(hs, B, sizes, widths, W):
    """Layers 2..L for a batch: hs[l] = relu(hs[l-1] @ W[l-1] + bias), no ReLU on the logits."""
    L = len(sizes) - 1
    for l in range(1, L):
        fi = sizes[l]
        fo = widths[l + 1]
        for b in range(B):
            for j in range(fo):
                hs[l, b, j] = W[l - 1, fi, j]
            for i in range(fi):
                x = hs[l - 1, b, i]
                if x != 0:                         # ReLU zeros, about half: skip them
                    for j in range(fo):
                        hs[l, b, j] += x * W[l - 1, i, j]
            if l < L - 1:
                for j in range(fo):
                    hs[l, b, j] = max(hs[l, b, j], np.float32(0))


@nb.njit(nogil=True, cache=True)
def _log_softmax_row(hs, l, b, C):
    """log-sum-exp of the logits hs[l, b, :C], and their argmax."""
    m = hs[l, b, 0]
    arg = 0
    for j in range(1, C):
        if hs[l, b, j] > m:
            m = hs[l, b, j]
            arg = j
    total = np.float32(0)
    for j in range(C):
        total += np.exp(hs[l, b, j] - m)
    return m + np.log(total), arg


@nb.njit(nogil=True, cache=True)
def train_epoch(w1, v1, W, Wt, V, last, sizes, widths, lr, mu, decay, drift, scale,
                act, act_ptr, ent_ptr, ent_image, ent_value, labels, batch_size, step, hs, dh):
    """One epoch of one model; returns (summed training loss, correct predictions, next step).

    w1, v1 [785, H1]: first layer (row 784: bias) and its velocity, pixel-major;
    W, V [L-1, in+1, out]: later layers (last row: bias); Wt [L-1, out, in]: W transposed;
    last [784]: the step up to which each pixel row is current; labels: in batch order;
    decay[n] = mu^n and drift[n] = mu + ... + mu^n; hs [L, B, width], dh [width]: scratch.
    """
    P = w1.shape[0] - 1
    H = w1.shape[1]
    L = len(sizes) - 1
    C = sizes[L]
    n = len(labels)
    loss = 0.0
    correct = 0
    for s in range(len(act_ptr) - 1):
        start = s * batch_size
        B = min(batch_size, n - start)
        alpha = np.float32(lr) / np.float32(B)  # as the PyTorch step: float32 lr over B
        # Pass A: bring each active row up to date, decay its velocity for this step, and add
        # its contribution to the first layer's output of every image that has the pixel.
        for b in range(B):
            for j in range(H):
                hs[0, b, j] = w1[P, j]
        for a in range(act_ptr[s], act_ptr[s + 1]):
            p = act[a]
            gap = step - last[p]
            sd = drift[gap]
            dd = decay[gap + 1]
            for j in range(H):
                w1[p, j] -= v1[p, j] * sd
                v1[p, j] *= dd
            for e in range(ent_ptr[a], ent_ptr[a + 1]):
                x = scale[ent_value[e]]
                b = ent_image[e]
                for j in range(H):
                    hs[0, b, j] += x * w1[p, j]
        for b in range(B):
            for j in range(H):
                hs[0, b, j] = max(hs[0, b, j], np.float32(0))
        _forward_later(hs, B, sizes, widths, W)
        # Loss, then lr/B * d(mean cross-entropy)/d(logits) = lr/B * (softmax - onehot).
        for b in range(B):
            y = labels[start + b]
            lse, arg = _log_softmax_row(hs, L - 1, b, C)
            loss += lse - hs[L - 1, b, y]
            if arg == y:
                correct += 1
            for j in range(C):
                hs[L - 1, b, j] = np.exp(hs[L - 1, b, j] - lse) * alpha
            hs[L - 1, b, y] -= alpha
        # Later layers, last first: velocity, gradient of the input (with W before the update,
        # through its transposed copy, so the loop runs along memory), then the update.
        for l in range(L - 1, 0, -1):
            fi = sizes[l]
            wi = widths[l]
            fo = widths[l + 1]
            for i in range(fi + 1):
                for j in range(fo):
                    V[l - 1, i, j] *= mu
            for b in range(B):
                for i in range(fi):
                    x = hs[l - 1, b, i]
                    if x != 0:
                        for j in range(fo):
                            V[l - 1, i, j] += x * hs[l, b, j]
                for j in range(fo):
                    V[l - 1, fi, j] += hs[l, b, j]
                for i in range(wi):
                    dh[i] = 0
                for j in range(fo):
                    d = hs[l, b, j]
                    if d != 0:
                        for i in range(wi):     # padded inputs: zero weights, zero gradient
                            dh[i] += d * Wt[l - 1, j, i]
                for i in range(wi):             # through the ReLU: nothing where it was off
                    hs[l - 1, b, i] = dh[i] if hs[l - 1, b, i] > 0 else np.float32(0)
            for i in range(fi + 1):
                for j in range(fo):
                    W[l - 1, i, j] -= V[l - 1, i, j]
            for j in range(fo):
                for i in range(fi):
                    Wt[l - 1, j, i] = W[l - 1, i, j]
        # Pass B: each active row's gradient straight into its (already decayed) velocity,
        # then its update. Inactive rows wait: pass A of their next active step catches up.
        for a in range(act_ptr[s], act_ptr[s + 1]):
            p = act[a]
            for e in range(ent_ptr[a], ent_ptr[a + 1]):
                x = scale[ent_value[e]]
                b = ent_image[e]
                for j in range(H):
                    v1[p, j] += x * hs[0, b, j]
            for j in range(H):
                w1[p, j] -= v1[p, j]
            last[p] = step + 1
        for j in range(H):
            v1[P, j] *= mu
        for b in range(B):
            for j in range(H):
                v1[P, j] += hs[0, b, j]
        for j in range(H):
            w1[P, j] -= v1[P, j]
        step += 1
    return loss, correct, step


@nb.njit(nogil=True, cache=True)
def evaluate(w1, W, sizes, widths, scale, indptr, pixels, values, labels, hs):
    """Summed loss and correct predictions of one model (all rows current) on a CSR split."""
    P = w1.shape[0] - 1
    H = w1.shape[1]
    L = len(sizes) - 1
    C = sizes[L]
    loss = 0.0
    correct = 0
    for img in range(len(labels)):
        for j in range(H):
            hs[0, 0, j] = w1[P, j]
        for q in range(indptr[img], indptr[img + 1]):
            x = scale[values[q]]
            p = pixels[q]
            for j in range(H):
                hs[0, 0, j] += x * w1[p, j]
        for j in range(H):
            hs[0, 0, j] = max(hs[0, 0, j], np.float32(0))
        _forward_later(hs, 1, sizes, widths, W)
        lse, arg = _log_softmax_row(hs, L - 1, 0, C)
        loss += lse - hs[L - 1, 0, labels[img]]
        if arg == labels[img]:
            correct += 1
    return loss, correct

/* The native CPU step's kernels (see native_step.py for the method, native_kernels.py for how
 * this file is compiled and called).
 *
 * One call of train_steps trains one model for a run of steps of an epoch, so threads split by
 * models and each model's arithmetic is the same whichever models share the pass. Plain IEEE
 * float32 arithmetic, compiled with -ffp-contract=off: a multiply and an add are never fused,
 * and each vector lane computes exactly what a scalar loop would, whatever the vector width.
 *
 * Layout, row-major, widths padded to a multiple of 8 with zero weights that stay zero:
 *   w1, v1  [P + 1, H]          first layer and its velocity, pixel-major (row P: bias)
 *   W, V    [L - 1, M + 1, M]   later layers, input-major (row sizes[l]: bias)
 *   Wt      [L - 1, M, M]       W transposed, kept in step with W
 *   hs      [L, batch, M]       scratch: each layer's outputs, then their gradients
 * with H = widths[1] and M = the largest padded width.
 *
 * The entry points take the structures below, mirrored field by field in native_kernels.py
 * (ctypes); `layout` reports their sizes and offsets so that a test holds the two together. */

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef float v8 __attribute__((vector_size(32)));      /* 8 floats: one AVX register */
typedef int32_t v8i __attribute__((vector_size(32)));

static inline v8 load(const float *p) { v8 r; memcpy(&r, p, sizeof r); return r; }
static inline void store(float *p, v8 x) { memcpy(p, &x, sizeof x); }
/* max(x, 0), keeping NaN (as torch.relu) */
static inline v8 relu(v8 x) { return (v8)((v8i)x & ~(v8i)(x < 0)); }
/* x where on > 0, else 0: the gradient through a ReLU */
static inline v8 where_positive(v8 on, v8 x) { return (v8)((v8i)x & (v8i)(on > 0)); }

/* A loop over a row holds up to CHUNK floats in registers (8 of the 16 vector registers): a row
 * is done in chunks of 64 floats, then one of what is left (rows are padded to 8). NV, the
 * vectors in the chunk, is a constant in each copy of the body, so the compiler keeps them in
 * registers. */
#define CHUNK 64
#define CHUNK_CASE(k, c, NV, ...) case k: { const int NV = k; __VA_ARGS__; c += 8 * k; break; }
#define FOR_CHUNKS(n, c, NV, ...)                                                           \
    for (int64_t c = 0; c < (n);) {                                                         \
        switch ((n) - c >= CHUNK ? CHUNK / 8 : ((n) - c) / 8) {                             \
        CHUNK_CASE(8, c, NV, __VA_ARGS__) CHUNK_CASE(7, c, NV, __VA_ARGS__)                 \
        CHUNK_CASE(6, c, NV, __VA_ARGS__) CHUNK_CASE(5, c, NV, __VA_ARGS__)                 \
        CHUNK_CASE(4, c, NV, __VA_ARGS__) CHUNK_CASE(3, c, NV, __VA_ARGS__)                 \
        CHUNK_CASE(2, c, NV, __VA_ARGS__) CHUNK_CASE(1, c, NV, __VA_ARGS__)                 \
        }                                                                                   \
    }

/* The network's shape. */
typedef struct {
    int64_t L;              /* layers */
    const int64_t *sizes;   /* [L + 1] */
    const int64_t *widths;  /* [L + 1], padded to 8 (widths[0] = P) */
    int64_t M;              /* row length of W, Wt and hs */
    int64_t batch;          /* rows per layer of hs */
} Net;

/* One model: its parameters, its momentum tables and its scratch (native_step.NativeModel). */
typedef struct {
    float *w1, *v1;         /* [P + 1, H] */
    float *W, *Wt, *V;      /* [L - 1, M + 1, M], [L - 1, M, M], [L - 1, M + 1, M] */
    int64_t *last;          /* [P]: the step up to which pixel row p is current */
    const float *decay;     /* [T + 2]: decay[n] = mu^n */
    const float *drift;     /* [T + 2]: drift[n] = mu + ... + mu^n */
    float *hs;              /* [L, batch, M] */
    float lr, mu;
    int64_t nesterov;       /* 1: Nesterov's update; 0: heavy-ball */
} Model;

/* Images compressed by row: image i's non-zero pixels are pixels[indptr[i]:indptr[i + 1]],
 * with their values (0-255). */
typedef struct {
    const int64_t *indptr;  /* [n + 1] */
    const uint16_t *pixels; /* [nnz] */
    const uint8_t *values;  /* [nnz] */
    int64_t n;
} Images;

/* An epoch's batches of one replicate, pixel by pixel, as pass B reads them (written by
 * batch_structure): the order and labels of the epoch, and for each step s its active pixels
 * act[act_ptr[s]:act_ptr[s + 1]]; for each active pixel a, the steps until it is next active
 * (ahead >= 0) or, if it is not active again in its segment, -1 minus the steps to the
 * segment's end (ahead < 0), whether it is its first time in the segment (first), and its
 * entries ent_ptr[a]:ent_ptr[a + 1] (the batch's images that have it, and their values).
 * Segments: the epoch cut at the steps in sync (ascending, within the epoch), after which every
 * row is brought up to date (catch_up), so that the weights can be evaluated there; the epoch
 * is one segment when there is none. */
typedef struct {
    const int64_t *order;   /* [n] */
    const int64_t *labels;  /* [n]: in that order */
    int64_t n, batch_size;
    uint16_t *act;          /* [active] */
    int64_t *act_ptr;       /* [steps + 1] */
    int32_t *ahead;         /* [active] */
    uint8_t *first;         /* [active] */
    int32_t *ent_ptr;       /* [active + 1] */
    uint16_t *ent_image;    /* [nnz] */
    uint8_t *ent_value;     /* [nnz] */
    const int64_t *sync;    /* [n_sync]: the steps that start a segment */
    int64_t n_sync;
} Batches;

/* sizeof each structure, then the offset of each of its fields, in declaration order. */
int64_t layout(int64_t *out)
{
    int64_t i = 0;
#define SIZE(T) out[i++] = (int64_t)sizeof(T)
#define AT(T, f) out[i++] = (int64_t)offsetof(T, f)
    SIZE(Net); AT(Net, L); AT(Net, sizes); AT(Net, widths); AT(Net, M); AT(Net, batch);
    SIZE(Model); AT(Model, w1); AT(Model, v1); AT(Model, W); AT(Model, Wt); AT(Model, V);
    AT(Model, last); AT(Model, decay); AT(Model, drift); AT(Model, hs); AT(Model, lr);
    AT(Model, mu); AT(Model, nesterov);
    SIZE(Images); AT(Images, indptr); AT(Images, pixels); AT(Images, values); AT(Images, n);
    SIZE(Batches); AT(Batches, order); AT(Batches, labels); AT(Batches, n);
    AT(Batches, batch_size); AT(Batches, act); AT(Batches, act_ptr); AT(Batches, ahead);
    AT(Batches, first); AT(Batches, ent_ptr); AT(Batches, ent_image); AT(Batches, ent_value);
    AT(Batches, sync); AT(Batches, n_sync);
#undef SIZE
#undef AT
    return i;
}

static inline float *layer_out(const Net *net, float *hs, int64_t l, int64_t b)
{
    return hs + (l * net->batch + b) * net->M;
}

/* out = bias + sum over the listed rows of value * row; ReLU'd. */
static inline void sparse_sum(float *restrict out, const float *restrict bias,
                              const float *restrict rows, int64_t stride,
                              const uint16_t *restrict index, const uint8_t *restrict value,
                              int64_t count, const float *restrict scale, const int NV)
{
    v8 acc[CHUNK / 8];
    for (int k = 0; k < NV; k++) acc[k] = load(bias + 8 * k);
    for (int64_t q = 0; q < count; q++) {
        float x = scale[value[q]];
        const float *row = rows + index[q] * stride;
        for (int k = 0; k < NV; k++) acc[k] += x * load(row + 8 * k);
    }
    for (int k = 0; k < NV; k++) store(out + 8 * k, relu(acc[k]));
}

/* The first layer of one image: its non-zero pixels' rows, summed in registers. */
static void first_layer(float *restrict out, const float *restrict w1, int64_t P, int64_t H,
                        const uint16_t *pixels, const uint8_t *values, int64_t count,
                        const float *scale)
{
    FOR_CHUNKS(H, c, NV, sparse_sum(out + c, w1 + P * H + c, w1 + c, H, pixels, values, count,
                                    scale, NV));
}

/* Layers 2..L of B images: relu(x @ W + bias), no ReLU on the logits. Zero inputs are
 * multiplied like any other: a branch on them is mispredicted half the time (ReLU zeros half). */
static void forward_later(const Net *net, float *hs, int64_t B, const float *W)
{
    for (int64_t l = 1; l < net->L; l++) {
        const int64_t fi = net->sizes[l], fo = net->widths[l + 1], M = net->M;
        const float *Wl = W + (l - 1) * (M + 1) * M;
        const int last = l == net->L - 1;
        for (int64_t b = 0; b < B; b++) {
            const float *x = layer_out(net, hs, l - 1, b);
            float *out = layer_out(net, hs, l, b);
            FOR_CHUNKS(fo, c, NV, {
                v8 acc[CHUNK / 8];
                for (int k = 0; k < NV; k++) acc[k] = load(Wl + fi * M + c + 8 * k);
                for (int64_t i = 0; i < fi; i++)
                    for (int k = 0; k < NV; k++) acc[k] += x[i] * load(Wl + i * M + c + 8 * k);
                for (int k = 0; k < NV; k++) store(out + c + 8 * k, last ? acc[k] : relu(acc[k]));
            });
        }
    }
}

/* log-sum-exp of z[0:C] in float32; *argmax: the first largest */
static float log_sum_exp(const float *z, int64_t C, int64_t *argmax)
{
    float m = z[0];
    *argmax = 0;
    for (int64_t j = 1; j < C; j++)
        if (z[j] > m) { m = z[j]; *argmax = j; }
    float total = 0;
    for (int64_t j = 0; j < C; j++) total += expf(z[j] - m);
    return m + logf(total);
}

/* Nesterov's step of NV vectors of a row whose gradient sums (lr*grad) are g: v = mu*v + g, and
 * w -= g + mu*v with that new v. */
static inline void nesterov_step(float *restrict w, float *restrict v, const v8 *g, float mu,
                                 const int NV)
{
    for (int k = 0; k < NV; k++) {
        const v8 acc = mu * load(v + 8 * k) + g[k];
        store(v + 8 * k, acc);
        store(w + 8 * k, load(w + 8 * k) - g[k] - mu * acc);
    }
}

/* Later layers' backward pass, last first, for B images whose hs[L-1] holds
 * lr/B * d(loss)/d(logits): velocity and update of W (heavy-ball: v = mu*v + lr*g, w -= v;
 * Nesterov: the same v, w -= lr*g + mu*v), then the gradient of each layer's input (through W
 * before the update, via Wt, so the loop runs along memory) and its ReLU; leaves the first
 * layer's in hs[0]. */
static void backward_later(const Net *net, float *hs, int64_t B, float *W, float *Wt, float *V,
                           float mu, int64_t nesterov)
{
    const int64_t M = net->M;
    for (int64_t l = net->L - 1; l >= 1; l--) {
        const int64_t fi = net->sizes[l], wi = net->widths[l], fo = net->widths[l + 1];
        float *Wl = W + (l - 1) * (M + 1) * M, *Vl = V + (l - 1) * (M + 1) * M;
        float *Wtl = Wt + (l - 1) * M * M;
        for (int64_t i = 0; i <= fi; i++) {   /* row fi: the bias, whose input is 1 */
            float *v = Vl + i * M, *w = Wl + i * M;
            FOR_CHUNKS(fo, c, NV, {
                v8 acc[CHUNK / 8], g[CHUNK / 8];
                if (nesterov) {
                    for (int k = 0; k < NV; k++) g[k] = (v8){0};
                    for (int64_t b = 0; b < B; b++) {
                        const float x = i < fi ? layer_out(net, hs, l - 1, b)[i] : 1.0f;
                        const float *d = layer_out(net, hs, l, b) + c;
                        for (int k = 0; k < NV; k++) g[k] += x * load(d + 8 * k);
                    }
                    nesterov_step(w + c, v + c, g, mu, NV);
                } else {
                    for (int k = 0; k < NV; k++) acc[k] = mu * load(v + c + 8 * k);
                    for (int64_t b = 0; b < B; b++) {
                        const float x = i < fi ? layer_out(net, hs, l - 1, b)[i] : 1.0f;
                        const float *d = layer_out(net, hs, l, b) + c;
                        for (int k = 0; k < NV; k++) acc[k] += x * load(d + 8 * k);
                    }
                    for (int k = 0; k < NV; k++) {
                        store(v + c + 8 * k, acc[k]);
                        store(w + c + 8 * k, load(w + c + 8 * k) - acc[k]);
                    }
                }
            });
        }
        for (int64_t b = 0; b < B; b++) {
            const float *d = layer_out(net, hs, l, b);
            float *x = layer_out(net, hs, l - 1, b);
            FOR_CHUNKS(wi, c, NV, {
                v8 acc[CHUNK / 8];
                for (int k = 0; k < NV; k++) acc[k] = (v8){0};
                for (int64_t j = 0; j < fo; j++)
                    for (int k = 0; k < NV; k++) acc[k] += d[j] * load(Wtl + j * M + c + 8 * k);
                for (int k = 0; k < NV; k++)
                    store(x + c + 8 * k, where_positive(load(x + c + 8 * k), acc[k]));
            });
        }
        for (int64_t j = 0; j < fo; j++)
            for (int64_t i = 0; i < fi; i++) Wtl[j * M + i] = Wl[i * M + j];
    }
}

/* Images come in random order, each a cache miss: start fetching the non-zeros of image
 * order[i] (as many as a typical image has) and the offsets of image order[i + ahead], a batch
 * before they are read (measured gains: docs/performance.md).
 * always_inline: GCC takes a function that only prefetches for one without effects and drops
 * its calls. */
static inline __attribute__((always_inline)) void
prefetch_image(const int64_t *indptr, const uint16_t *pixels, const uint8_t *values,
               const int64_t *order, int64_t n, int64_t i, int64_t ahead)
{
    if (i < n) {
        const int64_t q = indptr[order[i]];
        for (int l = 0; l < 160; l += 32) __builtin_prefetch(pixels + q + l);
        for (int l = 0; l < 160; l += 64) __builtin_prefetch(values + q + l);
    }
    if (i + ahead < n) __builtin_prefetch(indptr + order[i + ahead]);
}

/* A segment ends before step `end`: each pixel's last active index in it skips the steps to
 * there (ahead = -1 - those steps), and its next use starts the next segment. */
static void end_segment(int64_t *previous, const int64_t *previous_step, int32_t *ahead,
                        int64_t P, int64_t end)
{
    for (int64_t p = 0; p < P; p++) {
        if (previous[p] >= 0) ahead[previous[p]] = (int32_t)(previous_step[p] - end);
        previous[p] = -1;
    }
}

/* Every batch of an epoch, pixel by pixel: pass B reads it row by row. For step s, the active
 * pixels (non-zero in some image of the batch) are act[act_ptr[s]:act_ptr[s+1]], in order of
 * first appearance; active pixel a has entries ent_ptr[a]:ent_ptr[a+1]: (image within the
 * batch, pixel value). ahead[a]: the steps its pixel then skips before it is next active in its
 * segment, or -1 minus the steps to the segment's end if it is not; first[a]: 1 if it is the
 * pixel's first step in its segment (see Batches). act,
 * ahead, first, ent_ptr: room for every active pixel (and one more in ent_ptr); ent_image,
 * ent_value: for every non-zero of the epoch (fewer than 2^31). Returns the number of active
 * pixels. */
int64_t batch_structure(const Images *images, Batches *out, int64_t P)
{
    const int64_t *restrict indptr = images->indptr;
    const uint16_t *restrict pixels = images->pixels;
    const uint8_t *restrict values = images->values;
    const int64_t *restrict order = out->order;
    const int64_t n = out->n, batch_size = out->batch_size;
    uint16_t *restrict act = out->act;
    int64_t *restrict act_ptr = out->act_ptr;
    int32_t *restrict ahead = out->ahead;
    uint8_t *restrict first = out->first;
    int32_t *restrict ent_ptr = out->ent_ptr;
    uint16_t *restrict ent_image = out->ent_image;
    uint8_t *restrict ent_value = out->ent_value;
    int64_t slot[P], fill[P];   /* pixel -> its index among the active ones; next free entry */
    int64_t previous[P], previous_step[P];  /* pixel -> its last active index (or -1), step */
    for (int64_t p = 0; p < P; p++) slot[p] = previous[p] = -1;
    int64_t n_act = 0, e = 0, next_sync = 0;
    act_ptr[0] = 0;
    for (int64_t start = 0, s = 0; start < n; start += batch_size, s++) {
        const int64_t B = n - start < batch_size ? n - start : batch_size, begin = n_act;
        if (next_sync < out->n_sync && out->sync[next_sync] == s) {
            end_segment(previous, previous_step, ahead, P, s);
            next_sync++;
        }
        for (int64_t b = 0; b < B; b++) {
            const int64_t img = order[start + b];
            prefetch_image(indptr, pixels, values, order, n, start + batch_size + b, batch_size);
            for (int64_t q = indptr[img]; q < indptr[img + 1]; q++) {
                const uint16_t p = pixels[q];
                if (slot[p] < 0) {
                    slot[p] = n_act;
                    act[n_act] = p;
                    first[n_act] = previous[p] < 0;
                    if (previous[p] >= 0)
                        ahead[previous[p]] = (int32_t)(s - previous_step[p] - 1);
                    previous[p] = n_act++;
                    previous_step[p] = s;
                    fill[p] = 0;
                }
                fill[p]++;
            }
        }
        for (int64_t a = begin; a < n_act; a++) {   /* counts -> where each pixel's entries go */
            const uint16_t p = act[a];
            ent_ptr[a] = (int32_t)e;
            e += fill[p];
            fill[p] = ent_ptr[a];
        }
        for (int64_t b = 0; b < B; b++) {
            const int64_t img = order[start + b];
            for (int64_t q = indptr[img]; q < indptr[img + 1]; q++) {
                const int64_t at = fill[pixels[q]]++;
                ent_image[at] = (uint16_t)b;
                ent_value[at] = values[q];
            }
        }
        for (int64_t a = begin; a < n_act; a++) slot[act[a]] = -1;
        act_ptr[s + 1] = n_act;
    }
    end_segment(previous, previous_step, ahead, P, (n + batch_size - 1) / batch_size);
    ent_ptr[n_act] = (int32_t)e;
    return n_act;
}

/* A row's skipped momentum steps in closed form: w -= v * drift, v *= decay. */
static inline void skip_steps(float *restrict w, float *restrict v, int64_t H, float drift,
                              float decay)
{
    for (int64_t j = 0; j < H; j += 8) {
        const v8 vj = load(v + j);
        store(w + j, load(w + j) - vj * drift);
        store(v + j, vj * decay);
    }
}

/* Apply every pixel row's deferred momentum steps, up to global step `step`:
 * after n skipped steps, w -= v * drift[n] and v *= decay[n]. */
void catch_up(const Model *m, int64_t P, int64_t H, int64_t step)
{
    float *restrict w1 = m->w1, *restrict v1 = m->v1;
    int64_t *restrict last = m->last;
    const float *restrict decay = m->decay, *restrict drift = m->drift;
    for (int64_t p = 0; p < P; p++) {
        const int64_t gap = step - last[p];
        if (gap <= 0) continue;
        skip_steps(w1 + p * H, v1 + p * H, H, drift[gap], decay[gap]);
        last[p] = step;
    }
}

/* Steps [from, to) of one model's epoch, the first of them global step `step`. labels: in batch
 * order; decay[n] = mu^n, drift[n] = mu + ... + mu^n (Nesterov: mu^2 + ... + mu^(n+1), what n
 * steps without a gradient subtract in units of v);
 * last[p]: the step up to which pixel row p is current (its next active step, if pass B has
 * already applied the steps it skips until then). out: summed training loss, correct
 * predictions; step_loss[s]: the summed loss of step s's batch. Returns the global step after
 * them. */
int64_t train_steps(const Net *net, const Model *m, const float *restrict scale,
                    const Images *images, const Batches *batches, int64_t from, int64_t to,
                    int64_t step, double *restrict out, double *restrict step_loss)
{
    float *restrict w1 = m->w1, *restrict v1 = m->v1, *restrict W = m->W, *restrict Wt = m->Wt;
    float *restrict V = m->V, *restrict hs = m->hs;
    int64_t *restrict last = m->last;
    const float *restrict decay = m->decay, *restrict drift = m->drift;
    const float lr = m->lr, mu = m->mu;
    const int64_t *restrict indptr = images->indptr;
    const uint16_t *restrict pixels = images->pixels;
    const uint8_t *restrict values = images->values;
    const int64_t *restrict order = batches->order, *restrict labels = batches->labels;
    const int64_t n = batches->n, batch_size = batches->batch_size;
    const uint16_t *restrict act = batches->act;
    const int64_t *restrict act_ptr = batches->act_ptr;
    const int32_t *restrict ahead = batches->ahead;
    const uint8_t *restrict first = batches->first;
    const int32_t *restrict ent_ptr = batches->ent_ptr;
    const uint16_t *restrict ent_image = batches->ent_image;
    const uint8_t *restrict ent_value = batches->ent_value;
    const int64_t L = net->L, P = net->widths[0], H = net->widths[1], C = net->sizes[L];
    const int64_t nesterov = m->nesterov;
    double loss = 0;
    int64_t correct = 0;
    for (int64_t s = from; s < to; s++) {
        const int64_t start = s * batch_size, B = n - start < batch_size ? n - start : batch_size;
        const float alpha = lr / (float)B;   /* as the PyTorch step: float32 lr over B */
        for (int64_t b = 0; b < batch_size; b++)
            prefetch_image(indptr, pixels, values, order, n, start + batch_size + b, batch_size);
        /* Pass A: bring the rows active for the first time this epoch up to date, and decay
         * their velocity for this step (pass B of their last step did it for the others)... */
        for (int64_t a = act_ptr[s]; a < act_ptr[s + 1]; a++) {
            if (!first[a]) continue;
            const int64_t gap = step - last[act[a]];
            skip_steps(w1 + act[a] * H, v1 + act[a] * H, H, drift[gap], decay[gap + 1]);
        }
        /* ...then the first layer, image by image. */
        for (int64_t b = 0; b < B; b++) {
            const int64_t img = order[start + b], q = indptr[img];
            first_layer(layer_out(net, hs, 0, b), w1, P, H, pixels + q, values + q,
                        indptr[img + 1] - q, scale);
        }
        forward_later(net, hs, B, W);
        /* Loss, then lr/B * d(mean cross-entropy)/d(logits) = lr/B * (softmax - onehot). */
        double batch_loss = 0;
        for (int64_t b = 0; b < B; b++) {
            float *z = layer_out(net, hs, L - 1, b);
            const int64_t y = labels[start + b];
            int64_t argmax;
            const float lse = log_sum_exp(z, C, &argmax);
            batch_loss += lse - z[y];
            correct += argmax == y;
            for (int64_t j = 0; j < C; j++) z[j] = expf(z[j] - lse) * alpha;
            z[y] -= alpha;
        }
        loss += batch_loss;
        step_loss[s] = batch_loss;
        backward_later(net, hs, B, W, Wt, V, mu, nesterov);
        /* Pass B: each active row's gradient straight into its (already decayed) velocity,
         * its update, then, while the row is in registers, the steps it skips until it is next
         * active, with its velocity's decay for that step; or, if it is not active again in
         * its segment, the steps to the segment's end. Nesterov's update subtracts lr*g +
         * mu*v where heavy-ball subtracts v; its drift table holds mu times heavy-ball's. */
        for (int64_t a = act_ptr[s]; a < act_ptr[s + 1]; a++) {
            float *w = w1 + act[a] * H, *v = v1 + act[a] * H;
            const int64_t e0 = ent_ptr[a], e1 = ent_ptr[a + 1];
            const int64_t skip = ahead[a] >= 0 ? ahead[a] : -1 - ahead[a];
            const float sd = drift[skip], dd = decay[ahead[a] >= 0 ? skip + 1 : skip];
            FOR_CHUNKS(H, c, NV, {
                v8 acc[CHUNK / 8], g[CHUNK / 8];
                if (nesterov) {
                    for (int k = 0; k < NV; k++) g[k] = (v8){0};
                    for (int64_t e = e0; e < e1; e++) {
                        const float x = scale[ent_value[e]];
                        const float *d = layer_out(net, hs, 0, ent_image[e]) + c;
                        for (int k = 0; k < NV; k++) g[k] += x * load(d + 8 * k);
                    }
                    for (int k = 0; k < NV; k++) {
                        acc[k] = load(v + c + 8 * k) + g[k];
                        store(w + c + 8 * k,
                              load(w + c + 8 * k) - g[k] - mu * acc[k] - acc[k] * sd);
                        store(v + c + 8 * k, acc[k] * dd);
                    }
                } else {
                    for (int k = 0; k < NV; k++) acc[k] = load(v + c + 8 * k);
                    for (int64_t e = e0; e < e1; e++) {
                        const float x = scale[ent_value[e]];
                        const float *d = layer_out(net, hs, 0, ent_image[e]) + c;
                        for (int k = 0; k < NV; k++) acc[k] += x * load(d + 8 * k);
                    }
                    for (int k = 0; k < NV; k++) {
                        store(w + c + 8 * k, load(w + c + 8 * k) - acc[k] - acc[k] * sd);
                        store(v + c + 8 * k, acc[k] * dd);
                    }
                }
            });
            last[act[a]] = step + 1 + skip;
        }
        float *w = w1 + P * H, *v = v1 + P * H;   /* the bias row is in every step */
        FOR_CHUNKS(H, c, NV, {
            v8 acc[CHUNK / 8], g[CHUNK / 8];
            if (nesterov) {
                for (int k = 0; k < NV; k++) g[k] = (v8){0};
                for (int64_t b = 0; b < B; b++)
                    for (int k = 0; k < NV; k++) g[k] += load(layer_out(net, hs, 0, b) + c + 8 * k);
                nesterov_step(w + c, v + c, g, mu, NV);
            } else {
                for (int k = 0; k < NV; k++) acc[k] = mu * load(v + c + 8 * k);
                for (int64_t b = 0; b < B; b++)
                    for (int k = 0; k < NV; k++) acc[k] += load(layer_out(net, hs, 0, b) + c + 8 * k);
                for (int k = 0; k < NV; k++) {
                    store(v + c + 8 * k, acc[k]);
                    store(w + c + 8 * k, load(w + c + 8 * k) - acc[k]);
                }
            }
        });
        step++;
    }
    out[0] = loss;
    out[1] = (double)correct;
    return step;
}

/* Summed loss and correct predictions of one model (every row current) on n images (CSR). */
void evaluate(const Net *shape, const Model *m, const float *restrict scale,
              const Images *images, const int64_t *restrict labels, double *restrict out)
{
    const Net net = {shape->L, shape->sizes, shape->widths, shape->M, 1};  /* one image at a time */
    const float *restrict w1 = m->w1, *restrict W = m->W;
    float *restrict hs = m->hs;
    const int64_t *restrict indptr = images->indptr;
    const uint16_t *restrict pixels = images->pixels;
    const uint8_t *restrict values = images->values;
    const int64_t n = images->n, L = net.L, P = net.widths[0], H = net.widths[1];
    const int64_t C = net.sizes[L];
    double loss = 0;
    int64_t correct = 0;
    for (int64_t img = 0; img < n; img++) {
        const int64_t q = indptr[img];
        first_layer(hs, w1, P, H, pixels + q, values + q, indptr[img + 1] - q, scale);
        forward_later(&net, hs, 1, W);
        const float *z = layer_out(&net, hs, L - 1, 0);
        int64_t argmax;
        loss += log_sum_exp(z, C, &argmax) - z[labels[img]];
        correct += argmax == labels[img];
    }
    out[0] = loss;
    out[1] = (double)correct;
}

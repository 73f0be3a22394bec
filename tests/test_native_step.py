"""The native CPU step agrees with torch.optim.SGD and the PyTorch step, and each model's result
is independent of the models it shares a pass with, and of the run."""

import gc
import weakref

import numpy as np
import pytest
import torch

import platform
import shutil
import subprocess

from momentum_sweep.training import model, native_kernels, trainer
from momentum_sweep.vocabulary.schedule import Schedule
from momentum_sweep.training.native_step import NativeTrainer

from reference import (assert_states_equal, assert_steps_agree, epochs_of, fitted, folds_of,
                       keys_for, schedule_of, sgd_of, splits_of, subset)


def native(keys, hidden, train_params, splits, epochs, threads=None, kernels=None, **settings):
    """A native trainer of ``keys`` after ``epochs`` epochs (``settings``: train params to
    change), and each epoch's Trained figures."""
    train_params = fitted(train_params, splits).model_copy(update={"epochs": epochs,
                                                                   **settings})
    t = NativeTrainer(keys, hidden, train_params, schedule_of(train_params, keys),
                      folds_of(splits), threads=threads, kernels=kernels)
    return t, epochs_of(t, epochs)


SPECS = [(0.0, 0.1, False), (0.5, 0.1, False), (0.9, 0.05, False), (0.5, 0.2, True)]


@pytest.mark.parametrize("hidden, nesterov", [((50, 50), False), ((32,), False),
                                              ((20, 30, 40), False), ((50, 50), True)])
def test_steps_agree_with_torch_optim_sgd(small_splits, hidden, nesterov):
    """20 steps over two epochs of 200 images: rows go unused for several steps and are caught
    up at the epoch's end, and rounding has not yet been amplified (see step_tolerance). With
    nesterov, every momentum arm uses Nesterov's update (torch.optim.SGD(nesterov=True)); the
    control stays plain SGD."""
    train_params, splits = small_splits
    train = subset(splits["train"], 200)
    small = {**splits, "train": train}
    specs = [s for s in SPECS if s[0] > 0 or not nesterov]  # Nesterov needs a momentum
    keys = keys_for(specs, replicates=(0, 1), nesterov=nesterov)
    t, _ = native(keys, list(hidden), train_params, small, epochs=2)
    for k, key in enumerate(keys):
        start, expected = sgd_of(key, hidden, train_params.seed, train, 20, epochs=2)
        assert_steps_agree(t.state_dict(k), expected, start, steps=2 * len(train) // 20)


def test_segments_and_a_stop_mid_epoch_agree_with_torch_optim_sgd(small_splits):
    """With a target, every row is brought up to date at each scheduled evaluation, inside the
    epoch (segments); a model stopped there keeps the weights of that step: torch.optim.SGD's
    after as many steps. The others in the pass train on."""
    train_params, splits = small_splits
    train = subset(splits["train"], 300)
    tp = train_params.model_copy(update={"epochs": 1, "max_train_images": 350,
                                         "validation_size": 50, "target": 0.99})
    assert Schedule.of(tp, 20).segment_ends == [5, 10, 15]  # evaluations inside an epoch of 15
    keys = keys_for([(0.9, 0.05), (0.5, 0.1)], nesterov=True) + keys_for([(0.9, 0.05)])
    t = NativeTrainer(keys, [50, 50], tp, schedule_of(tp, keys),
                      folds_of({**splits, "train": train}))
    t.train_until(5)
    t.stop(1)
    t.train_until(10)
    t.train_until(15)
    for k, steps in ((0, 15), (1, 5), (2, 15)):
        start, expected = sgd_of(keys[k], [50, 50], tp.seed, train, 20, epochs=1, steps=steps)
        assert_steps_agree(t.state_dict(k), expected, start, steps=steps)


def test_a_whole_epoch_of_real_mnist_agrees_with_the_pytorch_step_in_distribution(
        flat_dir, default_params):
    """Over a whole epoch (2,750 steps) the two steps' weights part ways: SGD here is chaotic (a
    1e-7 relative change of the learning rate moves weights by about 0.08 within an epoch; after
    750 steps the two steps still give the same accuracies), the two steps sum in different
    orders, and PyTorch's own
    kernels sum in other orders on other CPUs (AVX-512 or not). What is stable is the
    distribution, over replicates, of what an epoch gives: per arm, the two steps' mean
    validation loss and accuracy over the replicates differ by less than 5 standard errors of a
    difference of two such means, the standard error estimated from the replicates' own spread
    (a t-test would reject equal means at that distance with p below 0.003)."""
    replicates = range(4)
    train_params = default_params.train.model_copy(update={"epochs": 1})
    splits = splits_of(train_params, flat_dir)
    specs = [(0.0, 0.1, False), (0.5, 0.1, False)]
    keys = keys_for(specs, replicates)
    t_native, _ = native(keys, [50, 50], train_params, splits, epochs=1)
    t_torch = trainer.TorchTrainer(keys, [50, 50], train_params, schedule_of(train_params, keys),
                                   folds_of(splits),
                                   torch.device("cpu"))
    epochs_of(t_torch, 1)
    figures = {name: np.array(t.evaluate(splits["val"], range(len(keys))))
               .reshape(2, len(replicates), len(specs))
               for name, t in (("native", t_native), ("torch", t_torch))}  # [figure, R, arm]
    assert not np.array_equal(figures["native"][0], figures["torch"][0])  # they do part ways
    for f, figure in enumerate(("loss", "accuracy")):
        a, b = figures["native"][f], figures["torch"][f]                      # [R, arm]
        spread = np.sqrt((a.var(0, ddof=1) + b.var(0, ddof=1)) / 2)           # [arm]
        standard_error = spread * np.sqrt(2 / len(replicates))
        assert (np.abs(a.mean(0) - b.mean(0)) < 5 * standard_error).all(), (figure, a, b)


def test_a_model_is_bit_identical_alone_in_any_batch_and_run(small_splits):
    train_params, splits = small_splits
    specs = [(0.0, 0.1, False), (0.2, 0.1, False), (0.4, 0.1, False), (0.4, 0.1 / 0.6, True)]
    together, figures = native(keys_for(specs, replicates=(0, 1)), [50, 50], train_params, splits,
                               epochs=2, threads=2)
    alone, alone_figures = native(keys_for(specs[2:3], replicates=(1,)), [50, 50], train_params,
                                  splits, epochs=2, threads=1)
    assert_states_equal(alone.state_dict(0), together.state_dict(6))
    assert alone_figures[-1].loss[0] == figures[-1].loss[6]
    again, _ = native(keys_for(specs, replicates=(0, 1)), [50, 50], train_params, splits,
                      epochs=2, threads=2)
    for k in range(len(specs) * 2):
        assert_states_equal(again.state_dict(k), together.state_dict(k))


def test_evaluation_matches_the_saved_model(small_splits):
    train_params, splits = small_splits
    t, _ = native(keys_for([(0.5, 0.1, False)]), [50, 50], train_params, splits, epochs=1)
    loss, accuracy = t.evaluate(splits["test"], [0])
    net = model.MLP([50, 50])
    net.load_state_dict(t.state_dict(0))
    with torch.no_grad():
        log_probs = torch.log_softmax(net(splits["test"].images.float() / 255), 1)  # [N, 10]
    labels = splits["test"].labels
    # An image whose two largest logits are within rounding of each other may be classified
    # either way by two float32 computations in different orders; every other one must agree.
    top = log_probs.topk(2, dim=1).values                                         # [N, 2]
    near_ties = int((top[:, 0] - top[:, 1] < 1e-4).sum())
    expected = (log_probs.argmax(1) == labels).double().mean().item()
    assert abs(accuracy[0] - expected) <= near_ties / len(labels)
    assert loss[0] == pytest.approx(-log_probs.gather(1, labels[:, None]).mean().item(), rel=1e-5)


def test_a_diverged_model_is_reported_as_non_finite_not_a_crash(small_splits):
    train_params, splits = small_splits
    t, [figures] = native(keys_for([(0.0, 1e4, False), (0.9, 0.1, False)]), [50, 50],
                          train_params, splits, epochs=1)
    assert not np.isfinite(figures.loss[0]) and np.isfinite(figures.loss[1])
    assert np.isfinite(figures.step_losses[0, 0]) and not np.isfinite(figures.step_losses[0, -1])


def test_an_epochs_batches_are_freed_when_it_ends(small_splits):
    """They are the step's largest allocation: a reference cycle once kept every epoch's alive
    until the cyclic garbage collector happened to run, and the train stage grew by a gigabyte."""
    train_params, splits = small_splits
    tp = train_params.model_copy(update={"epochs": 3})
    keys = keys_for([(0.5, 0.1, False), (0.0, 0.1, False)])
    t = NativeTrainer(keys, [50, 50], tp, schedule_of(tp, keys), folds_of(splits))
    per_epoch = t.schedule.steps_per_epoch
    gc.disable()
    try:
        t.train_until(per_epoch)
        _, structures = t._ahead                  # the second epoch's, built during the first
        second_epochs = weakref.ref(structures[0].result().arrays["act"])
        del structures
        t.train_until(2 * per_epoch)
        t.train_until(3 * per_epoch)
        assert second_epochs() is None
    finally:
        gc.enable()


def test_the_kernels_vector_rows_start_on_cache_lines(small_splits):
    """numpy aligns small arrays to 16 bytes only; then half the kernels' 32-byte vector loads
    straddle two cache lines, about 10% slower (results are the same)."""
    train_params, splits = small_splits
    keys = keys_for([(0.5, 0.1, False)])
    t = NativeTrainer(keys, [50, 30], train_params, schedule_of(train_params, keys),
                      folds_of(splits))
    m = t.models[0]
    arrays = {name: getattr(m, name) for name in ("w1", "v1", "W", "V", "Wt", "hs")}
    assert {name: a.ctypes.data % 64 for name, a in arrays.items()} == dict.fromkeys(arrays, 0)
    # and the rows within them, whose lengths are padded to whole vectors
    assert all(a.shape[-1] * a.itemsize % 32 == 0 for a in arrays.values())


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 targets")
def test_models_do_not_depend_on_the_cpus_vector_width(small_splits):
    """The kernels built for this CPU (-march=native: AVX2 or AVX-512 where there is one) and for
    x86-64-v2 (SSE4.2, no AVX: 128-bit vectors) train byte-identical models: each vector lane
    computes what a scalar loop would, with no fused multiply-add (-ffp-contract=off) and no
    reassociation, so the vector width cannot change a result."""
    train_params, splits = small_splits
    baseline = native_kernels.library("x86-64-v2")
    paths = {t: native_kernels.library_path(target=t) for t in ("native", "x86-64-v2")}
    assert paths["native"].read_bytes() != paths["x86-64-v2"].read_bytes()
    if shutil.which("objdump"):  # the baseline build really has no AVX registers
        code = subprocess.run(["objdump", "-d", str(paths["x86-64-v2"])], capture_output=True,
                              text=True, check=True).stdout
        assert "%xmm" in code and "%ymm" not in code and "%zmm" not in code
    specs = [(0.0, 0.1, False), (0.5, 0.1, False), (0.9, 0.05, False)]
    keys = keys_for(specs, replicates=(0, 1))
    wide, wide_figures = native(keys, [50, 30], train_params, splits, epochs=2)
    narrow, narrow_figures = native(keys, [50, 30], train_params, splits, epochs=2,
                                    kernels=baseline)
    for narrow_epoch, wide_epoch in zip(narrow_figures, wide_figures):
        assert np.array_equal(narrow_epoch.loss, wide_epoch.loss)
        assert np.array_equal(narrow_epoch.correct, wide_epoch.correct)
        assert np.array_equal(narrow_epoch.step_losses, wide_epoch.step_losses)
    models = range(len(keys))
    assert wide.evaluate(splits["test"], models) == narrow.evaluate(splits["test"], models)
    for k in range(len(keys)):
        assert_states_equal(narrow.state_dict(k), wide.state_dict(k))


def test_step_losses_are_each_batchs_loss_before_its_step(small_splits):
    """The fine training-loss curve is built from them: the first is the initial weights' loss
    on the first batch (as the PyTorch step computes it), and they sum to the epoch's loss."""
    train_params, splits = small_splits
    keys = keys_for([(0.0, 0.1, False), (0.5, 0.1, False)])
    t, [figures] = native(keys, [50, 50], train_params, splits, epochs=1)
    step_losses = figures.step_losses
    assert step_losses.shape == (2, -(-len(splits["train"]) // 20))
    for k in range(2):
        assert step_losses[k].sum() == pytest.approx(figures.loss[k], rel=1e-12)
    reference = trainer.TorchTrainer(keys, [50, 50], train_params, schedule_of(train_params, keys),
                                   folds_of(splits),
                                     torch.device("cpu"))
    first = epochs_of(reference, 1)[0].step_losses[:, 0]
    assert step_losses[:, 0] == pytest.approx(first, rel=1e-5)
    assert step_losses[0, 0] == step_losses[1, 0]  # same weights, same batch: same loss
    # The first update is lr * gradient for any momentum, so the losses part at the third batch.
    assert step_losses[0, 1] == step_losses[1, 1] and step_losses[0, 2] != step_losses[1, 2]

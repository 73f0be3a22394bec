"""The native CPU step agrees with torch.optim.SGD and the PyTorch step, and each model's result
is independent of the models it shares a pass with, and of the run."""

import gc
import weakref

import numpy as np
import pytest
import torch

from momentum_sweep.data.splits import Split
from momentum_sweep.errors import SweepError
from momentum_sweep.training import arms, model, native_kernels, trainer
from momentum_sweep.training.native_step import NativeTrainer

from reference import assert_states_close, assert_states_equal, sgd, subset


def keys_for(arm_specs, replicates=(0,)):
    """arm_specs: [(momentum, lr, control)]."""
    return [arms.ModelKey(arms.Arm(*spec), r) for r in replicates for spec in arm_specs]


def native(keys, hidden, train_params, splits, epochs, threads=None):
    t = NativeTrainer(keys, hidden, train_params.model_copy(update={"epochs": epochs}), splits,
                      threads=threads)
    figures = [t.train_epoch() for _ in range(epochs)]
    return t, figures


@pytest.mark.parametrize("hidden", [(50, 50), (32,), (20, 30, 40)])
def test_epochs_agree_with_torch_optim_sgd(small_splits, hidden):
    train_params, splits = small_splits
    train = subset(splits["train"], 600)  # 30 steps: rows go unused for many steps
    small = {**splits, "train": train}
    specs = [(0.0, 0.1, False), (0.5, 0.1, False), (0.9, 0.05, False), (0.5, 0.2, True)]
    keys = keys_for(specs, replicates=(0, 1))
    t, _ = native(keys, list(hidden), train_params, small, epochs=2)
    orders = trainer.BatchOrders([0, 1], train_params.seed, len(train))
    epoch_orders = [orders.next_epoch(), orders.next_epoch()]               # [G, N] each
    for k, key in enumerate(keys):
        state = model.initial_state(list(hidden),
                                    arms.replicate_seeds(train_params.seed, key.replicate)["init"])
        order = torch.cat([o[key.replicate] for o in epoch_orders])
        expected = sgd(state, hidden, key.arm.sgd_momentum, key.arm.lr, train, order,
                       train_params.batch_size)
        assert_states_close(t.state_dict(k), expected)


def test_a_whole_epoch_of_real_mnist_agrees_with_the_pytorch_step(flat_dir, default_params):
    """Over 2,750 steps only the figures can agree, not the weights: SGD here is chaotic (a
    1e-7 relative change of the learning rate moves weights by about 0.08 within one epoch,
    measured with the PyTorch step alone), and the two steps round differently. Weights are
    held to tight tolerances over 30 steps above; momentum 0, where both steps do the same
    arithmetic, stays within 1e-5 over the whole epoch. For the others the tolerances are those
    of two seeds: losses within 10%, accuracies within 1 percentage point."""
    from momentum_sweep.data.splits import load_splits

    train_params = default_params.train.model_copy(update={"epochs": 1})
    splits = load_splits(train_params, torch.device("cpu"), flat_dir=flat_dir)
    keys = keys_for([(0.0, 0.1, False), (0.5, 0.1, False), (0.5, 0.2, True)])
    t_native, (native_train,) = native(keys, [50, 50], train_params, splits, epochs=1)
    t_torch = trainer.TorchTrainer(keys, [50, 50], train_params, splits, torch.device("cpu"))
    torch_train = t_torch.train_epoch()
    for split in ("val", "test"):
        native_figures = t_native.evaluate(splits[split])
        torch_figures = t_torch.evaluate(splits[split])
        np.testing.assert_allclose(native_figures[0], torch_figures[0], rtol=0.1)  # loss
        np.testing.assert_allclose(native_figures[1], torch_figures[1], atol=0.01)  # accuracy
        assert native_figures[0][0] == pytest.approx(torch_figures[0][0], rel=1e-5)
    np.testing.assert_allclose(native_train[0], torch_train[0], rtol=0.1)
    np.testing.assert_allclose(native_train[1], torch_train[1], atol=0.01)
    assert_states_close(t_native.state_dict(0), t_torch.state_dict(0), rtol=0, atol=1e-5)


def test_a_model_is_bit_identical_alone_in_any_batch_and_run(small_splits):
    train_params, splits = small_splits
    specs = [(0.0, 0.1, False), (0.2, 0.1, False), (0.4, 0.1, False), (0.4, 0.1 / 0.6, True)]
    together, figures = native(keys_for(specs, replicates=(0, 1)), [50, 50], train_params, splits,
                               epochs=2, threads=2)
    alone, alone_figures = native(keys_for(specs[2:3], replicates=(1,)), [50, 50], train_params,
                                  splits, epochs=2, threads=1)
    assert_states_equal(alone.state_dict(0), together.state_dict(6))
    assert alone_figures[-1][0][0] == figures[-1][0][6]
    again, _ = native(keys_for(specs, replicates=(0, 1)), [50, 50], train_params, splits,
                      epochs=2, threads=2)
    for k in range(len(specs) * 2):
        assert_states_equal(again.state_dict(k), together.state_dict(k))


def test_evaluation_matches_the_saved_model(small_splits):
    train_params, splits = small_splits
    t, _ = native(keys_for([(0.5, 0.1, False)]), [50, 50], train_params, splits, epochs=1)
    loss, accuracy = t.evaluate(splits["test"])
    net = model.MLP([50, 50])
    net.load_state_dict(t.state_dict(0))
    with torch.no_grad():
        log_probs = torch.log_softmax(net(splits["test"].images.float() / 255), 1)
    labels = splits["test"].labels
    assert accuracy[0] == (log_probs.argmax(1) == labels).double().mean().item()
    assert loss[0] == pytest.approx(-log_probs.gather(1, labels[:, None]).mean().item(), rel=1e-5)


def test_a_diverged_model_is_reported_as_non_finite_not_a_crash(small_splits):
    train_params, splits = small_splits
    t, figures = native(keys_for([(0.0, 1e4, False), (0.9, 0.1, False)]), [50, 50],
                        train_params, splits, epochs=1)
    (loss, accuracy), = figures
    assert not np.isfinite(loss[0]) and np.isfinite(loss[1])


def test_compiled_kernels_are_cached_by_content_not_by_path(tmp_path):
    """Every copy of the repository (a queued experiment, a clone) reuses one compilation; a
    changed source gets its own."""
    copies = [tmp_path / "a" / "native_kernels.c", tmp_path / "b" / "native_kernels.c"]
    for copy in copies:
        copy.parent.mkdir()
        copy.write_text(native_kernels.SOURCE.read_text())
    assert (native_kernels.library_path(copies[0]) == native_kernels.library_path(copies[1])
            == native_kernels.library_path())
    copies[1].write_text(copies[1].read_text() + "/* a change */\n")
    assert native_kernels.library_path(copies[1]) != native_kernels.library_path(copies[0])


def test_a_missing_compiler_or_a_compile_error_is_a_clear_error(tmp_path, monkeypatch):
    broken = tmp_path / "broken.c"
    broken.write_text("int f(void) { return undeclared; }\n")
    with pytest.raises(SweepError, match=r"(?s)compiling .*broken.c failed .*error: .*undeclared"):
        native_kernels.build(broken, tmp_path / "out" / "broken.so")
    assert not (tmp_path / "out" / "broken.so").exists()
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(SweepError, match=r"C compiler, and none was found \(CC='.*no-such-cc'"):
        native_kernels.compiler()


def test_an_epochs_batches_are_freed_when_it_ends(small_splits):
    """They are the step's largest allocation: a reference cycle once kept every epoch's alive
    until the cyclic garbage collector happened to run, and the train stage grew by a gigabyte."""
    train_params, splits = small_splits
    t = NativeTrainer(keys_for([(0.5, 0.1, False), (0.0, 0.1, False)]), [50, 50],
                      train_params.model_copy(update={"epochs": 3}), splits)
    gc.disable()
    try:
        t.train_epoch()
        _, structures = t._ahead                  # the second epoch's, built during the first
        second_epochs = weakref.ref(structures[0].result()[0])
        del structures
        t.train_epoch()
        t.train_epoch()
        assert second_epochs() is None
    finally:
        gc.enable()


def test_the_kernels_vector_rows_start_on_cache_lines(small_splits):
    """numpy aligns small arrays to 16 bytes only; then half the kernels' 32-byte vector loads
    straddle two cache lines, about 10% slower (results are the same)."""
    train_params, splits = small_splits
    t = NativeTrainer(keys_for([(0.5, 0.1, False)]), [50, 30], train_params, splits)
    m = t.models[0]
    arrays = {name: getattr(m, name) for name in ("w1", "v1", "W", "V", "Wt", "hs")}
    assert {name: a.ctypes.data % 64 for name, a in arrays.items()} == dict.fromkeys(arrays, 0)
    # and the rows within them, whose lengths are padded to whole vectors
    assert all(a.shape[-1] * a.itemsize % 32 == 0 for a in arrays.values())

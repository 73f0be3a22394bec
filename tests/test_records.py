"""What a pass records of a model: its fine training-loss curve and the batch sizes it is built
from, against explicit computations."""

import numpy as np
import pytest

from good_params import parsed
from momentum_sweep.training.records import fine_curve, step_sizes


def test_step_sizes_follow_each_epochs_batches_the_last_one_shorter():
    train = parsed().train.model_copy(update={"max_train_images": 5050})
    assert train.train_size == 50
    assert step_sizes(train, 20, 7).tolist() == [20, 20, 10, 20, 20, 10, 20]
    assert step_sizes(train, 50, 3).tolist() == [50, 50, 50]


def test_the_fine_curve_is_each_runs_summed_loss_over_its_images():
    losses = np.array([2.0, 4.0, 6.0, 8.0, 10.0])   # each step's summed loss
    images = np.array([1, 1, 2, 2, 2])
    assert fine_curve(losses, images, 2) == pytest.approx([6 / 2, 14 / 4, 10 / 2])
    assert fine_curve(losses, images, 5) == pytest.approx([30 / 8])
    assert fine_curve(np.array([1.0, np.nan, 3.0]), np.array([1, 1, 1]), 2) == [None, 3.0]
    assert fine_curve(np.array([1 / 3]), np.array([1]), 1) == [0.333333]  # six digits

"""The PyTorch step on CUDA, the path a GPU trains on: held to torch.optim.SGD on the CPU as on
the CPU, heavy-ball and Nesterov's update. Skipped where no GPU is; scripts/gpu-check runs it."""

import pytest
import torch

from momentum_sweep.training import model
from momentum_sweep.training.torch_step import TorchStep, neg_onehot, with_ones

from reference import assert_steps_agree, sgd, subset

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")

MODELS = [(0.0, False, 0.1), (0.9, False, 0.05), (0.9, True, 0.05)]


def test_the_pytorch_step_on_cuda_agrees_with_torch_optim_sgd(small_splits):
    train = subset(small_splits[1]["train"], 400)
    state = model.initial_state([50, 50], 3)
    step = TorchStep([50, 50], [state] * len(MODELS), [m for m, _, _ in MODELS],
                     [n for _, n, _ in MODELS], [lr for _, _, lr in MODELS],
                     [(0, len(MODELS))], "cuda")
    images, labels = train.images.cuda(), train.labels.cuda()
    for start in range(0, 400, 20):
        batch = torch.arange(start, start + 20, device="cuda").unsqueeze(0)        # [1, B]
        step.step(with_ones(images[batch]), neg_onehot(labels[batch].expand(len(MODELS), -1)))
    for k, (momentum, nesterov, lr) in enumerate(MODELS):
        expected = sgd(state, (50, 50), momentum, lr, train, torch.arange(400), 20, nesterov)
        assert_steps_agree(step.state_dict(k), expected, state, steps=20)

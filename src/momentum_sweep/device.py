"""Which device to train on, and how much memory training used there."""

import resource

import torch

from .errors import SweepError


def resolve(setting: str) -> torch.device:
    """``auto``: CUDA when present, else the CPU; ``cuda`` without a GPU is an error."""
    if setting == "cuda" and not torch.cuda.is_available():
        raise SweepError("train.device = 'cuda', but no CUDA GPU is available to PyTorch; "
                         "use 'auto' or 'cpu'")
    if setting == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


class MemoryProbe:
    """Peak memory per epoch: CUDA allocated and reserved, or the process's peak resident size."""

    def __init__(self, device: torch.device):
        self.device = device

    def start_epoch(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def synchronize(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def peak(self) -> dict:
        mib = 2 ** 20
        # ru_maxrss is in KiB on Linux; it is the peak over the process's life.
        stats = {"cpu_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        if self.device.type == "cuda":
            stats["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated(self.device) / mib
            stats["cuda_peak_reserved_mib"] = torch.cuda.max_memory_reserved(self.device) / mib
        return stats

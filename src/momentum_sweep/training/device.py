"""Which device to train on, how much memory training needs there, and how much it used."""

import os
import resource

import torch

from ..errors import SweepError

GIB = 2 ** 30


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
    return "cpu"


def available_bytes(device: torch.device) -> int:
    """Memory training can still allocate: free GPU memory, or the system's MemAvailable."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def peak_rss_mib() -> float:
    """This process's peak resident memory: VmHWM where Linux gives it. (ru_maxrss would also
    count the parent's memory at the fork, which Linux folds in at exec.)"""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
        stats = {"cpu_peak_rss_mib": peak_rss_mib()}
        if self.device.type == "cuda":
            stats["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated(self.device) / mib
            stats["cuda_peak_reserved_mib"] = torch.cuda.max_memory_reserved(self.device) / mib
        return stats

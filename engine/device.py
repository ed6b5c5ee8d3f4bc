"""The job's device setting -> a torch.device."""

from __future__ import annotations

import torch

from engine.errors import JobError


def resolve_device(name: str) -> torch.device:
    """"auto" is CUDA when this torch has a usable GPU, else the CPU; "cuda" without one is an
    error rather than a silent fall-back, so the artist knows why a bake is slow."""
    cuda = torch.cuda.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "cpu")
    if name == "cuda" and not cuda:
        raise JobError(f"device 'cuda' was asked for, but this engine's torch {torch.__version__} "
                       "sees no CUDA GPU; set the device to Auto or CPU")
    return torch.device(name)

"""Device and dtype choice for torch backends: explicit first, else CUDA, then MPS, then CPU."""

from __future__ import annotations

import torch

from rerankit.errors import ConfigurationError

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(device: str | None) -> torch.device:
    """``device`` if given and usable, else the best available accelerator, else the CPU."""
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ConfigurationError(f"invalid device {device!r}: {exc}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError(f"device={device!r} was asked for, but CUDA is not available")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigurationError(f"device={device!r} was asked for, but MPS is not available")
    return resolved


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """``dtype`` if given; else float16 on CUDA and float32 elsewhere."""
    if dtype is not None:
        return _DTYPES[dtype]
    return torch.float16 if device.type == "cuda" else torch.float32

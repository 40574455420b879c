"""The CUDA device guard every launcher puts around its kernel launches: Triton launches on the
current CUDA device, which need not be the inputs' (a node on cuda:1 while cuda:0 is current
would run on the wrong GPU or fault). CPU tensors (Triton's interpreter) need none."""

import contextlib

import torch


def device_guard(tensor: torch.Tensor):
    """A context making `tensor`'s CUDA device current (a no-op for CPU tensors)."""
    return torch.cuda.device(tensor.device) if tensor.is_cuda else contextlib.nullcontext()

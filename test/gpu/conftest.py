"""GPU tests: they run where CUDA is, as their own pytest invocation with compiled Triton kernels:

    TRITON_INTERPRET=0 python -m pytest test/gpu -v

Everywhere else every test here is skipped, and the skip says why (no CUDA device; or the
interpreter is on). A skipped test is not a test of what it skips: on a machine without a GPU
these paths are untested, and the closing notes say so.
"""

import os

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(__file__)
    reason = None
    if not torch.cuda.is_available():
        reason = "no CUDA device on this machine (GPU tests run only where CUDA is)"
    elif os.environ.get("TRITON_INTERPRET") == "1":
        reason = "TRITON_INTERPRET=1: run `TRITON_INTERPRET=0 python -m pytest test/gpu`"
    if reason:
        for item in items:
            if str(item.fspath).startswith(here):
                item.add_marker(pytest.mark.skip(reason=reason))

"""Shared pytest set-up: the library tests run on the CPU with few threads and fixed seeds."""

import os
import sys
from pathlib import Path

import pytest

# The source tree comes first so that tests see the working copy, not an installed one.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Our Triton kernels run in Triton's interpreter on CPU tensors (test/ops/triton). Set before
# anything imports triton: set later (in that folder's conftest), kernels imported in a process
# where other test modules had already pulled triton in were run half-compiled. The GPU tests
# (test/gpu) run compiled kernels in their own invocation: TRITON_INTERPRET=0 pytest test/gpu.
os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def one_thread():
    """torch on one thread for the test: training steps of tiny models are dominated by
    overheads, and on a shared CPU one thread is several times faster than two competing ones.
    Modules use it with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

"""Run the Triton kernels with Triton's interpreter (on CPU tensors).

This machine (and CI) has no GPU. `@triton.jit` reads `TRITON_INTERPRET` when it decorates a
kernel, i.e. when a kernel module is imported, so the variable is set here, at conftest
import, before pytest imports the test modules of this folder (which import the kernels); the
suite's root conftest sets it earlier still, before any test module pulls triton in.
Without Triton installed the folder is skipped.
"""

import importlib.util
import os

os.environ["TRITON_INTERPRET"] = "1"

if importlib.util.find_spec("triton") is None:
    collect_ignore_glob = ["test_*.py"]

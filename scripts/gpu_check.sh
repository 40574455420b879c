#!/usr/bin/env bash
# One GPU acceptance command. On a CUDA machine with only a stock PyTorch (2.11 or 2.14) and
# Triton (no ROS, no venv, no registry: it installs nothing) it runs the GPU tests (test/gpu,
# compiled Triton kernels) and the backends benchmark (benchmarks/bench_backends.py, default
# model), and writes one JSON report: versions, the GPU, what is missing, each test's outcome,
# each backend x precision's ms per frame and its agreement with torch fp32. Under 8 minutes
# (each phase has its own time limit; a phase cut short says so in the report).
#
#   bash scripts/gpu_check.sh [REPORT.json]      # default: out/gpu_check.json
#
# Exit 0 when nothing failed (also on a machine without CUDA: the report then says "no CUDA
# device" and runs nothing), 1 when a test failed or a phase was cut short.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
report="${1:-$root/out/gpu_check.json}"
python="${PYTHON:-python3}"
command -v "$python" >/dev/null || python=python
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$(dirname "$report")"
# The source tree, not an install; compiled Triton kernels (the tests' conftest would otherwise
# choose the interpreter); no ROS anywhere in what runs.
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export TRITON_INTERPRET=0
TEST_LIMIT_S="${GPU_CHECK_TEST_LIMIT_S:-250}"
BENCH_LIMIT_S="${GPU_CHECK_BENCH_LIMIT_S:-170}"

cuda=$("$python" -c 'import torch; print(int(torch.cuda.is_available()))' 2>"$work/torch.err")
if [ "$cuda" = "1" ]; then
  start=$(date +%s)
  timeout -k 10 "$TEST_LIMIT_S" "$python" -m pytest test/gpu -v -rA -p no:cacheprovider \
    -o console_output_style=classic --junitxml="$work/junit.xml" >"$work/tests.txt" 2>&1
  echo "$?" >"$work/tests.rc"
  echo "$(($(date +%s) - start))" >"$work/tests.s"
  start=$(date +%s)
  timeout -k 10 "$BENCH_LIMIT_S" "$python" benchmarks/bench_backends.py --models default \
    --repeat 10 --json "$work/bench.json" >"$work/bench.txt" 2>&1
  echo "$?" >"$work/bench.rc"
  echo "$(($(date +%s) - start))" >"$work/bench.s"
fi

"$python" - "$work" "$report" "$TEST_LIMIT_S" "$BENCH_LIMIT_S" <<'EOF'
"""Gather the facts and the phases' outputs into one report (stdlib; torch for the facts)."""
import importlib.util
import json
import platform
import re
import sys
from pathlib import Path

work, report, test_limit, bench_limit = Path(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:]


def text(name):
    path = work / name
    return path.read_text(errors="replace") if path.is_file() else None


def version(module):
    if importlib.util.find_spec(module) is None:
        return "not installed"
    try:
        return str(getattr(__import__(module), "__version__", "unknown"))
    except Exception as error:  # e.g. torch_tensorrt without TensorRT's libraries
        return f"fails to import: {type(error).__name__}: {str(error)[:200]}"


out = {"python": platform.python_version(), "versions": {}, "missing": []}
for module in ("torch", "triton", "onnxruntime", "onnx", "onnxscript", "torchvision", "cv2",
               "skimage", "pytest", "tensorrt", "torch_tensorrt", "modelopt"):
    out["versions"][module] = version(module)
try:
    import torch

    cuda = torch.cuda.is_available()
    out["torch_cuda"] = torch.version.cuda
    out["gpu"] = (
        {"name": torch.cuda.get_device_name(0),
         "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
         "count": torch.cuda.device_count()}
        if cuda else None
    )
except Exception as error:
    cuda = False
    out["gpu"] = None
    out["missing"].append(f"torch does not import: {error}; {text('torch.err')}")
try:  # the runtime's own words on TensorRT (versions, torch pairing, device)
    from segmentation_ros.runtime.tensorrt.status import tensorrt_status

    message = tensorrt_status("cuda")
    absent = [m for m in ("tensorrt", "torch_tensorrt") if out["versions"][m] == "not installed"]
    out["tensorrt"] = f"not installed: {message}" if absent else (message or "available")
except Exception as error:
    out["tensorrt"] = f"status unknown: {type(error).__name__}: {error}"
for module, why in (("triton", "our CUDA kernels and torch_compile on CUDA"),
                    ("onnx", "exporting for onnxruntime"), ("onnxscript", "exporting for onnxruntime"),
                    ("cv2", "image decoding in the pipeline"), ("pytest", "the GPU tests"),
                    ("tensorrt", "the tensorrt backend"), ("torch_tensorrt", "the tensorrt backend"),
                    ("modelopt", "tensorrt int8")):
    if out["versions"][module] == "not installed":
        out["missing"].append(f"{module} ({why})")

if not cuda:
    out["status"] = "no CUDA device"
    out["tests"] = out["benchmarks"] = []
    summary = "nothing run (the GPU tests and benchmarks need one)"
    code = 0
else:
    tests = []
    log = text("tests.txt") or ""
    junit = work / "junit.xml"
    if junit.is_file():  # outcomes with their reasons
        import xml.etree.ElementTree as ET

        for case in ET.parse(junit).iter("testcase"):
            path = case.get("classname", "").replace(".", "/")
            test = {"test": f"{path}.py::{case.get('name')}", "outcome": "passed"}
            for tag, outcome in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
                found = case.find(tag)
                if found is not None:
                    test["outcome"] = outcome
                    test["reason"] = (found.get("message") or "")[:1000]
                    break
            tests.append(test)
    else:  # cut short: the verbose lines printed so far
        pattern = r"^(test/gpu/\S+) (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)"
        for match in re.finditer(pattern, log, re.M):
            tests.append({"test": match.group(1), "outcome": match.group(2).lower()})
    tests_rc = int(text("tests.rc") or "1")
    bench = json.loads(text("bench.json") or "[]")
    bench_rc = int(text("bench.rc") or "1")
    out["tests"] = tests
    out["tests_exit"] = tests_rc
    out["tests_seconds"] = int(text("tests.s") or 0)
    out["benchmarks"] = bench
    out["bench_exit"] = bench_rc
    out["bench_seconds"] = int(text("bench.s") or 0)
    cut = [name for name, rc, limit in (("tests", tests_rc, test_limit), ("bench", bench_rc, bench_limit))
           if rc in (124, 137)]
    if cut:
        out["cut_short"] = [f"{name}: over its {limit} s limit" for name in cut]
    if tests_rc not in (0, 5) and not tests:
        out["tests_log_tail"] = log[-4000:]
    if bench_rc != 0:
        out["bench_log_tail"] = (text("bench.txt") or "")[-4000:]
    failed = [t for t in tests if t["outcome"] in ("failed", "error")]
    code = 1 if failed or cut or tests_rc not in (0, 5) or bench_rc != 0 else 0
    out["status"] = "ok" if code == 0 else "failed"
    counts = {o: sum(t["outcome"] == o for t in tests) for o in ("passed", "failed", "skipped", "error")}
    ran = [f"{b['backend']}/{b['precision']} {b['ms']['total']:.1f} ms" for b in bench if b["status"] == "ok"]
    summary = f"{out['gpu']['name']}: tests {counts}; benchmarks: {', '.join(ran) or 'none'}"
report.write_text(json.dumps(out, indent=1))
print(f"gpu_check: {out['status']}: {summary}")
if out["missing"]:
    print(f"gpu_check: missing: {'; '.join(out['missing'])}")
print(f"gpu_check: report {report}")
sys.exit(code)
EOF

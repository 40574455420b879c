"""Frame statistics of the segmentation node and their diagnostic_msgs/DiagnosticArray.

`FrameStats` is thread-safe: the subscription callbacks count inputs and drops, the inference
worker counts outputs and latencies, the diagnostics timer reads a `StatsSnapshot`.

Drop causes (`DROP_CAUSES`), counted since the last configure:
- stale: the frame's stamp was older than `max_image_age_ms` when inference could start;
- overwritten: a newer frame arrived before inference took this one (depth-1 slot);
- bad_encoding: an unsupported encoding, or one that is not a colour image (32SC1); bad_size: zero
  width / height, a step or data length that does not match, an odd width for a packed YUV
  encoding; too_large: wider or taller than `max_image_side` (a CompressedImage by the size its
  header declares, before decoding); too_small: a side under `inputs.MIN_IMAGE_SIDE` pixels;
- decode_error: a CompressedImage that is not JPEG / PNG or does not decode;
- out_of_order: a stamp older than the last accepted frame's (until the run of refusals that
  makes the node adopt the new time base: `inputs.StampOrder`);
- inference_error: the pipeline (or publishing its result) raised on the frame;
- bad_camera_info: a CameraInfo that is not a plausible calibration (zero or non-finite K, a field
  of view of 180 degrees or none, a principal point off the image) or does not fit the images.
  A CameraInfo is counted here, not a frame.

Rates are frames per second over the last `window_s` seconds; latency is from the image
message's arrival at the node to the publication of its last output, in milliseconds; `model`
time is image in -> segments out (preprocess + network + postprocess), `inference` the network.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

DROP_CAUSES = (
    "stale",
    "overwritten",
    "bad_encoding",
    "bad_size",
    "too_large",
    "too_small",
    "decode_error",
    "out_of_order",
    "inference_error",
    "bad_camera_info",
)

# diagnostic_msgs/DiagnosticStatus levels (bytes in the message).
OK, WARN, ERROR, STALE = 0, 1, 2, 3


@dataclass(frozen=True)
class StatsSnapshot:
    """What `FrameStats` knows at one moment (see the module docstring for units)."""

    frames_in: int
    frames_out: int
    input_rate: float
    output_rate: float
    latency_p50_ms: float
    latency_p95_ms: float
    inference_p50_ms: float
    drops: dict[str, int]
    model_p50_ms: float = float("nan")
    recent_drops: dict[str, int] = field(default_factory=dict)

    @property
    def total_drops(self) -> int:
        return sum(self.drops.values())


class FrameStats:
    """Counters and recent timings; every method may be called from any thread.

    window_s: the span of the rate estimates. latency_samples: latencies kept for percentiles.
    """

    def __init__(self, *, window_s: float = 5.0, latency_samples: int = 200) -> None:
        self.window_s = float(window_s)
        self._lock = threading.Lock()
        self._inputs: deque[float] = deque()
        self._outputs: deque[float] = deque()
        self._latency: deque[float] = deque(maxlen=latency_samples)
        self._inference: deque[float] = deque(maxlen=latency_samples)
        self._model: deque[float] = deque(maxlen=latency_samples)
        self._drops: Counter[str] = Counter()
        self._reported_drops: Counter[str] = Counter()
        self.frames_in = 0
        self.frames_out = 0

    def reset(self) -> None:
        with self._lock:
            self._inputs.clear()
            self._outputs.clear()
            self._latency.clear()
            self._inference.clear()
            self._model.clear()
            self._drops.clear()
            self._reported_drops.clear()
            self.frames_in = self.frames_out = 0

    def frame_in(self, now: float | None = None) -> None:
        with self._lock:
            self.frames_in += 1
            self._inputs.append(time.monotonic() if now is None else now)

    def frame_out(
        self,
        latency_ms: float,
        inference_ms: float = float("nan"),
        now: float | None = None,
        *,
        model_ms: float = float("nan"),
    ) -> None:
        """latency_ms: arrival -> every output published. inference_ms: the network alone.
        model_ms: image in -> segments out (preprocess + network + postprocess)."""
        with self._lock:
            self.frames_out += 1
            self._outputs.append(time.monotonic() if now is None else now)
            self._latency.append(float(latency_ms))
            self._inference.append(float(inference_ms))
            self._model.append(float(model_ms))

    def drop(self, cause: str) -> None:
        if cause not in DROP_CAUSES:
            raise ValueError(f"unknown drop cause {cause!r}; expected one of {DROP_CAUSES}")
        with self._lock:
            self._drops[cause] += 1

    def drops(self) -> dict[str, int]:
        with self._lock:
            return {cause: self._drops[cause] for cause in DROP_CAUSES}

    def snapshot(self, now: float | None = None, *, mark_reported: bool = False) -> StatsSnapshot:
        """The current figures. `recent_drops` are those since the last snapshot taken with
        `mark_reported=True` (what the diagnostics timer uses to decide on a warning)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            for times in (self._inputs, self._outputs):
                while times and times[0] < now - self.window_s:
                    times.popleft()
            latency = np.array(self._latency, dtype=np.float64)
            inference = np.array(self._inference, dtype=np.float64)
            model = np.array(self._model, dtype=np.float64)
            drops = {cause: self._drops[cause] for cause in DROP_CAUSES}
            recent = {c: n - self._reported_drops[c] for c, n in drops.items()}
            if mark_reported:
                self._reported_drops = Counter(drops)
            return StatsSnapshot(
                frames_in=self.frames_in,
                frames_out=self.frames_out,
                input_rate=_rate(self._inputs, now, self.window_s),
                output_rate=_rate(self._outputs, now, self.window_s),
                latency_p50_ms=_percentile(latency, 50),
                latency_p95_ms=_percentile(latency, 95),
                inference_p50_ms=_percentile(inference[np.isfinite(inference)], 50),
                drops=drops,
                model_p50_ms=_percentile(model[np.isfinite(model)], 50),
                recent_drops={c: n for c, n in recent.items() if n},
            )


def _rate(times: deque[float], now: float, window_s: float) -> float:
    if not times:
        return 0.0
    span = min(window_s, max(now - times[0], 1e-3))
    return len(times) / span if len(times) > 1 else 1.0 / window_s


def _percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else float("nan")


@dataclass(frozen=True)
class NodeStatus:
    """What the node reports beside the statistics.

    state: lifecycle state label. model, backend: what runs (empty before configure).
    problems: (level, text) pairs, e.g. a failed configure or missing camera_info.
    """

    state: str
    model: str = ""
    backend: str = ""
    input_size: str = ""
    problems: Sequence[tuple[int, str]] = ()


def status_level(status: NodeStatus, stats: StatsSnapshot) -> tuple[int, str]:
    """(level, summary message) of the node: the worst problem, else WARN for frames dropped
    since the last report (other than overwritten ones)."""
    if status.problems:
        level, text = max(status.problems, key=lambda p: p[0])
        return level, text
    if status.state != "active":
        return OK, f"{status.state}: not processing images"
    # Overwritten frames are the normal state of a node slower than its camera: not a warning.
    recent = {c: n for c, n in stats.recent_drops.items() if c != "overwritten"}
    if recent:
        listed = ", ".join(f"{c} {n}" for c, n in sorted(recent.items()))
        return WARN, f"dropping frames ({listed})"
    return OK, "running"


def make_diagnostics(node_name: str, status: NodeStatus, stats: StatsSnapshot, *, stamp=None):
    """A diagnostic_msgs/DiagnosticArray with one status named after the node."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    level, message = status_level(status, stats)
    values = [
        ("state", status.state),
        ("model", status.model),
        ("backend", status.backend),
        ("input_size", status.input_size),
        ("frames_in", str(stats.frames_in)),
        ("frames_out", str(stats.frames_out)),
        ("input_rate_hz", f"{stats.input_rate:.2f}"),
        ("output_rate_hz", f"{stats.output_rate:.2f}"),
        ("latency_p50_ms", f"{stats.latency_p50_ms:.1f}"),
        ("latency_p95_ms", f"{stats.latency_p95_ms:.1f}"),
        ("inference_p50_ms", f"{stats.inference_p50_ms:.1f}"),
        ("model_p50_ms", f"{stats.model_p50_ms:.1f}"),
        ("drops_total", str(stats.total_drops)),
        *((f"drops_{cause}", str(n)) for cause, n in stats.drops.items()),
        *((f"problem_{i}", text) for i, (_, text) in enumerate(status.problems)),
    ]
    array = DiagnosticArray()
    if stamp is not None:
        array.header.stamp = stamp
    array.status = [
        DiagnosticStatus(
            level=bytes([level]),
            name=f"{node_name}: segmentation",
            message=message,
            hardware_id=status.model or "none",
            values=[KeyValue(key=k, value=v) for k, v in values],
        )
    ]
    return array


def diagnostics_values(array) -> dict[str, str]:
    """The key/value pairs of the first status of a DiagnosticArray (for tools and tests)."""
    return {kv.key: kv.value for kv in array.status[0].values} if array.status else {}

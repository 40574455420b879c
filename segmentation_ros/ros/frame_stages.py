"""The node's two worker threads: inference, then publishing, one frame apart.

    camera callback --LatestSlot--> inference thread --HandOver--> publishing thread
                     (newest frame)  decode, network     (waits)    postprocess, messages,
                                                                    publish

While the publishing thread turns frame N into messages, the inference thread already runs the
network on frame N+1: the network's threads (native, no GIL) and the Python of the messages
overlap, so the node keeps up with a camera rate that one thread doing both could not (the
frame rate is set by the slower stage, not by their sum; `benchmarks/bench_node.py`). Latency
per frame is unchanged: each frame still passes both stages in turn, and the inference runs at
most one frame ahead. Frames leave in the order they came.

The threads live as long as the node (see `LatestSlot`); `stop` (deactivate) returns when the
frame in each stage is finished, so nothing is published after it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from segmentation_ros.ros.inputs import Frame, HandOver, LatestSlot


class FrameStages:
    """infer(frame) -> an item for `publish`, or None (dropped / nothing to do);
    publish(item). An exception either raises goes to on_error(exception) and the loop goes
    on; `stopping()` true at that moment (process shutdown) ends the thread instead."""

    def __init__(
        self,
        infer: Callable[[Frame], Any],
        publish: Callable[[Any], None],
        on_error: Callable[[Exception], None],
        stopping: Callable[[], bool],
    ) -> None:
        self.frames = LatestSlot()
        self._inferred = HandOver()
        self._infer, self._publish = infer, publish
        self._on_error, self._stopping = on_error, stopping
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Accept frames; start the two threads on the first call."""
        self.frames.open()
        self._inferred.open()
        if not self._threads:
            self._threads = [
                threading.Thread(target=self._infer_loop, name="inference", daemon=True),
                threading.Thread(target=self._publish_loop, name="publishing", daemon=True),
            ]
            for thread in self._threads:
                thread.start()

    def stop(self, *, final: bool = False) -> None:
        """Refuse frames and wait for the ones in flight (both stages); `final` ends the
        threads."""
        # The hand-over first: it waits for the frame being published and then refuses the
        # next, which releases an inference waiting to hand over (that frame is dropped).
        self._inferred.close(final=final)
        self.frames.close(final=final)
        if final:
            for thread in self._threads:
                thread.join(timeout=30.0)
            self._threads = []

    def _infer_loop(self) -> None:
        while not self.frames.finished:
            frame = self.frames.take(timeout=0.5)
            if frame is None:
                continue
            item = self._guarded(self._infer, frame)
            if item is not None:
                self._inferred.put(item)  # waits while the publisher is one frame behind

    def _publish_loop(self) -> None:
        while not self._inferred.finished:
            item = self._inferred.take(timeout=0.5)
            if item is not None:
                self._guarded(self._publish, item)

    def _guarded(self, stage: Callable[[Any], Any], value: Any) -> Any:
        try:
            return stage(value)
        except Exception as error:  # e.g. publishing while the process shuts down
            if self._stopping():
                raise SystemExit from error  # ends this thread only
            self._on_error(error)
            return None

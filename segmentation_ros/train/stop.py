"""Stopping a training run on SIGTERM / SIGINT without losing it: the step in progress finishes,
`last.pt` is written, and the run resumes from it (`--resume OUT/last.pt`) as if never stopped.

A preempted cloud or cluster job gets SIGTERM, a person at a terminal presses Ctrl-C; either
way the steps since the last periodic checkpoint would otherwise be lost. A second signal
interrupts at once (the default behaviour). Under torchrun every process decides with the
others (`any_process`), so no process waits in a collective for one that left.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import torch

from segmentation_ros.train.distributed import DistContext

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def ignore_stop_signals(worker_id: int = 0) -> None:
    """DataLoader `worker_init_fn`: loader workers ignore SIGTERM / SIGINT. A signal to the
    whole process group (Ctrl-C at a terminal, a scheduler or systemd stopping the job) would
    otherwise kill them, and the main process would die of the lost worker before it could save
    `last.pt`; it stops them itself once it has saved."""
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


class StopOnSignal:
    """Context manager: `requested` turns true at the first SIGTERM / SIGINT (handlers only in
    the main thread, where Python delivers signals; elsewhere nothing is installed)."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in _SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        for sig, handler in self._previous.items():  # a second signal: the default action
            signal.signal(sig, handler)

    def any_process(self, context: DistContext, device: torch.device) -> bool:
        """Whether any process of the run was asked to stop (one all-reduce under torchrun)."""
        if not context.active:
            return self.requested
        flag = torch.tensor([float(self.requested)], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())

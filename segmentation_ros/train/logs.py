"""What a training run writes while it runs (rank 0 only): one CSV row per step, TensorBoard
scalars beside it, a progress bar (tqdm: steps, rate, ETA) and a progress line every few steps.

- `out_dir/train_log.csv`: step, lr, loss terms, positives, seconds (per step).
- `out_dir/tensorboard/`: event files with `loss/<term>` and `loss/total`, `lr`,
  `num_positives`, `seconds_per_step` at each step (`tensorboard --logdir out_dir`).
- A resumed run continues both where its checkpoint stopped: CSV rows after the checkpoint's
  step are dropped (a run that went on past its last checkpoint before it stopped) and
  TensorBoard is told to purge the later events of the earlier files (`purge_step`), so the
  curves have one value per step.
"""

from __future__ import annotations

import csv
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["CSV_FIELDS", "RunLog", "duration"]

CSV_FIELDS = (
    "step",
    "lr",
    "total",
    "box",
    "cls",
    "mask",
    "mask_iou",
    "semantic",
    "pcv",
    "num_positives",
    "seconds",
    "semantic_aux",
)


def duration(seconds: float) -> str:
    """`1h02m` or `3m05s`."""
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _truncate_csv(path: Path, last_step: int) -> None:
    """Keep the header and the rows of steps <= last_step."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(r for r in rows if r.get("step") and int(r["step"]) <= last_step)


class RunLog:
    """The logs of one `fit` from `start_step` to `total_steps`.

    out_dir: the run's folder. log: where progress lines go. log_every: a line every this many
    steps (0: none). progress_bar: show a tqdm bar on stderr (None: when stderr is a terminal).
    tensorboard: write TensorBoard events. Use as a context manager; `step(...)` per step.
    """

    def __init__(
        self,
        out_dir: Path,
        *,
        start_step: int,
        total_steps: int,
        log: Callable[[str], None] = print,
        log_every: int = 10,
        progress_bar: bool | None = None,
        tensorboard: bool = True,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.start_step, self.total_steps = start_step, total_steps
        self.log_every = log_every
        self._log = log
        self._show_bar = sys.stderr.isatty() if progress_bar is None else progress_bar
        self._tensorboard = tensorboard
        self._start_time = time.perf_counter()
        self._tick = self._start_time

    def __enter__(self) -> RunLog:
        csv_path = self.out_dir / "train_log.csv"
        new_file = self.start_step == 0 or not csv_path.exists()
        if not new_file:
            _truncate_csv(csv_path, self.start_step)
        self._file = open(csv_path, "w" if new_file else "a", newline="")
        # a term outside CSV_FIELDS (a new family's) goes to TensorBoard only
        self._csv = csv.DictWriter(self._file, fieldnames=CSV_FIELDS, extrasaction="ignore")
        if new_file:
            self._csv.writeheader()
        self._writer = None
        if self._tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(
                str(self.out_dir / "tensorboard"),
                purge_step=self.start_step + 1 if self.start_step else None,
            )
        self._bar = None
        if self._show_bar:
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.total_steps,
                initial=self.start_step,
                unit="step",
                dynamic_ncols=True,
                file=sys.stderr,
            )
        return self

    def __exit__(self, *exc: Any) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()
        if self._bar is not None:
            self._bar.close()

    def step(
        self,
        step: int,
        lr: float,
        losses: dict[str, float],
        num_positives: int | None,
        skipped: int,
    ) -> None:
        """Log optimizer step `step` (1-based: the steps done), its learning rate, its losses
        (empty when the step was skipped), the batch's positives and the skipped-step count."""
        now = time.perf_counter()
        seconds, self._tick = now - self._tick, now
        row: dict[str, Any] = {"step": step, "lr": f"{lr:.6g}", "seconds": f"{seconds:.4f}"}
        row.update({k: f"{v:.6g}" for k, v in losses.items()})
        if num_positives is not None:
            row["num_positives"] = int(num_positives)
        self._csv.writerow(row)
        if self._writer is not None:
            for name, value in losses.items():
                self._writer.add_scalar(f"loss/{name}", value, step)
            self._writer.add_scalar("lr", lr, step)
            self._writer.add_scalar("seconds_per_step", seconds, step)
            if num_positives is not None:
                self._writer.add_scalar("num_positives", num_positives, step)
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{losses.get('total', float('nan')):.4f}", lr=f"{lr:.2e}")
            self._bar.update(1)
        if self.log_every and (step % self.log_every == 0 or step == self.total_steps):
            self._file.flush()
            if self._writer is not None:
                self._writer.flush()
            self._line(self._progress(step, lr, losses, skipped))

    def _line(self, text: str) -> None:
        if self._bar is not None and self._log is print:
            self._bar.write(text)  # above the bar, not through it
        else:
            self._log(text)

    def _progress(self, step: int, lr: float, losses: dict[str, float], skipped: int) -> str:
        done = step - self.start_step
        per_step = (time.perf_counter() - self._start_time) / max(done, 1)
        eta = per_step * (self.total_steps - step)
        terms = " ".join(f"{k} {v:.3f}" for k, v in losses.items() if k != "total")
        total = losses.get("total", float("nan"))
        skip = f" | skipped {skipped}" if skipped else ""
        return (
            f"step {step}/{self.total_steps} | loss {total:.4f} ({terms}) | lr {lr:.2e} | "
            f"{per_step:.2f} s/step | eta {duration(eta)}{skip}"
        )

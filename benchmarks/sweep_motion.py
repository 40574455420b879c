"""Calibrate the ground-motion filter on sequences: the model runs once per frame, then every
combination of `MotionParams` values is tracked through the same detections and scored by
`segmentation-ros-eval tracking`'s own evaluation (HOTA, velocity error median / p90).

    python benchmarks/sweep_motion.py --data runs/seq_val [--checkpoint F] \
        --grid contact_inset_px=0,0.5,1 --grid meas_std_per_m2=0.003,0.0045,0.006 \
        --grid border_margin_px=2,8

Use validation sequences only: what it picks becomes a default that test sequences then measure.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

from segmentation_ros.data.sequence_io import find_sequences
from segmentation_ros.tracking import MotionParams, TrackerParams
from segmentation_ros.train.tracking_eval import PipelineDetector, combine, evaluate_sequence


class _Cached:
    """The detector's output per (sequence, frame), computed on first use. `start(name)` before
    each pass over a sequence: the evaluation asks for its frames in order 0..n-1."""

    def __init__(self, detector) -> None:
        self.detector, self.memo, self.key = detector, {}, ("", 0)

    def start(self, name: str) -> None:
        self.key = (name, 0)

    def __call__(self, image: np.ndarray):
        if self.key not in self.memo:
            self.memo[self.key] = self.detector(image)
        out = self.memo[self.key]
        self.key = (self.key[0], self.key[1] + 1)
        return out


def _grid(text: str) -> tuple[str, list[float]]:
    name, _, values = text.partition("=")
    if name not in MotionParams.__dataclass_fields__:
        raise argparse.ArgumentTypeError(f"{name!r} is not a MotionParams field")
    kind = type(getattr(MotionParams(), name))  # int fields stay ints
    return name, [kind(float(v)) for v in values.split(",")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="a sequence folder or a folder of them")
    p.add_argument("--checkpoint", default="", help="our checkpoint (empty: the default model)")
    p.add_argument("--gt-detections", action="store_true", help="feed ground-truth boxes")
    p.add_argument("--score-threshold", type=float, default=0.3)
    p.add_argument("--grid", type=_grid, action="append", default=[], help="FIELD=v1,v2,...")
    args = p.parse_args()

    sequences = find_sequences(args.data)
    detector = None
    if not args.gt_detections:
        from segmentation_ros.pipeline import SegmentationPipeline

        pipeline = SegmentationPipeline.from_checkpoint(args.checkpoint, backend="torch")
        detector = _Cached(PipelineDetector(pipeline, args.score_threshold))
    names = [n for n, _ in args.grid]
    print(" ".join(f"{n:>16}" for n in names), "  HOTA  v med  v p90    n")
    for values in itertools.product(*(v for _, v in args.grid)):
        # as `segmentation-ros-eval tracking` runs: filters live the tracker's max age
        params = MotionParams(**{"max_age_s": TrackerParams.max_age_s, **dict(zip(names, values))})
        reports = []
        for seq in sequences:
            if detector is not None:
                detector.start(seq.root.name)
            tp = TrackerParams(frame_rate=seq.rate)
            reports.append(
                evaluate_sequence(seq, detector, tracker_params=tp, motion_params=params)
            )
        t = combine(reports)
        print(
            " ".join(f"{v:>16g}" for v in values),
            f"{100 * t['hota']:6.1f} {t['velocity_median']:6.2f} {t['velocity_p90']:6.2f}"
            f" {t['velocity_n']:>4}",
            flush=True,
        )


if __name__ == "__main__":
    main()

"""Tracking evaluation on synthetic camera sequences (`data.sequence_io`).

Per frame: detections (the pipeline's things, or the ground truth's boxes with `gt_detections`)
-> `tracking.ObjectTracker` -> track ids; ground contacts of their boxes (`tracking.box_contacts`,
base_link; the detector's own bottom edge where it regresses a box) + the sequence's odometry ->
`tracking.GroundMotion` -> ground velocity in odom.

Metrics: HOTA, MOTA, IDF1 and ID switches from `trackeval` (TrackEval's HOTA / CLEAR /
Identity, box IoU similarity, class-agnostic over the thing classes). Ground truth: thing
segments with at least `min_area` visible pixels; tracker boxes that overlap a smaller (ignored)
ground-truth segment by IoU >= 0.5 are removed before scoring, as MOTChallenge does with its
distractors. Velocity error: |v_est - v_true| (m/s, odom) of tracked boxes matched one-to-one to
a ground-truth box (IoU >= 0.5) of an agent within `max_range` m of the camera whose filter has
at least `min_updates` measurements; median and 90th percentile over all such matches, and per
thing class (the class of the truth); and the share of them inside the 95 % ellipse of the
filter's velocity covariance (as published on `objects`: 95 % when it is calibrated).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from segmentation_ros.data.sequence_io import SequenceData
from segmentation_ros.drivable.camera import CameraModel
from segmentation_ros.tracking import (
    LABEL_CONTACT_INSET_PX,
    GroundMotion,
    MotionParams,
    ObjectTracker,
    ReassociationParams,
    TrackerParams,
    TrackReassociation,
    box_contacts,
    detector_bottoms,
)

CHI2_2DOF_95 = 5.991  # 95 % of a chi-square with 2 degrees of freedom


@dataclass
class SequenceReport:
    """Results of one sequence: trackeval's fields (HOTA, MOTA, IDF1 in [0, 1], IDSW count),
    the velocity errors (m/s) with the class name of each one's truth and their squared
    Mahalanobis distance under the filter's covariance, and the ms per frame spent by the
    detector and the tracker."""

    name: str
    kind: str
    frames: int
    hota: float
    mota: float
    idf1: float
    idsw: int
    gt_tracks: int
    velocity_errors: np.ndarray
    velocity_classes: np.ndarray
    velocity_nees: np.ndarray
    detector_ms: float
    tracker_ms: float
    raw: dict = field(default_factory=dict, repr=False)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N, 4] x [M, 4] (x1, y1, x2, y2) -> [N, M] IoU."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _xyxy(xywh) -> np.ndarray:
    b = np.asarray(xywh, np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], 1)


def _camera(seq: SequenceData) -> tuple[CameraModel, np.ndarray]:
    cam = seq.meta["camera"]
    model = CameraModel(K=cam["K"], D=cam["D"], width=seq.meta["width"], height=seq.meta["height"])
    return model, np.asarray(cam["camera_to_base"], np.float64)


class PipelineDetector:
    """The pipeline's thing detections of one image: (boxes [N, 4] xyxy of the segments, as the
    node's rois, scores, class ids, bottoms [N]: the bottom edge of the detector's box, as the
    node projects it; see `tracking.box_contacts`)."""

    def __init__(self, pipeline, score_threshold: float) -> None:
        from segmentation_ros.pipeline import FrameSettings, OutputRequest

        self.pipeline = pipeline
        self.request = OutputRequest(objects=True)
        self.settings = FrameSettings(score_threshold=score_threshold)

    def __call__(self, image: np.ndarray):
        r = self.pipeline.process(image, self.request, self.settings)
        s = r.segments
        thing = np.asarray(s.is_thing, bool)
        boxes = r.geometry.boxes[thing].astype(np.float64)
        scores, classes = np.asarray(s.scores)[thing], np.asarray(s.class_ids)[thing]
        return boxes, scores, classes, detector_bottoms(s)


def evaluate_sequence(
    seq: SequenceData,
    detector=None,
    *,
    tracker_params: TrackerParams | None = None,
    motion_params: MotionParams | None = None,
    min_area: int = 100,
    max_range: float = 10.0,
    min_updates: int = 5,
    reassociation: bool = True,
) -> SequenceReport:
    """Track through one sequence and score it, as the node does. detector: callable image ->
    (boxes [N, 4] xyxy, scores [N], class ids [N], bottoms [N] or None: `box_contacts`'
    bottoms); None feeds the ground-truth boxes (score 1).
    Lost tracks and their filters live the tracker's `max_age_s` (the node's one
    `tracking_max_age`) unless `motion_params` say otherwise. reassociation: False tracks with
    ByteTrack alone (no ids carried through occlusions)."""
    from trackeval.metrics import CLEAR, HOTA, Identity

    tp = tracker_params or TrackerParams(frame_rate=seq.rate)
    tracker = ObjectTracker(tp)
    motion = GroundMotion(motion_params or MotionParams(max_age_s=tp.max_age_s))
    carry = None
    if reassociation:
        carry = TrackReassociation(ReassociationParams(max_age_s=tp.max_age_s))
    camera, mount = _camera(seq)
    size = (seq.meta["height"], seq.meta["width"])
    gt_ids, tr_ids, sims, errors, error_classes, nees = [], [], [], [], [], []
    names = {c["id"]: c["name"] for c in seq.meta["categories"]}
    det_ms = trk_ms = 0.0
    for k in range(len(seq)):
        f = seq.frame(k)
        things = [s for s in f["segments"] if s["track_id"] > 0]
        big = [s for s in things if s["area"] >= min_area]
        small = _xyxy([s["bbox"] for s in things if s["area"] < min_area])
        g_boxes = _xyxy([s["bbox"] for s in big])
        t0 = time.perf_counter()
        if detector is None:
            boxes, bottoms = g_boxes, None
            scores, classes = np.ones(len(big)), np.array([s["category_id"] for s in big])
        else:
            boxes, scores, classes, bottoms = detector(seq.image(k))
        t1 = time.perf_counter()
        ids = tracker.update(boxes, scores, classes, f["stamp"])
        xy, gate = box_contacts(camera, mount, boxes, size, motion.params, bottoms)
        if carry is not None:
            ids = carry.update(ids, classes, xy, f["pose"], f["stamp"], motion, boxes, gate)
        est = motion.update(ids, xy, f["pose"], f["stamp"], gate)
        trk_ms += (time.perf_counter() - t1) * 1e3
        det_ms += (t1 - t0) * 1e3
        keep = ids > 0
        if len(small) and keep.any():  # distractors: boxes on ignored (tiny) ground truth
            keep &= ~(_iou(boxes, small).max(1, initial=0.0) >= 0.5)
        sim = _iou(g_boxes, boxes[keep])
        gt_ids.append(np.array([s["track_id"] for s in big], np.int64))
        tr_ids.append(ids[keep])
        sims.append(sim)
        matches = _velocity_errors(big, sim, est, keep, f["pose"], max_range, min_updates)
        for err, cat, d2 in matches:
            errors.append(err)
            error_classes.append(names.get(cat, str(cat)))
            nees.append(d2)
    data = _trackeval_data(gt_ids, tr_ids, sims)
    hota = HOTA().eval_sequence(data)
    clear = CLEAR({"THRESHOLD": 0.5, "PRINT_CONFIG": False}).eval_sequence(data)
    ident = Identity({"THRESHOLD": 0.5, "PRINT_CONFIG": False}).eval_sequence(data)
    n = max(1, len(seq))
    return SequenceReport(
        name=seq.root.name,
        kind=seq.meta["kind"],
        frames=len(seq),
        hota=float(np.mean(hota["HOTA"])),
        mota=float(clear["MOTA"]),
        idf1=float(ident["IDF1"]),
        idsw=int(clear["IDSW"]),
        gt_tracks=data["num_gt_ids"],
        velocity_errors=np.asarray(errors, np.float64),
        velocity_classes=np.asarray(error_classes, dtype=object),
        velocity_nees=np.asarray(nees, np.float64),
        detector_ms=det_ms / n,
        tracker_ms=trk_ms / n,
        raw={"HOTA": hota, "CLEAR": clear, "Identity": ident},
    )


def _velocity_errors(big, sim, est, keep, pose, max_range, min_updates) -> list[tuple]:
    """(|v_est - v_true| m/s, truth category id, e^T C^-1 e: the error e's squared Mahalanobis
    distance under the filter's velocity covariance C) of the qualifying matches of one frame."""
    from scipy.optimize import linear_sum_assignment

    if not sim.size:
        return []
    rows, cols = linear_sum_assignment(sim, maximize=True)
    det_index = np.flatnonzero(keep)
    out = []
    for r, c in zip(rows, cols):
        d = det_index[c]
        g = big[r]
        if sim[r, c] < 0.5 or est.updates[d] < min_updates:
            continue
        gx, gy = g["ground_xy"]
        if math.hypot(gx - pose[0], gy - pose[1]) > max_range:
            continue
        e = est.velocity[d] - np.asarray(g["velocity"])
        d2 = float(e @ np.linalg.solve(est.velocity_cov[d], e))
        out.append((float(np.hypot(*e)), int(g["category_id"]), d2))
    return out


def _trackeval_data(gt_ids, tr_ids, sims) -> dict:
    """TrackEval's per-sequence data: ids renumbered 0..n-1 over the sequence."""
    g_all = np.unique(np.concatenate(gt_ids)) if gt_ids else np.zeros(0, np.int64)
    t_all = np.unique(np.concatenate(tr_ids)) if tr_ids else np.zeros(0, np.int64)
    return {
        "num_timesteps": len(gt_ids),
        "num_gt_ids": len(g_all),
        "num_tracker_ids": len(t_all),
        "num_gt_dets": int(sum(len(g) for g in gt_ids)),
        "num_tracker_dets": int(sum(len(t) for t in tr_ids)),
        "gt_ids": [np.searchsorted(g_all, g) for g in gt_ids],
        "tracker_ids": [np.searchsorted(t_all, t) for t in tr_ids],
        "similarity_scores": sims,
    }


def combine(reports: list[SequenceReport]) -> dict:
    """All sequences together (trackeval's `combine_sequences`) + pooled velocity errors."""
    from trackeval.metrics import CLEAR, HOTA, Identity

    out = {}
    for name, metric in (
        ("HOTA", HOTA()),
        ("CLEAR", CLEAR({"PRINT_CONFIG": False})),
        ("Identity", Identity({"PRINT_CONFIG": False})),
    ):
        out[name] = metric.combine_sequences({r.name: r.raw[name] for r in reports})
    errs = np.concatenate([r.velocity_errors for r in reports]) if reports else np.zeros(0)
    classes = np.concatenate([r.velocity_classes for r in reports]) if reports else np.zeros(0)
    nees = np.concatenate([r.velocity_nees for r in reports]) if reports else np.zeros(0)
    by_class = {
        str(name): {
            "median": float(np.median(errs[classes == name])),
            "p90": float(np.percentile(errs[classes == name], 90)),
            "n": int((classes == name).sum()),
        }
        for name in sorted(set(classes.tolist()))
    }
    return {
        "hota": float(np.mean(out["HOTA"]["HOTA"])),
        "mota": float(out["CLEAR"]["MOTA"]),
        "idf1": float(out["Identity"]["IDF1"]),
        "idsw": int(out["CLEAR"]["IDSW"]),
        "velocity_median": float(np.median(errs)) if len(errs) else math.nan,
        "velocity_p90": float(np.percentile(errs, 90)) if len(errs) else math.nan,
        "velocity_n": int(len(errs)),
        "velocity_by_class": by_class,
        # Calibration of the published covariance: 0.95 when it is right.
        "velocity_within_95": float(np.mean(nees <= CHI2_2DOF_95)) if len(nees) else math.nan,
    }


def format_table(reports: list[SequenceReport], total: dict) -> str:
    lines = [
        f"{'sequence':<10} {'kind':<6} {'frames':>6} {'HOTA':>6} {'MOTA':>6} {'IDF1':>6} "
        f"{'IDSW':>5} {'GT ids':>6} {'v med':>6} {'v p90':>6} {'n v':>5} {'det ms':>7}"
    ]
    for r in reports:
        e = r.velocity_errors
        med = f"{np.median(e):6.2f}" if len(e) else "   nan"
        p90 = f"{np.percentile(e, 90):6.2f}" if len(e) else "   nan"
        lines.append(
            f"{r.name:<10} {r.kind:<6} {r.frames:>6} {100 * r.hota:6.1f} {100 * r.mota:6.1f} "
            f"{100 * r.idf1:6.1f} {r.idsw:>5} {r.gt_tracks:>6} {med} {p90} {len(e):>5} "
            f"{r.detector_ms:7.1f}"
        )
    lines.append(
        f"{'all':<10} {'':<6} {sum(r.frames for r in reports):>6} {100 * total['hota']:6.1f} "
        f"{100 * total['mota']:6.1f} {100 * total['idf1']:6.1f} {total['idsw']:>5} "
        f"{sum(r.gt_tracks for r in reports):>6} {total['velocity_median']:6.2f} "
        f"{total['velocity_p90']:6.2f} {total['velocity_n']:>5}"
    )
    per_class = ", ".join(
        f"{name} {v['median']:.2f} / {v['p90']:.2f} (n {v['n']})"
        for name, v in total["velocity_by_class"].items()
    )
    lines.append(f"velocity error median / p90 by class (m/s): {per_class or 'none'}")
    lines.append(
        "velocity errors inside the filter's 95 % covariance ellipse: "
        f"{100 * total['velocity_within_95']:.1f} %"
    )
    return "\n".join(lines)


# ------------------------------------------------------------------ command line


def add_arguments(p) -> None:
    """Arguments of `segmentation-ros-eval tracking`."""
    p.add_argument("--data", required=True, help="a sequence folder or a folder of them")
    p.add_argument("--gt-detections", action="store_true", help="feed ground-truth boxes")
    p.add_argument("--checkpoint", default="", help="our checkpoint (empty: the default model)")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch")
    p.add_argument("--score-threshold", type=float, default=0.3, help="detector threshold")
    p.add_argument("--high-score", type=float, default=TrackerParams.high_score)
    p.add_argument("--new-track-score", type=float, default=TrackerParams.new_track_score)
    p.add_argument("--match-iou", type=float, default=TrackerParams.match_iou)
    p.add_argument("--max-age", type=float, default=TrackerParams.max_age_s, help="seconds")
    p.add_argument("--min-hits", type=int, default=TrackerParams.min_hits)
    p.add_argument("--min-area", type=int, default=100, help="smaller ground truth is ignored")
    p.add_argument("--max-range", type=float, default=10.0, help="velocity error range, m")
    p.add_argument(
        "--contact-inset-px",
        type=float,
        default=None,
        help="ground contact above the projected bottom edge (the detector's box's), px "
        "(default: the model's, "
        f"{MotionParams.contact_inset_px}; the labels' {LABEL_CONTACT_INSET_PX} with "
        "--gt-detections)",
    )
    p.add_argument(
        "--no-reassociation", action="store_true", help="ByteTrack alone (no ids carried)"
    )


def run(args) -> int:
    """`segmentation-ros-eval tracking`: prints the table and, last, one JSON line."""
    import json

    from segmentation_ros.data.sequence_io import find_sequences

    sequences = find_sequences(args.data)
    inset = args.contact_inset_px
    if inset is None:
        inset = LABEL_CONTACT_INSET_PX if args.gt_detections else MotionParams.contact_inset_px
    detector = None
    if not args.gt_detections:
        from segmentation_ros.pipeline import SegmentationPipeline

        pipeline = SegmentationPipeline.from_checkpoint(args.checkpoint, backend=args.backend)
        detector = PipelineDetector(pipeline, args.score_threshold)
    reports = []
    for seq in sequences:
        params = TrackerParams(
            high_score=args.high_score,
            new_track_score=args.new_track_score,
            match_iou=args.match_iou,
            max_age_s=args.max_age,
            min_hits=args.min_hits,
            frame_rate=seq.rate,
        )
        reports.append(
            evaluate_sequence(
                seq,
                detector,
                tracker_params=params,
                motion_params=MotionParams(max_age_s=args.max_age, contact_inset_px=inset),
                min_area=args.min_area,
                max_range=args.max_range,
                reassociation=not args.no_reassociation,
            )
        )
        print(f"{seq.root}: {len(seq)} frames", flush=True)
    total = combine(reports)
    print(
        "detections:",
        "ground truth" if detector is None else "model",
        f"({args.checkpoint or 'default'})",
    )
    print(format_table(reports, total))
    per = {
        r.name: {
            "hota": r.hota,
            "mota": r.mota,
            "idf1": r.idf1,
            "idsw": r.idsw,
            "velocity_median": float(np.median(r.velocity_errors))
            if len(r.velocity_errors)
            else None,
        }
        for r in reports
    }
    print(json.dumps({"gt_detections": detector is None, **total, "sequences": per}))
    return 0

"""Accuracy after conversion: does a backend (ONNX Runtime, TensorRT fp16 / int8, torch.compile,
bf16 autocast) still give the torch fp32 reference's results on a data set?

Both pipelines run the same images through the same postprocess; per image the candidate's
thing segments are matched to the reference's (same class, greedy by mask IoU), and compared:

- box agreement: the fraction of reference things whose match has box IoU >= `box_iou`
  (unmatched reference things count as disagreeing; extra candidate things lower it too, as
  the denominator is the larger of the two counts);
- mask IoU: the mean mask IoU of the matched things;
- pixel agreement: the fraction of pixels with the same class (semantic map, void included);
- PQ delta: PQ(candidate) - PQ(reference) against the data set's ground truth, in points;
- one-sided things: found by one pipeline only, and how many of them scored within 0.05 above
  the score threshold (detections a small change of scores moves across it).

`Tolerances.check(agreement)` lists what exceeds a tolerance; the command
`segmentation-ros-eval backend` exits non-zero when the list is not empty.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from segmentation_ros.data.datasets import Dataset
from segmentation_ros.panoptic.pq import Category, PQAccumulator, SegmentsInfo
from segmentation_ros.pipeline import FrameResult, FrameSettings, OutputRequest
from segmentation_ros.pipeline import SegmentationPipeline as Pipeline


@dataclass(frozen=True)
class Tolerances:
    """The most a converted backend may differ from the reference (PQ in points, 0..100)."""

    min_box_agreement: float = 0.95
    min_mask_iou: float = 0.90
    min_pixel_agreement: float = 0.98
    max_pq_drop: float = 1.0
    box_iou: float = 0.9  # boxes this close count as agreeing

    def check(self, agreement: BackendAgreement) -> list[str]:
        """The violated tolerances, as readable lines (empty: the backend passes)."""
        failures = []
        if agreement.box_agreement < self.min_box_agreement:
            failures.append(
                f"box agreement {agreement.box_agreement:.3f} < {self.min_box_agreement}"
            )
        if agreement.mask_iou < self.min_mask_iou:
            failures.append(f"mean mask IoU {agreement.mask_iou:.3f} < {self.min_mask_iou}")
        if agreement.pixel_agreement < self.min_pixel_agreement:
            failures.append(
                f"pixel agreement {agreement.pixel_agreement:.4f} < {self.min_pixel_agreement}"
            )
        if -agreement.pq_delta > self.max_pq_drop:
            failures.append(f"PQ drop {-agreement.pq_delta:.2f} points > {self.max_pq_drop}")
        return failures


@dataclass(frozen=True)
class BackendAgreement:
    """Agreement of a candidate backend with the reference over `num_images` images.

    pq_reference, pq_candidate: PQ x 100; pq_delta = candidate - reference.
    ms_reference, ms_candidate: pipeline time per image (preprocess, network, postprocess).
    """

    box_agreement: float
    mask_iou: float
    pixel_agreement: float
    pq_reference: float
    pq_candidate: float
    num_images: int
    num_things: int
    ms_reference: float
    ms_candidate: float
    one_sided: int = 0  # things found by one pipeline only (`one_sided_things`)
    one_sided_near_threshold: int = 0  # of those, scored within 0.05 above the threshold

    @property
    def pq_delta(self) -> float:
        return self.pq_candidate - self.pq_reference

    def summary(self) -> dict:
        return {
            "box_agreement": round(self.box_agreement, 4),
            "mask_iou": round(self.mask_iou, 4),
            "pixel_agreement": round(self.pixel_agreement, 5),
            "pq_reference": round(self.pq_reference, 2),
            "pq_candidate": round(self.pq_candidate, 2),
            "pq_delta": round(self.pq_delta, 2),
            "images": self.num_images,
            "reference_things": self.num_things,
            "ms_reference": round(self.ms_reference, 1),
            "ms_candidate": round(self.ms_candidate, 1),
            "one_sided_things": self.one_sided,
            "one_sided_near_threshold": self.one_sided_near_threshold,
        }


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N, 4] x [M, 4] (x1, y1, x2, y2) -> [N, M]."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(inter / (area_a[:, None] + area_b[None, :] - inter))


def _mask_ious(ref: FrameResult, cand: FrameResult, ri: np.ndarray, ci: np.ndarray) -> np.ndarray:
    """[len(ri), len(ci)] mask IoU of reference segments ri and candidate segments ci."""
    n, m = len(ri), len(ci)
    if not n or not m:
        return np.zeros((n, m))
    # A joint histogram of (reference id, candidate id) pairs gives every intersection at once.
    ref_ids, cand_ids = ref.id_map.ravel(), cand.id_map.ravel()
    size = int(cand_ids.max()) + 1
    joint = np.bincount(
        ref_ids.astype(np.int64) * size + cand_ids, minlength=size * (int(ref_ids.max()) + 1)
    )
    joint = joint.reshape(-1, size)
    rid, cid = ref.segments.ids[ri], cand.segments.ids[ci]
    inter = joint[np.ix_(rid, cid)].astype(np.float64)
    area_r = joint.sum(axis=1)[rid][:, None]
    area_c = joint.sum(axis=0)[cid][None, :]
    return inter / np.maximum(area_r + area_c - inter, 1)


def _match(ref: FrameResult, cand: FrameResult):
    """Greedy same-class matches by mask IoU: (reference thing indices, candidate thing
    indices, [(i into the first, j into the second, mask IoU)])."""
    rt = np.flatnonzero(ref.segments.is_thing)
    ct = np.flatnonzero(cand.segments.is_thing)
    ious = _mask_ious(ref, cand, rt, ct)
    same_class = ref.segments.class_ids[rt][:, None] == cand.segments.class_ids[ct][None, :]
    ious = np.where(same_class, ious, 0.0)
    pairs = []
    taken = np.zeros(ct.size, dtype=bool)
    for r in np.argsort(-ious.max(axis=1, initial=0.0)) if ct.size else ():
        candidates = np.where(~taken & (ious[r] > 0), ious[r], -1.0)
        c = int(np.argmax(candidates))
        if candidates[c] <= 0:
            continue
        taken[c] = True
        pairs.append((int(r), c, float(ious[r, c])))
    return rt, ct, pairs


#: A one-sided thing scored under the score threshold + this is a threshold crossing.
NEAR_THRESHOLD = 0.05


def compare_frames(
    ref: FrameResult, cand: FrameResult, box_iou: float, match=None
) -> tuple[int, int, list]:
    """(reference things, agreeing boxes, matched mask IoUs) of one image; `match`: the image's
    `_match(ref, cand)` when the caller already has it."""
    rt, ct, pairs = match or _match(ref, cand)
    boxes = _box_iou(ref.segments.boxes[rt], cand.segments.boxes[ct])
    agreeing = sum(int(boxes[r, c] >= box_iou) for r, c, _ in pairs)
    return max(rt.size, ct.size), agreeing, [iou for _, _, iou in pairs]


def one_sided_things(
    ref: FrameResult,
    cand: FrameResult,
    score_threshold: float,
    margin: float = NEAR_THRESHOLD,
    match=None,
) -> tuple[int, int]:
    """(things on one side only, those of them scored below `score_threshold` + `margin`):
    how much of a disagreement is detections that cross the score threshold, the part a small
    change of scores flips and no better conversion of the boxes can remove."""
    rt, ct, pairs = match or _match(ref, cand)
    matched_r, matched_c = {r for r, _, _ in pairs}, {c for _, c, _ in pairs}
    lone = [ref.segments.scores[i] for k, i in enumerate(rt) if k not in matched_r]
    lone += [cand.segments.scores[j] for k, j in enumerate(ct) if k not in matched_c]
    return len(lone), sum(int(score < score_threshold + margin) for score in lone)


def compare_backends(
    reference: Pipeline,
    candidate: Pipeline,
    dataset: Dataset,
    *,
    settings: FrameSettings = FrameSettings(),  # noqa: B008 - frozen
    limit: int | None = None,
    box_iou: float = 0.9,
) -> BackendAgreement:
    """Run both pipelines over the first `limit` images of `dataset` and measure agreement."""
    if reference.classes != candidate.classes:
        raise ValueError("the two pipelines run models with different classes")
    classes = reference.classes
    categories = [
        Category(i, n, t) for i, (n, t) in enumerate(zip(classes.names, classes.is_thing))
    ]
    pq = {"reference": PQAccumulator(categories), "candidate": PQAccumulator(categories)}
    elapsed = {"reference": 0.0, "candidate": 0.0}
    request = OutputRequest(semantic=True, objects=True)
    things = agreeing = one_sided = near_threshold = 0
    mask_ious: list[float] = []
    same_pixels = total_pixels = 0
    count = len(dataset) if limit is None else min(limit, len(dataset))
    for index in range(count):
        sample = dataset[index]
        results = {}
        for name, pipeline in (("reference", reference), ("candidate", candidate)):
            start = time.perf_counter()
            result = pipeline.process(sample.image, request, settings)
            elapsed[name] += time.perf_counter() - start
            predicted = SegmentsInfo(
                ids=result.segments.ids.astype(np.int64), category_ids=result.segments.class_ids
            )
            pq[name].add(sample.id_map, sample.segments, result.id_map, predicted)
            results[name] = result
        ref, cand = results["reference"], results["candidate"]
        match = _match(ref, cand)  # once per image: both counts use it
        n, a, ious = compare_frames(ref, cand, box_iou, match=match)
        things, agreeing = things + n, agreeing + a
        mask_ious += ious
        lone, near = one_sided_things(ref, cand, settings.score_threshold, match=match)
        one_sided, near_threshold = one_sided + lone, near_threshold + near
        same_pixels += int(np.count_nonzero(ref.semantic == cand.semantic))
        total_pixels += ref.semantic.size
    return BackendAgreement(
        box_agreement=agreeing / things if things else 1.0,
        mask_iou=float(np.mean(mask_ious)) if mask_ious else (1.0 if not things else 0.0),
        pixel_agreement=same_pixels / max(total_pixels, 1),
        pq_reference=pq["reference"].result().all.pq * 100,
        pq_candidate=pq["candidate"].result().all.pq * 100,
        num_images=count,
        num_things=things,
        ms_reference=elapsed["reference"] / max(count, 1) * 1e3,
        ms_candidate=elapsed["candidate"] / max(count, 1) * 1e3,
        one_sided=one_sided,
        one_sided_near_threshold=near_threshold,
    )

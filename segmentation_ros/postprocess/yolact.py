"""Raw YOLACT / YOLACT++ outputs -> `Instances`, one per image (official inference numerics).

Pipeline per image (official `Detect` + `output_utils.postprocess`):
    decode boxes against the priors -> softmax over classes -> NMS selection (see
    `selection.py`) -> masks = crop(sigmoid(proto @ coef^T)) for the kept detections only ->
    optional YOLACT++ mask-IoU rescoring -> boxes scaled to the image and clamped.
Masks stay at prototype resolution in `Instances.mask_probs`; full-resolution masks, the
instance id image and the compact crops are computed from them on demand (`Instances`).

Two paths with identical results:
- "reference": the official dense Fast NMS ([C, top_k] over all classes). Together with
  `reference_full_masks` / `reference_id_image` (full-size upsampling of every mask, as the
  official code does) it is the baseline of the benchmarks and the oracle of the tests.
- "fast": box decoding and the softmax only for anchors whose logits allow a score above the
  threshold (`candidate_anchors`; their rows are bit-identical to the full computation),
  Fast NMS only over the (anchor, class) pairs above the threshold, packed per class; the
  masks are then
  upsampled only where they can be foreground (`Instances.compact_masks`, `.id_image`).

Differences from the official code, deliberate: detections with score <= score_threshold are
dropped after NMS (see `YolactPostprocessParams.score_threshold`), ties in sorting are broken
by anchor order, "cross_class" NMS is cut to max_detections, boxes entirely outside the image
are clamped onto it, and the mask matmul runs in the [N, Hp * Wp] layout (its float32 sums may
differ from the official layout's in the last bit; see `ops.mask_assembly`). Postprocess never
leaves the device of its inputs, never modifies them and does no I/O.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Literal, Protocol

import torch
from torch import Tensor

from ..ops.mask_assembly import assemble_masks
from ..structures import Instances
from .decode import boxes_to_image, class_softmax, decode_boxes
from .params import YolactPostprocessParams
from .selection import (
    Selection,
    candidate_anchors,
    select_cross_class,
    select_dense,
    select_sparse,
)

__all__ = [
    "MaskIoUHead",
    "postprocess_yolact",
    "postprocess_yolact_fast",
    "postprocess_yolact_reference",
    "reference_full_masks",
    "reference_id_image",
]

# Official crop margin, in prototype pixels (`crop(..., padding=1)`).
CROP_PADDING = 1

# The YOLACT++ mask re-scoring net: cropped mask probabilities [N, 1, Hp, Wp] -> [N, C].
MaskIoUHead = Callable[[Tensor], Tensor]


class _RawYolact(Protocol):
    loc: Tensor
    conf: Tensor
    coef: Tensor
    proto: Tensor


ImageSize = tuple[int, int]


def postprocess_yolact(
    outputs: _RawYolact,
    priors: Tensor,
    *,
    image_size: ImageSize | Sequence[ImageSize],
    params: YolactPostprocessParams = YolactPostprocessParams(),  # noqa: B008 (frozen)
    mask_iou_head: MaskIoUHead | None = None,
    path: Literal["fast", "reference"] = "fast",
) -> list[Instances]:
    """Turn raw YOLACT outputs into detections, one `Instances` per batch item.

    outputs: `YolactOutputs` (or anything with loc [B, A, 4], conf [B, A, C + 1] logits,
        coef [B, A, k], proto [B, Hp, Wp, k]; `PanopticYolactOutputs` works too).
    priors: [A, 4] float (cx, cy, w, h) relative to the network input, on the outputs' device.
    image_size: (H, W) of the original image(s): one for the whole batch or one per item.
        The network input is the whole image resized, so relative boxes map onto it.
    params: thresholds and options (`YolactPostprocessParams`).
    mask_iou_head: YOLACT++ re-scoring net ([N, 1, Hp, Wp] cropped mask probabilities ->
        [N, C]), e.g. `model.mask_iou_head`; None for YOLACT v1 (mask_scores == scores).
    path: "fast" or "reference" (same results; see the module docstring).
    Returns a list of B `Instances`, sorted by descending score, on the outputs' device.
    Raises ValueError / TypeError for inconsistent shapes or types.
    """
    if path not in ("fast", "reference"):
        raise ValueError(f"path must be 'fast' or 'reference', got {path!r}")
    if not isinstance(params, YolactPostprocessParams):
        raise TypeError(f"params must be YolactPostprocessParams, got {type(params).__name__}")
    loc, conf, coef, proto = _check_outputs(outputs, priors)
    sizes = _image_sizes(image_size, loc.shape[0])
    select = _select_reference if path == "reference" else _select_fast
    with torch.no_grad():
        priors = priors.to(loc.dtype)
        return [
            _one_image(
                *select(loc[b], priors, conf[b], params),
                coef[b],
                proto[b],
                sizes[b],
                params,
                mask_iou_head,
                conf.shape[2] - 1,
            )
            for b in range(loc.shape[0])
        ]


def postprocess_yolact_reference(
    outputs: _RawYolact,
    priors: Tensor,
    *,
    image_size: ImageSize | Sequence[ImageSize],
    params: YolactPostprocessParams = YolactPostprocessParams(),  # noqa: B008 (frozen)
    mask_iou_head: MaskIoUHead | None = None,
) -> list[Instances]:
    """`postprocess_yolact(..., path="reference")`: the official dense Fast NMS."""
    return postprocess_yolact(
        outputs,
        priors,
        image_size=image_size,
        params=params,
        mask_iou_head=mask_iou_head,
        path="reference",
    )


def postprocess_yolact_fast(
    outputs: _RawYolact,
    priors: Tensor,
    *,
    image_size: ImageSize | Sequence[ImageSize],
    params: YolactPostprocessParams = YolactPostprocessParams(),  # noqa: B008 (frozen)
    mask_iou_head: MaskIoUHead | None = None,
) -> list[Instances]:
    """`postprocess_yolact(..., path="fast")`: sparse Fast NMS over pairs above threshold."""
    return postprocess_yolact(
        outputs,
        priors,
        image_size=image_size,
        params=params,
        mask_iou_head=mask_iou_head,
        path="fast",
    )


def reference_full_masks(instances: Instances, threshold: float = 0.5) -> Tensor:
    """[N, H, W] bool: the official full-size upsampling of every mask, then > threshold."""
    return instances.full_masks(threshold)


def reference_id_image(instances: Instances, threshold: float = 0.5) -> Tensor:
    """[H, W] int32 id image from the N full-size masks (0 = none, i + 1 = first instance i
    whose mask covers the pixel) - the straightforward oracle of `Instances.id_image`."""
    masks = instances.full_masks(threshold)
    if masks.shape[0] == 0:
        return torch.zeros(instances.image_size, dtype=torch.int32, device=masks.device)
    first = masks.to(torch.uint8).argmax(dim=0)
    return torch.where(masks.any(dim=0), first + 1, 0).to(torch.int32)


# ----------------------------------------------------------------------------------------------


def _select_reference(
    loc: Tensor, priors: Tensor, conf: Tensor, params: YolactPostprocessParams
) -> tuple[Selection, Tensor]:
    """Official order: decode and softmax over every anchor, then dense Fast NMS.
    Returns the selection and the decoded boxes [N, 4] of its anchors."""
    boxes = decode_boxes(loc, priors)
    probs = class_softmax(conf)[:, 1:]
    if params.nms == "cross_class":
        chosen = select_cross_class(boxes, probs, params)
    else:
        chosen = select_dense(boxes, probs, params)
    return chosen, boxes[chosen.anchors]


def _select_fast(
    loc: Tensor, priors: Tensor, conf: Tensor, params: YolactPostprocessParams
) -> tuple[Selection, Tensor]:
    """Decode and softmax only the anchors that can pass the threshold (elementwise, so
    their rows equal the full computation's), then sparse Fast NMS."""
    anchors = candidate_anchors(conf, params.score_threshold)
    boxes = decode_boxes(loc[anchors], priors[anchors])
    probs = class_softmax(conf[anchors])[:, 1:]
    select = select_cross_class if params.nms == "cross_class" else select_sparse
    chosen = select(boxes, probs, params)
    return chosen._replace(anchors=anchors[chosen.anchors]), boxes[chosen.anchors]


def _one_image(
    selection: Selection,
    kept_boxes: Tensor,
    coef: Tensor,
    proto: Tensor,
    image_size: ImageSize,
    params: YolactPostprocessParams,
    mask_iou_head: MaskIoUHead | None,
    num_classes: int,
) -> Instances:
    anchors, classes, scores = selection
    if anchors.numel() == 0:
        return Instances.empty(image_size, tuple(proto.shape[:2]), device=proto.device)
    masks = assemble_masks(
        proto,
        coef[anchors],
        kept_boxes if params.crop_masks else None,
        padding=CROP_PADDING,
    )
    mask_scores = scores
    if mask_iou_head is not None:
        predicted = mask_iou_head(masks[:, None])
        if predicted.shape != (masks.shape[0], num_classes):
            raise ValueError(
                f"mask_iou_head must return [N={masks.shape[0]}, C={num_classes}], "
                f"got {tuple(predicted.shape)}"
            )
        # clamp: a head without the official last ReLU (MaskIoUConfig.last_relu) can go below 0
        mask_iou = torch.gather(predicted, 1, classes[:, None]).squeeze(1).clamp(min=0.0)
        mask_scores = scores * mask_iou
        if params.rescore_bbox:
            scores = mask_scores
    return Instances(
        image_size=image_size,
        boxes=boxes_to_image(kept_boxes, image_size),
        scores=scores,
        mask_scores=mask_scores,
        classes=classes,
        mask_probs=masks,
    )


def _check_outputs(outputs: _RawYolact, priors: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    try:
        loc, conf, coef, proto = outputs.loc, outputs.conf, outputs.coef, outputs.proto
    except AttributeError as error:
        raise TypeError(
            "outputs must have loc, conf, coef and proto (e.g. YolactOutputs)"
        ) from error
    for name, value in (("loc", loc), ("conf", conf), ("coef", coef), ("proto", proto)):
        if not isinstance(value, Tensor) or not value.dtype.is_floating_point:
            raise TypeError(f"outputs.{name} must be a floating point tensor")
    if not isinstance(priors, Tensor) or not priors.dtype.is_floating_point:
        raise TypeError("priors must be a floating point tensor [A, 4]")
    if loc.dim() != 3 or loc.shape[2] != 4:
        raise ValueError(f"loc must be [B, A, 4], got {tuple(loc.shape)}")
    batch, num_anchors = loc.shape[:2]
    if conf.dim() != 3 or conf.shape[:2] != (batch, num_anchors) or conf.shape[2] < 2:
        raise ValueError(
            f"conf must be [B={batch}, A={num_anchors}, C + 1 >= 2], got {tuple(conf.shape)}"
        )
    if proto.dim() != 4 or proto.shape[0] != batch:
        raise ValueError(f"proto must be [B={batch}, Hp, Wp, k], got {tuple(proto.shape)}")
    k = proto.shape[3]
    if coef.dim() != 3 or coef.shape != (batch, num_anchors, k):
        raise ValueError(
            f"coef must be [B={batch}, A={num_anchors}, k={k}], got {tuple(coef.shape)}"
        )
    if priors.shape != (num_anchors, 4):
        raise ValueError(f"priors must be [A={num_anchors}, 4], got {tuple(priors.shape)}")
    devices = {t.device for t in (loc, conf, coef, proto, priors)}
    if len(devices) != 1:
        raise ValueError(
            f"outputs and priors must be on one device, got {sorted(map(str, devices))}"
        )
    return loc.float(), conf.float(), coef.float(), proto.float()


def _image_sizes(image_size: ImageSize | Sequence[ImageSize], batch: int) -> list[ImageSize]:
    def pair(value) -> ImageSize:
        try:
            height, width = (operator.index(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(f"image_size must be (H, W) ints, got {value!r}") from None
        if height < 1 or width < 1:
            raise ValueError(f"image_size must be (H, W) >= 1, got {value!r}")
        return height, width

    single = len(image_size) == 2 and not any(isinstance(v, Sequence) for v in image_size)
    sizes = [pair(image_size)] * batch if single else [pair(s) for s in image_size]
    if len(sizes) != batch:
        raise ValueError(f"got {len(sizes)} image sizes for a batch of {batch}")
    return sizes

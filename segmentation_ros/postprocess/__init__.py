"""Raw network outputs -> typed results. YOLACT: `postprocess_yolact` -> list[Instances]."""

from .decode import VARIANCES, boxes_to_image, class_softmax, decode_boxes
from .params import YolactPostprocessParams
from .selection import (
    Selection,
    candidate_anchors,
    select_cross_class,
    select_dense,
    select_sparse,
)
from .yolact import (
    CROP_PADDING,
    MaskIoUHead,
    postprocess_yolact,
    postprocess_yolact_fast,
    postprocess_yolact_reference,
    reference_full_masks,
    reference_id_image,
)

__all__ = [
    "CROP_PADDING",
    "MaskIoUHead",
    "Selection",
    "VARIANCES",
    "YolactPostprocessParams",
    "boxes_to_image",
    "candidate_anchors",
    "class_softmax",
    "decode_boxes",
    "postprocess_yolact",
    "postprocess_yolact_fast",
    "postprocess_yolact_reference",
    "reference_full_masks",
    "reference_id_image",
    "select_cross_class",
    "select_dense",
    "select_sparse",
]

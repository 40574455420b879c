"""Raw network outputs: what `forward` returns and every backend (torch, ONNX Runtime, TensorRT)
hands to the one shared postprocess.

Shapes use B = batch, A = number of priors (anchors), C = number of thing classes (background
excluded), k = number of prototypes, Hp x Wp = prototype resolution, S + T = stuff + thing classes.
"""

from typing import NamedTuple

from torch import Tensor


class YolactOutputs(NamedTuple):
    """Raw YOLACT / YOLACT++ head outputs.

    loc:   [B, A, 4] float32, encoded box offsets against the priors (variances 0.1, 0.2).
    conf:  [B, A, C + 1] float32, class logits; column 0 is background (softmax in postprocess).
    coef:  [B, A, k] float32, mask coefficients after tanh.
    proto: [B, Hp, Wp, k] float32, prototypes after ReLU, channels last (as the official code).
    """

    loc: Tensor
    conf: Tensor
    coef: Tensor
    proto: Tensor


class PanopticYolactOutputs(NamedTuple):
    """YOLACT outputs plus semantic logits for the panoptic model.

    semantic: [B, S + T, Hs, Ws] float32 logits, channels = stuff classes then thing classes,
    at 1/4 or 1/8 of the network input.
    """

    loc: Tensor
    conf: Tensor
    coef: Tensor
    proto: Tensor
    semantic: Tensor

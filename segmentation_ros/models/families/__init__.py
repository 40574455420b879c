"""The registered model families, one module each (see `models.family`). Importing this package
registers them, in this order."""

from . import (
    panoptic_yolact,  # noqa: F401  (registers "panoptic_yolact": UPSNet fusion)
    pcv,  # noqa: F401  (registers "pcv": Pixel Consensus Voting)
    yolact,  # noqa: F401  (registers "yolact": YOLACT / YOLACT++)
)

# isort: split
from . import mask_rcnn  # noqa: F401  (registers "mask_rcnn": torchvision's two-stage detector)

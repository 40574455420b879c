"""The synthetic world: procedural scenes a ground robot sees, with exact panoptic annotations.

numpy + OpenCV only, deterministic by seed: `generate_scene(seed, ...)` returns the same bytes for
the same seed and arguments on any machine with the same numpy / OpenCV versions.

What is drawn:
- a pinhole camera (`SceneCamera`) 0.3-1.6 m above a flat ground, pitched down 0-20 degrees,
  60-100 degrees horizontal field of view;
- outdoor (street, rural road, park): sky, ground regions as polygons in ground coordinates
  (road with lane marks, sidewalks, grass, terrain), buildings, walls, trees, bushes, far tree
  lines; indoor (a room): floor, walls with doors, ceiling with light panels, pillars;
- things standing on the ground with metric sizes: person, car, bicycle, traffic_cone, box,
  drawn far to near (the painter's algorithm) so nearer objects occlude farther ones.
Image and annotation come from one rasterisation (a part-id map); textures, shadows, lighting,
blur and sensor noise change the image only.

Annotation conventions:
- categories: `segmentation_ros.data.classes.SYNTHETIC_CLASSES` (stuff 0..9, things 10..14, the
  convention of `segmentation_ros.panoptic.result`), with a drivable flag per class;
- `id_map` [H, W] int32: segment ids 1..N, 0 = void; one segment per stuff class present and
  one per visible thing instance (occluded parts belong to the occluder);
- segments with fewer than `min_area` (default 20) visible pixels are dropped and their pixels
  set to void 0, so every non-zero id has a segment and every segment has >= min_area pixels;
- bbox (x, y, w, h) is the tightest box of the segment's pixels (COCO), area its pixel count.

Camera and frames: see `synthetic_camera` (ROS REP-103; `camera_to_base` maps optical-frame
points to base_link, whose origin is the ground point below the camera).
"""

from segmentation_ros.data.synthetic_camera import SceneCamera
from segmentation_ros.data.synthetic_io import (
    SyntheticDataset,
    id_map_to_rgb,
    instance_annotations,
    rgb_to_id_map,
    write_dataset,
)
from segmentation_ros.data.synthetic_scene import (
    MIN_AREA,
    Scene,
    SceneSegments,
    colorize_panoptic,
    generate_scene,
)

__all__ = [
    "MIN_AREA",
    "Scene",
    "SceneCamera",
    "SceneSegments",
    "SyntheticDataset",
    "colorize_panoptic",
    "generate_scene",
    "id_map_to_rgb",
    "instance_annotations",
    "rgb_to_id_map",
    "write_dataset",
]

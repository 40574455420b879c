"""What a shipped model finds on generated scenes, against the synthetic world's exact truth:
large segments recovered with the right class, and the drivable surface."""

from dataclasses import dataclass

import numpy as np

from segmentation_ros.data.classes import DRIVABLE_NAMES, STUFF_NAMES
from segmentation_ros.data.synthetic import generate_scene
from segmentation_ros.pipeline import FrameSettings, OutputRequest


@dataclass
class SceneFindings:
    found: int  # large truth segments matched (right class, mask IoU > 0.5)
    total: int  # large truth segments
    drivable_ious: list  # per scene, IoU of the drivable mask with the truth


def find_on_scenes(pipeline, seeds, *, min_area: int, things: bool) -> SceneFindings:
    """Run `pipeline` on the scenes of `seeds` (640 x 480); count the truth's segments of at
    least `min_area` pixels, things (`things=True`) or stuff, that a predicted segment of the
    same class overlaps at mask IoU > 0.5; and the drivable mask's IoU per scene."""
    found = total = 0
    drivable_ious = []
    drivable_ids = [STUFF_NAMES.index(n) for n in DRIVABLE_NAMES]
    for seed in seeds:
        scene = generate_scene(seed)
        result = pipeline.process(scene.image, OutputRequest(drivable_mask=True), FrameSettings())
        segments = scene.segments
        for sid, category, area in zip(segments.ids, segments.category_ids, segments.areas):
            if (category >= len(STUFF_NAMES)) != things or area < min_area:
                continue
            total += 1
            truth = scene.id_map == sid
            for pid, pclass in zip(result.segments.ids, result.segments.class_ids):
                pred = result.id_map == pid
                if pclass == category and (truth & pred).sum() / (truth | pred).sum() > 0.5:
                    found += 1
                    break
        truth = np.isin(scene.semantic_map(), drivable_ids)
        union = max((truth | result.drivable).sum(), 1)
        drivable_ious.append((truth & result.drivable).sum() / union)
    return SceneFindings(found, total, drivable_ious)

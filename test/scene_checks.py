"""What a shipped model finds on generated scenes, against the synthetic world's exact truth:
large segments recovered with the right class, and the drivable surface."""

from dataclasses import dataclass

import numpy as np

from segmentation_ros.data.classes import DRIVABLE_NAMES, STUFF_NAMES, THING_NAMES
from segmentation_ros.data.synthetic import generate_scene
from segmentation_ros.pipeline import FrameSettings, OutputRequest


@dataclass
class SceneFindings:
    found: int  # large truth segments matched (right class, mask IoU > 0.5)
    total: int  # large truth segments
    drivable_ious: list  # per scene, IoU of the drivable mask with the truth


def _large_segments(scene, result, *, min_area: int, keep):
    """(truth index, predicted index or None) for each truth segment of at least `min_area`
    pixels whose category `keep` accepts: the first predicted segment of the same class that
    overlaps it at mask IoU > 0.5."""
    truth = scene.segments
    for i, (sid, category, area) in enumerate(zip(truth.ids, truth.category_ids, truth.areas)):
        if not keep(category) or area < min_area:
            continue
        mask = scene.id_map == sid
        found = None
        for j, (pid, pclass) in enumerate(zip(result.segments.ids, result.segments.class_ids)):
            pred = result.id_map == pid
            if pclass == category and (mask & pred).sum() / (mask | pred).sum() > 0.5:
                found = j
                break
        yield i, found


def find_on_scenes(pipeline, seeds, *, min_area: int, things: bool) -> SceneFindings:
    """Run `pipeline` on the scenes of `seeds` (640 x 480); count the truth's segments of at
    least `min_area` pixels, things (`things=True`) or stuff, that a predicted segment of the
    same class overlaps at mask IoU > 0.5; and the drivable mask's IoU per scene."""
    found = total = 0
    drivable_ids = [STUFF_NAMES.index(n) for n in DRIVABLE_NAMES]
    drivable_ious = []

    def keep(category):
        return (category >= len(STUFF_NAMES)) == things

    for seed in seeds:
        scene = generate_scene(seed)
        result = pipeline.process(scene.image, OutputRequest(drivable_mask=True), FrameSettings())
        for _, match in _large_segments(scene, result, min_area=min_area, keep=keep):
            total += 1
            found += match is not None
        truth = np.isin(scene.semantic_map(), drivable_ids)
        union = max((truth | result.drivable).sum(), 1)
        drivable_ious.append((truth & result.drivable).sum() / union)
    return SceneFindings(found, total, drivable_ious)


@dataclass
class KeypointFindings:
    placed: int  # visible truth keypoints of matched people predicted within the radius
    visible: int  # visible truth keypoints of matched people
    people: int  # large truth people matched (person class, mask IoU > 0.5)


def keypoints_on_scenes(pipeline, seeds, *, min_area: int, radius: float) -> KeypointFindings:
    """PCK on the scenes of `seeds`: for each truth person of at least `min_area` pixels that a
    predicted person overlaps at mask IoU > 0.5, count its visible keypoints (the world's exact
    ones) that the prediction places within `radius` x the person's box height."""
    person = len(STUFF_NAMES) + THING_NAMES.index("person")
    placed = visible = people = 0
    for seed in seeds:
        scene = generate_scene(seed)
        result = pipeline.process(scene.image, OutputRequest(), FrameSettings())
        truth = scene.segments
        for i, j in _large_segments(scene, result, min_area=min_area, keep=lambda c: c == person):
            if j is None:
                continue
            people += 1
            shown = truth.keypoints[i, :, 2] > 0
            error = np.hypot(*(result.segments.keypoints[j, :, :2] - truth.keypoints[i, :, :2]).T)
            visible += int(shown.sum())
            placed += int((shown & (error < radius * truth.bboxes[i][3])).sum())
    return KeypointFindings(placed, visible, people)

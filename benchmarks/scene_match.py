"""Per truth object of one class on a generated scene: the best mask IoU of a predicted segment of
that class and of any other class (what eval_people.py and eval_thin_objects.py tabulate)."""

from collections.abc import Iterator


def best_ious(scene, result, category: int, min_area: int) -> Iterator[tuple]:
    """(truth mask, area, best IoU of the same class, best IoU of another class) for each truth
    segment of `category` with at least `min_area` pixels."""
    s = scene.segments
    for sid, cat, area in zip(s.ids, s.category_ids, s.areas):
        if cat != category or area < min_area:
            continue
        truth = scene.id_map == sid
        same = other = 0.0
        for pid, pc in zip(result.segments.ids, result.segments.class_ids):
            pred = result.id_map == pid
            iou = (truth & pred).sum() / (truth | pred).sum()
            if pc == category:
                same = max(same, iou)
            else:
                other = max(other, iou)
        yield truth, area, same, other

"""Views of a frame result for people: the `overlay` image and the `markers` MarkerArray.

- `class_palette(n)`: a fixed, well-spread RGB colour per class id (also sent in ClassInfo).
- `draw_overlay(...)`: the camera image with every segment tinted in its class colour, and thing
  boxes with "label score" text. Pure numpy + OpenCV, vectorised over pixels.
- `draw_tracks(...)`: per tracked object its track id and an arrow of its image-plane motion
  (the demo strip).
- `draw_keypoints(...)`: keypoints as dots and the skeleton's limbs as lines, on the overlay.
- `make_markers(...)`: per thing object with a ground position, a disc on the ground (its width
  from the box's bottom edge projected on the ground) and a text label above it, in the grid
  frame; the array starts with DELETEALL so that objects of past frames disappear.

Pixel coordinates: x right, y down; boxes (x1, y1, x2, y2) in pixels. Ground positions are
metres in the grid frame (x forward, y left, z up, the ground at z = 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

_GOLDEN = 0.618033988749895


def class_palette(num_classes: int) -> np.ndarray:
    """[num_classes, 3] uint8 RGB: hues spread by the golden ratio, alternating brightness."""
    idx = np.arange(num_classes, dtype=np.float64)
    hue = (idx * _GOLDEN + 0.1) % 1.0
    sat = np.where(idx % 2 == 0, 0.75, 0.55)
    val = np.where(idx % 3 == 0, 0.95, 0.8)
    hsv = np.stack([hue * 180.0, sat * 255.0, val * 255.0], axis=-1).astype(np.uint8)
    return cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0]


def draw_overlay(
    rgb: np.ndarray,
    id_map: np.ndarray,
    segment_colors: np.ndarray,
    *,
    boxes: np.ndarray,
    labels: Sequence[str],
    alpha: float = 0.5,
) -> np.ndarray:
    """The image with segments tinted and boxes labelled.

    rgb: [H, W, 3] uint8 RGB camera image (not modified).
    id_map: [H, W] integer segment ids, 0 = none, 1..N the segments.
    segment_colors: [N, 3] uint8 RGB colour of segment i + 1.
    boxes: [M, 4] (x1, y1, x2, y2) pixels of the segments to frame (things), and `labels` their
        M texts; both may be empty.
    alpha: tint opacity in [0, 1].
    Returns a new [H, W, 3] uint8 RGB image.
    """
    if rgb.shape[:2] != id_map.shape:
        raise ValueError(f"id_map {id_map.shape} does not match the image {rgb.shape[:2]}")
    out = cv2.addWeighted(rgb, 1.0 - alpha, _colour_image(id_map, segment_colors), alpha, 0.0)
    cv2.copyTo(rgb, (id_map == 0).view(np.uint8), out)  # pixels of no segment stay untinted
    height, width = id_map.shape
    scale = max(0.35, min(height, width) / 900.0)
    thickness = max(1, round(min(height, width) / 300))
    for box, label in zip(np.asarray(boxes).reshape(-1, 4), labels):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(out, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), (255, 255, 255), thickness)
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else min(height - 1, y1 + th + 2)
        cv2.rectangle(out, (x1, ty - th - 1), (x1 + tw, ty + base - 1), (0, 0, 0), cv2.FILLED)
        cv2.putText(
            out, label, (x1, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA
        )
    return out


def draw_keypoints(
    image: np.ndarray,
    keypoints: np.ndarray,
    skeleton: Sequence[tuple[int, int]] = (),
    color: tuple[int, int, int] = (255, 255, 0),
) -> np.ndarray:
    """Draw keypoints into `image` ([H, W, 3] uint8 RGB, modified in place, returned).

    keypoints: [N, K, 3] (x, y, score) pixels (pixel (u, v) covers [u, u + 1)); objects or
    keypoints with a NaN are skipped. skeleton: 1-based (a, b) index pairs joined by lines.
    """
    height, width = image.shape[:2]
    radius = max(2, round(min(height, width) / 160))
    thickness = max(1, round(min(height, width) / 320))
    for person in np.asarray(keypoints, dtype=np.float64):
        ok = np.isfinite(person).all(axis=1)
        # Pixel (u, v)'s centre is at (u + 0.5, v + 0.5): OpenCV draws at integer centres.
        pts = np.rint(np.where(ok[:, None], person[:, :2], 0.0) - 0.5).astype(int)
        for a, b in skeleton:
            if ok[a - 1] and ok[b - 1]:
                cv2.line(image, tuple(pts[a - 1]), tuple(pts[b - 1]), color, thickness, cv2.LINE_AA)
        for p in pts[ok]:
            cv2.circle(image, tuple(p), radius, (255, 0, 255), cv2.FILLED, cv2.LINE_AA)
    return image


def _colour_image(id_map: np.ndarray, segment_colors: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8: each pixel in its segment's colour (black for id 0 and unknown ids).

    Up to 254 segments (every real frame) go through OpenCV's 8-bit table lookup, ~40x faster
    than numpy's gather into a float image; more fall back to the gather.
    """
    n = len(segment_colors)
    colors = np.asarray(segment_colors, dtype=np.uint8).reshape(n, 3)
    if n < 255:
        table = np.zeros((256, 1, 3), dtype=np.uint8)
        table[1 : n + 1, 0] = colors
        ids = np.where(id_map <= n, id_map, 0).astype(np.uint8)
        return cv2.LUT(cv2.cvtColor(ids, cv2.COLOR_GRAY2RGB), table)
    table = np.zeros((n + 1, 3), dtype=np.uint8)
    table[1:] = colors
    return table[np.where(id_map <= n, id_map, 0)]


def make_markers(
    *,
    header,
    ground_xy: np.ndarray,
    ground_width: np.ndarray,
    labels: Sequence[str],
    colors: np.ndarray,
    ids: Sequence[int],
    disc_height: float = 0.05,
    text_height: float = 0.6,
    keypoints_xyz: np.ndarray | None = None,
    skeleton: Sequence[tuple[int, int]] = (),
):
    """visualization_msgs/MarkerArray of the objects on the ground.

    header: stamp of the camera image, frame_id the grid frame.
    ground_xy: [N, 2] metres (NaN: not on the ground, skipped). ground_width: [N] metres.
    labels, colors ([N, 3] uint8 RGB), ids: per object (marker ids are the object ids).
    keypoints_xyz: [N, K, 3] metres (NaN rows: none): a SPHERE_LIST per object ("keypoints")
    and its `skeleton` limbs (1-based pairs) as a LINE_LIST ("skeleton").
    """
    from geometry_msgs.msg import Point
    from visualization_msgs.msg import Marker, MarkerArray

    markers = [Marker(header=header, action=Marker.DELETEALL)]
    for xy, width, label, color, object_id in zip(ground_xy, ground_width, labels, colors, ids):
        if not np.isfinite(xy).all():
            continue
        diameter = float(np.clip(width if np.isfinite(width) else 0.5, 0.1, 10.0))
        r, g, b = (float(c) / 255.0 for c in color)
        disc = Marker(header=header, ns="objects", id=int(object_id), type=Marker.CYLINDER)
        disc.action = Marker.ADD
        disc.pose.position = Point(x=float(xy[0]), y=float(xy[1]), z=disc_height / 2)
        disc.pose.orientation.w = 1.0
        disc.scale.x = disc.scale.y = diameter
        disc.scale.z = disc_height
        disc.color.r, disc.color.g, disc.color.b, disc.color.a = r, g, b, 0.8
        text = Marker(header=header, ns="labels", id=int(object_id), type=Marker.TEXT_VIEW_FACING)
        text.action = Marker.ADD
        text.pose.position = Point(x=float(xy[0]), y=float(xy[1]), z=text_height)
        text.pose.orientation.w = 1.0
        text.scale.z = 0.25
        text.color.r = text.color.g = text.color.b = text.color.a = 1.0
        text.text = label
        markers += [disc, text]
    if keypoints_xyz is not None:
        for points, object_id in zip(keypoints_xyz, ids):
            markers += _keypoint_markers(header, points, skeleton, int(object_id))
    return MarkerArray(markers=markers)


#: RGB colours of the track drawings on the demo strip: the id text and the motion arrow.
TRACK_TEXT_COLOR = (255, 230, 0)
TRACK_ARROW_COLOR = (0, 255, 255)


def draw_tracks(
    image: np.ndarray,
    boxes: np.ndarray,
    track_ids: Sequence[int],
    velocities: np.ndarray,
    *,
    seconds: float = 0.5,
) -> None:
    """Draw, in place on `image` ([H, W, 3] uint8 RGB), per tracked object its id "#ID" (yellow
    on black, inside the top-left corner of its box) and, when it moves, an arrow (cyan) from
    the box centre to where the centre will be in `seconds` at its image-plane velocity.

    boxes: [N, 4] (x1, y1, x2, y2) pixels of `image`; track_ids: [N] (0: untracked, skipped);
    velocities: [N, 2] image-plane velocity of the box centre, pixels/s (NaN: no arrow).
    """
    height, width = image.shape[:2]
    scale = max(0.35, min(height, width) / 700.0)
    for box, tid, v in zip(np.asarray(boxes, float).reshape(-1, 4), track_ids, velocities):
        if not tid:
            continue
        x1, y1, x2, y2 = (int(round(c)) for c in box)
        text = f"#{int(tid)}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        cv2.rectangle(image, (x1, y1), (x1 + tw + 2, y1 + th + base + 2), (0, 0, 0), cv2.FILLED)
        cv2.putText(
            image, text, (x1 + 1, y1 + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale,
            TRACK_TEXT_COLOR, 1, cv2.LINE_8,
        )  # fmt: skip
        v = np.asarray(v, float)
        if not np.isfinite(v).all() or float(np.hypot(*v)) * seconds < 3.0:
            continue
        c = np.array([(x1 + x2) / 2.0, (y1 + y2) / 2.0])
        tip = c + v * seconds
        cv2.arrowedLine(
            image, tuple(int(round(p)) for p in c), tuple(int(round(p)) for p in tip),
            TRACK_ARROW_COLOR, 2, cv2.LINE_8, tipLength=0.3,
        )  # fmt: skip


def _keypoint_markers(header, points: np.ndarray, skeleton, object_id: int) -> list:
    """SPHERE_LIST of an object's keypoints [K, 3] and LINE_LIST of its limbs; [] if unknown."""
    from geometry_msgs.msg import Point
    from visualization_msgs.msg import Marker

    ok = np.isfinite(points).all(axis=1)
    if not ok.any():
        return []
    pts = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in points]
    dots = Marker(header=header, ns="keypoints", id=object_id, type=Marker.SPHERE_LIST)
    dots.action = Marker.ADD
    dots.pose.orientation.w = 1.0
    dots.scale.x = dots.scale.y = dots.scale.z = 0.06
    dots.color.r, dots.color.g, dots.color.b, dots.color.a = 1.0, 0.0, 1.0, 1.0
    dots.points = [p for p, good in zip(pts, ok) if good]
    limbs = Marker(header=header, ns="skeleton", id=object_id, type=Marker.LINE_LIST)
    limbs.action = Marker.ADD
    limbs.pose.orientation.w = 1.0
    limbs.scale.x = 0.02
    limbs.color.r, limbs.color.g, limbs.color.b, limbs.color.a = 1.0, 1.0, 0.0, 1.0
    limbs.points = [pts[i - 1] for a, b in skeleton if ok[a - 1] and ok[b - 1] for i in (a, b)]
    return [dots, limbs] if limbs.points else [dots]

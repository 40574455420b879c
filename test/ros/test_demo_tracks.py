"""The demo strip shows tracks where the tracked objects are: frames of a drive of the synthetic
sequence world, `objects` messages whose tracked objects are the world's own agents (truth
boxes, agent ids as track ids, as a perfect tracker would publish them), drawn by the demo's
`overlay_strip`. The drawn id texts and motion arrows are found by their colours and checked
against the world's truth boxes and their true image motion."""

import numpy as np
import pytest
from segmentation_ros.msg import SegmentationResult, SegmentedObject
from std_msgs.msg import Header

from segmentation_ros.data.sequence_render import render_frame
from segmentation_ros.data.sequence_world import build_world
from segmentation_ros.ros.demo_record import overlay_strip
from segmentation_ros.ros.image_codec import numpy_to_image
from segmentation_ros.ros.visualization import TRACK_ARROW_COLOR, TRACK_TEXT_COLOR

SEED, FRAMES, MIN_AREA = 931_501, 6, 1500  # seed used by no other test or training
TILE_H = 240


@pytest.fixture(scope="module")
def drive():
    world = build_world(SEED, kind="drive", num_frames=FRAMES)
    return world, [render_frame(world, k) for k in range(FRAMES)]


def _messages(frames, tracked: bool):
    overlays, objects = [], []
    for f in frames:
        header = Header(frame_id="camera_optical_frame")
        header.stamp.sec, header.stamp.nanosec = 100 + f.index // 10, (f.index % 10) * 100_000_000
        h, w = f.image.shape[:2]
        overlays.append(numpy_to_image(f.image, "rgb8", header=header))
        result = SegmentationResult(header=header, image_width=w, image_height=h)
        s = f.segments
        for agent, box, area in zip(s.track_ids, s.bboxes, s.areas):
            if not agent or area < MIN_AREA:
                continue
            o = SegmentedObject(is_thing=True, track_id=int(agent) if tracked else 0)
            o.roi.x_offset, o.roi.y_offset, o.roi.width, o.roi.height = (int(v) for v in box)
            result.objects.append(o)
        objects.append(result)
    return overlays, objects


def _tracked(frame, agent) -> bool:
    seg = frame.segments
    return bool(((seg.track_ids == agent) & (seg.areas >= MIN_AREA)).any())


def _mask(strip, color):
    """Pixels of `color` or of its anti-aliased blend with the black text background (OpenCV 5
    always smooths text): a multiple >= 1/2 of the colour, within 6 levels per channel."""
    px = strip.astype(np.float64)
    c = np.asarray(color, np.float64)
    k = (px @ c) / (c @ c)
    return (k >= 0.5) & (np.abs(px - k[..., None] * c).max(axis=2) <= 6)


def test_strip_draws_ids_and_arrows_on_the_tracked_objects(drive):
    world, frames = drive
    plain = overlay_strip(*_messages(frames, tracked=False), count=FRAMES, height=TILE_H)
    strip = overlay_strip(*_messages(frames, tracked=True), count=FRAMES, height=TILE_H)
    assert strip.shape == plain.shape
    # the camera images carry neither colour: whatever has it was drawn for tracks
    assert not _mask(plain, TRACK_TEXT_COLOR).any() and not _mask(plain, TRACK_ARROW_COLOR).any()
    text, arrow = _mask(strip, TRACK_TEXT_COLOR), _mask(strip, TRACK_ARROW_COLOR)
    s = TILE_H / world.camera.height
    tile_w = round(world.camera.width * s)
    near = np.zeros_like(text)  # every tracked truth box, grown by the text and arrow reach
    with_text = with_arrow = 0
    for k, f in enumerate(frames):
        x0 = k * (tile_w + 4)
        seg = f.segments
        for agent, box, area in zip(seg.track_ids, seg.bboxes, seg.areas):
            if not agent or area < MIN_AREA:
                continue
            x, y, w, h = box * s
            # true image motion of the box centre since its first tracked frame in the last 0.5 s
            j = next((j for j in range(max(0, k - 5), k) if _tracked(frames[j], agent)), k)
            motion = np.zeros(2)
            if j < k:
                prev = frames[j].segments
                px, py, pw, ph = prev.bboxes[list(prev.track_ids).index(agent)] * s
                motion = np.array([x + w / 2 - px - pw / 2, y + h / 2 - py - ph / 2])
                motion *= world.rate / (k - j)
            reach = 30 + int(0.5 * np.hypot(*motion))
            near[max(0, int(y) - reach) : int(y + h) + reach,
                 max(x0, x0 + int(x) - reach) : x0 + int(x + w) + reach] = True  # fmt: skip
            if y >= 24:  # (not under the tile's label bar)
                corner = text[int(y) : int(y) + 14, x0 + int(x) : x0 + int(x) + 40]
                assert corner.sum() >= 10, (k, agent, box)
                with_text += 1
            if np.hypot(*motion) * 0.5 < 10:  # moves less than 10 px in 0.5 s
                continue
            cy, cx = np.nonzero(arrow[:, x0 : x0 + tile_w])
            c = np.array([x + w / 2, y + h / 2])
            d = np.stack([cx, cy], 1) - c
            close = np.hypot(*d.T) < 0.5 * np.hypot(*motion) + 3
            assert close.sum() >= 5, (k, agent)
            # the arrow's pixels lie on the side the object moves to
            assert (d[close] @ motion).mean() > 0, (k, agent, motion)
            with_arrow += 1
    print(f"{with_text} ids and {with_arrow} arrows checked against the truth")
    assert with_text >= 8 and with_arrow >= 3
    assert not (text & ~near).any() and not (arrow & ~near).any()

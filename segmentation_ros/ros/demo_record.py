"""The demo's record of the node's outputs: every topic the node publishes (the output table, the
class table and /diagnostics) written as received to an MCAP rosbag2, then pictures drawn from
that bag (`overlay_strip`, `grid_picture`, `write_pictures`).

Our messages' definitions are registered from msg/*.msg (`output_typestore`), so any rosbags or
ROS 2 reader decodes the bag.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray

from segmentation_ros.ros.diagnostics import diagnostics_values
from segmentation_ros.ros.inputs import stamp_ns
from segmentation_ros.ros.launch_logic import share_directory
from segmentation_ros.ros.output_table import (
    CLASS_INFO_TOPIC,
    CLASS_INFO_TYPE,
    OUTPUTS,
    type_name,
)

#: Every topic the recorder subscribes to (relative names, or absolute) and its message type.
RECORDED: dict[str, type] = {
    **{out.topic: out.msg_type for out in OUTPUTS},
    CLASS_INFO_TOPIC: CLASS_INFO_TYPE,
    "/diagnostics": DiagnosticArray,
}


def output_typestore():
    """rosbags typestore with the ROS 2 standard types and our messages from msg/*.msg."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for path in sorted((share_directory() / "msg").glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"segmentation_ros/msg/{path.stem}"))
    store.register(types)
    return store


class Recorder:
    """Subscribes to every recorded topic (raw, serialised CDR) on `node` and writes what
    arrives to an MCAP rosbag2 at `bag_path`, timestamped on receipt. Keeps the latency of each
    `objects` message (camera stamp -> received, ms) and the newest /diagnostics values."""

    def __init__(self, node, bag_path: Path):
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from rclpy.serialization import deserialize_message
        from rosbags.rosbag2 import StoragePlugin, Writer

        self._deserialize = deserialize_message
        self.store = output_typestore()
        self.writer = Writer(bag_path, version=9, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.counts: dict[str, int] = {}
        self.objects_received: list[float] = []  # wall clock, seconds
        self.latencies_ms: list[float] = []
        self.diagnostics: dict[str, str] = {}
        self.diagnostics_time = 0.0
        self._connections = {}
        self._subscriptions = []
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        for topic, msg_type in RECORDED.items():
            name = node.resolve_topic_name(topic)
            self._connections[topic] = self.writer.add_connection(
                name, type_name(msg_type), typestore=self.store
            )
            self.counts[topic] = 0
            qos = latched if topic == CLASS_INFO_TOPIC else reliable
            callback = self._callback(topic, msg_type)
            self._subscriptions.append(
                node.create_subscription(msg_type, topic, callback, qos, raw=True)
            )

    def _callback(self, topic: str, msg_type):
        def on_message(raw: bytes) -> None:
            now_ns = time.time_ns()
            self.writer.write(self._connections[topic], now_ns, raw)
            self.counts[topic] += 1
            if topic == "objects":
                msg = self._deserialize(raw, msg_type)
                self.objects_received.append(now_ns / 1e9)
                self.latencies_ms.append((now_ns - stamp_ns(msg.header)) / 1e6)
            elif topic == "/diagnostics":
                values = diagnostics_values(self._deserialize(raw, DiagnosticArray))
                if values:
                    self.diagnostics, self.diagnostics_time = values, now_ns / 1e9

        return on_message

    def close(self) -> None:
        self.writer.close()


# -- pictures ----------------------------------------------------------------------------------


def read_outputs(bag_path: Path, store, topics: tuple[str, ...]) -> dict[str, list]:
    """Deserialised messages of `topics` (bag topic names) in the bag, in recording order."""
    from rosbags.rosbag2 import Reader

    out: dict[str, list] = {topic: [] for topic in topics}
    with Reader(bag_path) as reader:
        wanted = [c for c in reader.connections if c.topic in out]
        for connection, _, raw in reader.messages(connections=wanted):
            out[connection.topic].append(store.deserialize_cdr(raw, connection.msgtype))
    return out


def track_motion(objects: list, *, window_s: float = 0.5) -> dict[int, dict[int, np.ndarray]]:
    """Image-plane velocity of each tracked object: {objects stamp (ns): {track id: [2] pixels/s
    of its box centre}}, from the same track's box in the earliest `objects` message of the
    `window_s` seconds before (absent for a track's first message)."""
    history: dict[int, list[tuple[int, np.ndarray]]] = {}
    out: dict[int, dict[int, np.ndarray]] = {}
    for msg in sorted(objects, key=lambda m: stamp_ns(m.header)):
        t = stamp_ns(msg.header)
        out[t] = {}
        for o in msg.objects:
            if not getattr(o, "track_id", 0):
                continue
            r = o.roi
            c = np.array([r.x_offset + r.width / 2.0, r.y_offset + r.height / 2.0])
            past = [(t0, c0) for t0, c0 in history.get(o.track_id, []) if t - t0 <= window_s * 1e9]
            if past:
                t0, c0 = past[0]
                out[t][o.track_id] = (c - c0) / ((t - t0) / 1e9)
            history[o.track_id] = [*past, (t, c)]
    return out


def _draw_tracks(tile: np.ndarray, result, motion: dict[int, np.ndarray]) -> None:
    """The tracked objects of `result` (a SegmentationResult) on a tile scaled from its image."""
    from segmentation_ros.ros.visualization import draw_tracks

    tracked = [o for o in result.objects if getattr(o, "track_id", 0)]
    if not tracked or not result.image_width:
        return
    s = tile.shape[1] / float(result.image_width)
    boxes = (
        np.array(
            [
                (
                    o.roi.x_offset,
                    o.roi.y_offset,
                    o.roi.x_offset + o.roi.width,
                    o.roi.y_offset + o.roi.height,
                )
                for o in tracked
            ],
            float,
        )
        * s
    )
    nan = np.full(2, np.nan)
    v = np.array([motion.get(o.track_id, nan) for o in tracked], float).reshape(-1, 2) * s
    draw_tracks(tile, boxes, [o.track_id for o in tracked], v)


def overlay_strip(overlays: list, objects: list, *, count: int = 4, height: int = 240):
    """Up to `count` overlay frames evenly spaced over the run, side by side, each scaled to
    `height` pixels and labelled with its index and what the matching `objects` says; the
    tracked objects of those frames carry their track id and an arrow of their image-plane
    motion (`track_motion`, drawn by `visualization.draw_tracks`: where the box centre will be
    in 0.5 s). Returns an [height, W, 3] uint8 RGB image (None when there is no overlay)."""
    from segmentation_ros.ros.image_codec import to_rgb8

    if not overlays:
        return None
    by_stamp = {stamp_ns(m.header): m for m in objects}
    motion = track_motion(objects)
    picks = np.unique(np.linspace(0, len(overlays) - 1, min(count, len(overlays))).round())
    tiles = []
    for index in picks.astype(int):
        msg = overlays[index]
        rgb = to_rgb8(msg)
        scale = height / rgb.shape[0]
        tile = cv2.resize(rgb, (max(1, round(rgb.shape[1] * scale)), height))
        result = by_stamp.get(stamp_ns(msg.header))
        label = f"#{index}"
        if result is not None:
            label += f"  {len(result.objects)} objects  {result.total_ms:.0f} ms"
            _draw_tracks(tile, result, motion.get(stamp_ns(msg.header), {}))
        cv2.rectangle(tile, (0, 0), (tile.shape[1], 22), (0, 0, 0), -1)
        cv2.putText(tile, label, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        tiles.append(tile)
        tiles.append(np.full((height, 4, 3), 255, np.uint8))
    return np.hstack(tiles[:-1])


def grid_picture(grid, *, size: int = 400) -> np.ndarray:
    """A nav_msgs/OccupancyGrid seen from above, forward up and left on the left: free white,
    occupied black (shades for 1..99), unknown grey, the grid frame's origin (the robot) a red
    dot. Returns [H, W, 3] uint8 RGB, the longer side `size` pixels (nearest-neighbour cells).
    Assumes the grid's origin orientation is the identity (as the node publishes it)."""
    info = grid.info
    width, height = int(info.width), int(info.height)
    values = np.asarray(grid.data, dtype=np.int16).reshape(height, width)  # [y cell, x cell]
    gray = np.where(values < 0, 128, 255 - np.clip(values, 0, 100) * 255 // 100).astype(np.uint8)
    view = np.ascontiguousarray(gray.T[::-1, ::-1])  # rows: x forward (up), cols: y left (left)
    scale = max(1, size // max(width, height))
    view = cv2.resize(view, (height * scale, width * scale), interpolation=cv2.INTER_NEAREST)
    rgb = cv2.cvtColor(view, cv2.COLOR_GRAY2RGB)
    resolution = float(info.resolution)
    col_x = (0.0 - info.origin.position.x) / resolution  # grid column of the robot (x)
    row_y = (0.0 - info.origin.position.y) / resolution  # grid row of the robot (y)
    u = (height - row_y) * scale  # picture column: y flipped
    v = (width - col_x) * scale  # picture row: x flipped
    u = int(np.clip(u, 0, rgb.shape[1] - 1))
    v = int(np.clip(v, 0, rgb.shape[0] - 1))
    cv2.circle(rgb, (u, v), max(3, round(0.015 * max(rgb.shape[:2]))), (255, 0, 0), -1)
    return rgb


def write_pictures(bag_path: Path, store, out: Path) -> tuple[Path | None, Path | None]:
    """OUT/strip.png and OUT/grid.png from the recorded bag (None where nothing was recorded)."""
    messages = read_outputs(bag_path, store, ("/overlay", "/objects", "/drivable/grid"))
    strip_path = grid_path = None
    strip = overlay_strip(messages["/overlay"], messages["/objects"])
    if strip is not None:
        strip_path = out / "strip.png"
        cv2.imwrite(str(strip_path), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    if messages["/drivable/grid"]:
        grid_path = out / "grid.png"
        picture = grid_picture(messages["/drivable/grid"][-1])
        cv2.imwrite(str(grid_path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    return strip_path, grid_path

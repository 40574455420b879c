"""Messages of the outputs that lie on the ground and that Nav2's costmap layers take as they
are: `drivable/scan` (sensor_msgs/LaserScan), `drivable/obstacles` (sensor_msgs/PointCloud2)
and `drivable/grid_fused` (nav_msgs/OccupancyGrid in the odometry frame). The numbers come from
`drivable.scan` and `drivable.fusion`; this module only converts.
"""

from __future__ import annotations

import array

import numpy as np
from nav_msgs.msg import OccupancyGrid
from sensor_msgs.msg import LaserScan, PointCloud2, PointField
from std_msgs.msg import Header

from segmentation_ros.drivable import POINT_DTYPE, GridGeometry, Scan

__all__ = ["cloud_fields", "obstacles_msg", "occupancy_msg", "points_from_cloud", "scan_msg"]

_NUMPY_TO_POINTFIELD = {
    np.dtype("<f4"): PointField.FLOAT32,
    np.dtype("<f8"): PointField.FLOAT64,
    np.dtype("<u2"): PointField.UINT16,
    np.dtype("<u4"): PointField.UINT32,
    np.dtype("<i4"): PointField.INT32,
    np.dtype("u1"): PointField.UINT8,
}


def cloud_fields(dtype: np.dtype = POINT_DTYPE) -> list[PointField]:
    """The PointField list of a little-endian numpy structured dtype (one element each)."""
    return [
        PointField(
            name=name,
            offset=int(dtype.fields[name][1]),
            datatype=_NUMPY_TO_POINTFIELD[dtype.fields[name][0]],
            count=1,
        )
        for name in dtype.names
    ]


def scan_msg(scan: Scan, header: Header) -> LaserScan:
    """LaserScan in the grid frame (`header.frame_id`): ranges as `drivable.scan` defines them
    (+inf free to the limit of view, NaN unmeasured); a single camera frame, so the time and
    scan increments are 0."""
    msg = LaserScan(header=header)
    msg.angle_min = float(scan.angle_min)
    msg.angle_max = float(scan.angle_max)
    msg.angle_increment = float(scan.angle_increment)
    msg.time_increment = 0.0
    msg.scan_time = 0.0
    msg.range_min = float(scan.range_min)
    msg.range_max = float(scan.range_max)
    ranges = array.array("f")
    ranges.frombytes(np.ascontiguousarray(scan.ranges, dtype=np.float32).tobytes())
    msg.ranges = ranges
    return msg


def obstacles_msg(points: np.ndarray, header: Header) -> PointCloud2:
    """PointCloud2 (unordered: height 1) of `POINT_DTYPE` points in the grid frame: fields
    x, y, z FLOAT32 at 0, 4, 8; class_id UINT16 at 12; instance_id UINT16 at 14; point_step 16;
    little-endian; dense (no NaN)."""
    points = np.ascontiguousarray(points, dtype=POINT_DTYPE)
    msg = PointCloud2(header=header, height=1, width=int(points.shape[0]))
    msg.fields = cloud_fields(POINT_DTYPE)
    msg.is_bigendian = False
    msg.point_step = POINT_DTYPE.itemsize
    msg.row_step = msg.point_step * msg.width
    msg.is_dense = True
    msg.data = points.tobytes()
    return msg


_POINTFIELD_TO_NUMPY = {
    PointField.INT8: "i1",
    PointField.UINT8: "u1",
    PointField.INT16: "i2",
    PointField.UINT16: "u2",
    PointField.INT32: "i4",
    PointField.UINT32: "u4",
    PointField.FLOAT32: "f4",
    PointField.FLOAT64: "f8",
}


def points_from_cloud(msg: PointCloud2) -> np.ndarray:
    """Any PointCloud2 -> a numpy structured array [height * width] of its fields, read from the
    declared names, offsets, datatypes and point_step (what `sensor_msgs_py.point_cloud2` does)."""
    order = ">" if msg.is_bigendian else "<"
    dtype = np.dtype(
        {
            "names": [f.name for f in msg.fields],
            "formats": [
                (order + _POINTFIELD_TO_NUMPY[f.datatype], (f.count,))
                if f.count > 1
                else order + _POINTFIELD_TO_NUMPY[f.datatype]
                for f in msg.fields
            ],
            "offsets": [f.offset for f in msg.fields],
            "itemsize": msg.point_step,
        }
    )
    return np.frombuffer(bytes(msg.data), dtype=dtype, count=msg.width * msg.height)


def occupancy_msg(grid: np.ndarray, geometry: GridGeometry, header: Header) -> OccupancyGrid:
    """OccupancyGrid of an int8 [height, width] grid laid out by `geometry`, in
    `header.frame_id`, origin at the corner of cell (0, 0)."""
    msg = OccupancyGrid(header=header)
    msg.info.map_load_time = header.stamp
    msg.info.resolution = float(geometry.resolution)
    msg.info.width, msg.info.height = int(geometry.width), int(geometry.height)
    msg.info.origin.position.x = float(geometry.origin_x)
    msg.info.origin.position.y = float(geometry.origin_y)
    msg.info.origin.orientation.w = 1.0
    data = array.array("b")
    data.frombytes(np.ascontiguousarray(grid, dtype=np.int8).tobytes())
    msg.data = data
    return msg

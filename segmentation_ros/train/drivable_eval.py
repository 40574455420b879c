"""The node's ground outputs measured against the synthetic world's exact truth.

`segmentation-ros-eval drivable --data synthetic:DIR [--checkpoint F]` runs the node's pipeline
on each written scene and compares
- `drivable/scan` with the true free-space range per beam: computed here from the scene's exact
  annotation (the id map) and its own camera (`SceneCamera.ground_points`, the synthetic world's
  ray geometry, not `drivable.camera`), by the definition in `drivable.scan` written out as a
  plain loop over beams;
- each object's ground contact point (`SegmentedObject.ground_x/y`) with where the world placed
  the object (`SceneSegments.ground_xy`, the foot of its vertical axis);
- the fused grid (`drivable/grid_fused`) on a straight-road sequence driven through the world's
  camera with odometry, with the road's true area in the odometry frame.

The scenes' truth is regenerated from their seeds (the image id) and checked against the written
panoptic PNG, so a data set written with other generator arguments is refused.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from segmentation_ros.data.classes import SYNTHETIC_CLASSES
from segmentation_ros.data.synthetic_camera import SceneCamera
from segmentation_ros.data.synthetic_io import rgb_to_id_map
from segmentation_ros.data.synthetic_scene import Scene, generate_scene
from segmentation_ros.drivable import (
    CameraModel,
    GridGeometry,
    GroundProjector,
    MountPose,
    PlanarPose,
    RollingGridFusion,
)

__all__ = [
    "DrivableEvaluation",
    "evaluate_drivable",
    "fused_road_agreement",
    "scan_errors",
    "scene_camera_model",
    "straight_road_sequence",
    "true_scan",
]


def scene_camera_model(camera: SceneCamera) -> tuple[CameraModel, MountPose]:
    """The synthetic camera as the node sees it: CameraInfo intrinsics and the mounting."""
    model = CameraModel(K=camera.K, D=np.zeros(5), width=camera.width, height=camera.height)
    return model, MountPose(height=camera.camera_height, pitch=camera.pitch)


def true_scan(
    camera: SceneCamera,
    drivable: np.ndarray,
    known: np.ndarray,
    *,
    angle_min: float,
    angle_increment: float,
    count: int,
    range_max: float,
) -> np.ndarray:
    """The free-space range of each beam (float64 [count], +inf free, NaN unmeasured), from the
    scene's pixels (every one) on the ground by its own camera: beam i holds the labelled pixels
    whose ground bearing is in [b_i - inc/2, b_i + inc/2), b_i = angle_min + i * inc, and whose
    ground range is <= range_max; its range is the nearest not-drivable one's."""
    x, y, valid = camera.ground_points()
    with np.errstate(invalid="ignore"):
        r = np.hypot(x, y)
        use = valid & known & (r <= range_max)
    r, theta, d = r[use], np.arctan2(y[use], x[use]), drivable[use]
    out = np.full(count, np.nan)
    for i in range(count):
        low = angle_min + (i - 0.5) * angle_increment
        beam = (theta >= low) & (theta < low + angle_increment)
        obstacle = beam & ~d
        if obstacle.any():
            out[i] = r[obstacle].min()
        elif (beam & d).any():
            out[i] = np.inf
    return out


def scan_errors(estimate: np.ndarray, truth: np.ndarray, within: float) -> dict[str, np.ndarray]:
    """Per-beam errors where the true range is finite and <= `within` (m): abs (m) and relative
    to the true range (a missed obstacle, +inf or NaN, counts as an infinite error); and the
    beams where the truth is free (+inf) but the estimate puts an obstacle within `within`."""
    estimate = np.asarray(estimate, dtype=np.float64)
    near = np.isfinite(truth) & (truth <= within)
    err = np.abs(estimate[near] - truth[near])
    err[~np.isfinite(err)] = np.inf
    false = np.isinf(truth) & np.isfinite(estimate) & (estimate <= within)
    return {"abs": err, "rel": err / truth[near], "false_obstacles": false, "free": np.isinf(truth)}


@dataclass
class DrivableEvaluation:
    """Collected per-beam and per-object errors (see `summary`)."""

    scan_abs: dict
    scan_rel: dict
    false_obstacles: dict
    free_beams: int = 0
    object_errors: list | None = None
    object_distance_errors: list | None = None
    objects_total: int = 0
    num_images: int = 0
    fused: dict | None = None

    def summary(self) -> dict:
        def stats(values):
            v = np.asarray(values, dtype=np.float64)
            if v.size == 0:
                return {"n": 0}
            return {
                "n": int(v.size),
                "median": float(np.median(v)),
                "p90": float(np.quantile(v, 0.9)),
            }

        out = {"images": self.num_images}
        for within in self.scan_abs:
            out[f"scan_within_{within:g}m"] = {
                "abs_m": stats(self.scan_abs[within]),
                "rel": stats(self.scan_rel[within]),
                "false_obstacle_beams": int(self.false_obstacles[within]),
                "free_beams": self.free_beams,
            }
        out["objects"] = {
            "matched": len(self.object_errors or []),
            "total": self.objects_total,
            "position_error_m": stats(self.object_errors or []),
            "distance_error_m": stats(self.object_distance_errors or []),
        }
        if self.fused is not None:
            out["fused_road_sequence"] = self.fused
        return out


def _scene_from_files(root: Path, entry: dict) -> tuple[Scene, np.ndarray]:
    """(the regenerated scene, the written image [H, W, 3] RGB) of one cameras.json entry."""
    seed, width, height = int(entry["image_id"]), int(entry["width"]), int(entry["height"])
    scene = generate_scene(seed, width=width, height=height, effects=False)
    bgr = cv2.imread(str(root / "images" / entry["file_name"]), cv2.IMREAD_COLOR)
    png = cv2.imread(str(root / "panoptic" / f"{Path(entry['file_name']).stem}.png"))
    if bgr is None or png is None:
        raise OSError(f"cannot read image or panoptic PNG of {entry['file_name']} in {root}")
    if not np.array_equal(rgb_to_id_map(png[..., ::-1]), scene.id_map):
        raise ValueError(
            f"{entry['file_name']}: the written annotation differs from seed {seed}'s scene; "
            "the data set must be written by segmentation-ros-generate with default --min-area "
            "and --scenes mixed"
        )
    return scene, np.ascontiguousarray(bgr[..., ::-1])


def _match_objects(scene: Scene, pred_ids: np.ndarray, pred_classes: np.ndarray) -> list:
    """(truth segment index, predicted segment index) for each true thing whose best-overlapping
    prediction has its class and mask IoU > 0.5."""
    n_true, n_pred = len(scene.segments) + 1, len(pred_classes) + 1
    joint = np.bincount(
        scene.id_map.ravel().astype(np.int64) * n_pred + pred_ids.ravel(),
        minlength=n_true * n_pred,
    ).reshape(n_true, n_pred)
    area_t, area_p = joint.sum(1), joint.sum(0)
    pairs = []
    for i in np.flatnonzero(scene.segments.is_thing):
        row = joint[i + 1, 1:]
        if not row.any():
            continue
        j = int(row.argmax())
        iou = row[j] / (area_t[i + 1] + area_p[j + 1] - row[j])
        if iou > 0.5 and pred_classes[j] == scene.segments.category_ids[i]:
            pairs.append((int(i), j))
    return pairs


def evaluate_drivable(
    pipeline,
    root: str | Path,
    *,
    limit: int | None = None,
    within: tuple[float, ...] = (5.0, 10.0),
    settings=None,
) -> DrivableEvaluation:
    """Run `pipeline` (a `SegmentationPipeline`, or None: the scenes' true masks stand in for the
    model) on the written synthetic data set `root` and collect the errors. `settings`: the
    pipeline's `FrameSettings` (default: the node's), with each scene's camera mounting."""
    import dataclasses

    from segmentation_ros.pipeline import FrameSettings, OutputRequest
    from segmentation_ros.pipeline.dense import DenseOutputs
    from segmentation_ros.structures import ClassTable, Segments

    root = Path(root)
    entries = json.loads((root / "cameras.json").read_text())["cameras"][:limit]
    settings = settings or FrameSettings()
    request = OutputRequest(scan=True, objects=True)
    ev = DrivableEvaluation(
        {w: [] for w in within}, {w: [] for w in within}, dict.fromkeys(within, 0)
    )
    ev.object_errors, ev.object_distance_errors = [], []
    table = ClassTable.panoptic(SYNTHETIC_CLASSES.stuff_names, SYNTHETIC_CLASSES.thing_names)
    truth_outputs = DenseOutputs(table, "ground truth")
    for entry in entries:
        scene, image = _scene_from_files(root, entry)
        camera, mount = scene_camera_model(scene.camera)
        frame = dataclasses.replace(settings, mount=mount)
        if pipeline is None:
            s = scene.segments
            segments = Segments(
                ids=s.ids, class_ids=s.category_ids, is_thing=s.is_thing,
                scores=np.ones(len(s), np.float32), areas=s.areas,
            )  # fmt: skip
            result = truth_outputs(scene.id_map, segments, request, frame, camera)
            classes = SYNTHETIC_CLASSES.names
        else:
            result = pipeline.process(image, request, frame, camera=camera)
            classes = pipeline.classes.names
        scan = result.scan
        drivable_ids = [SYNTHETIC_CLASSES.id_of(n) for n in SYNTHETIC_CLASSES.drivable_names]
        sem = scene.semantic_map()
        truth = true_scan(
            scene.camera,
            np.isin(sem, drivable_ids),
            scene.id_map > 0,
            angle_min=scan.angle_min,
            angle_increment=scan.angle_increment,
            count=len(scan.ranges),
            range_max=settings.scan_range_max,
        )
        ev.free_beams += int(np.isinf(truth).sum())
        for w in within:
            errors = scan_errors(scan.ranges, truth, w)
            ev.scan_abs[w].extend(errors["abs"].tolist())
            ev.scan_rel[w].extend(errors["rel"].tolist())
            ev.false_obstacles[w] += int(errors["false_obstacles"].sum())
        # Objects: the model's classes by name onto the world's.
        pred_classes = np.array(
            [SYNTHETIC_CLASSES.names.index(classes[c]) if classes[c] in SYNTHETIC_CLASSES.names
             else -1 for c in result.segments.class_ids], dtype=np.int64,
        )  # fmt: skip
        ev.objects_total += int(scene.segments.is_thing.sum())
        for i, j in _match_objects(scene, result.id_map, pred_classes):
            true_xy, xy = scene.segments.ground_xy[i], result.ground_xy[j]
            if np.isfinite(xy).all():
                ev.object_errors.append(float(np.hypot(*(xy - true_xy))))
                ev.object_distance_errors.append(float(abs(np.hypot(*xy) - np.hypot(*true_xy))))
        ev.num_images += 1
    return ev


# -- a straight road driven with odometry -----------------------------------------------------


def straight_road_sequence(
    num_frames: int = 12,
    *,
    step: float = 1.0,
    road_half_width: float = 3.05,
    width: int = 320,
    height: int = 240,
    camera_height: float = 1.0,
    pitch: float = 0.15,
    yaw_rate: float = 0.0,
):
    """A robot driving along a straight road (|y| < road_half_width in odom) by `step` metres a
    frame, turning by `yaw_rate` rad a frame. Returns (camera `SceneCamera`, [(drivable [H, W]
    bool, known [H, W] bool, PlanarPose in odom)]): each frame's true masks from the world's
    camera (sky above the horizon is unlabelled)."""
    camera = SceneCamera.from_fov(width, height, 90.0, camera_height, pitch)
    x, y, valid = camera.ground_points()
    frames = []
    for k in range(num_frames):
        pose = PlanarPose(k * step, 0.3 * math.sin(0.5 * k), k * yaw_rate, "odom")
        c, s = math.cos(pose.yaw), math.sin(pose.yaw)
        with np.errstate(invalid="ignore"):
            y_odom = pose.y + s * x + c * y
            drivable = valid & (np.abs(y_odom) < road_half_width)
        frames.append((drivable, valid.copy(), pose))
    return camera, frames


def fused_road_agreement(
    num_frames: int = 12,
    *,
    resolution: float = 0.1,
    size: float = 40.0,
    pose_error: float = 0.0,
    road_half_width: float = 3.05,
    **sequence,
) -> dict:
    """Fuse the straight-road sequence (with `pose_error` rad added to every yaw the fusion is
    told) and compare with the true road in odom on the observed cells: IoU of free cells with
    the road, and the road area (m^2) seen as free by the fused grid and by the last frame alone.
    """
    camera, frames = straight_road_sequence(num_frames, road_half_width=road_half_width, **sequence)
    model, mount = scene_camera_model(camera)
    projector = GroundProjector(model, mount, GridGeometry(resolution, 10, 10), stride=1)
    fused = RollingGridFusion(resolution, size, num_frames)
    single = RollingGridFusion(resolution, size, 1)
    for drivable, known, pose in frames:
        told = PlanarPose(pose.x, pose.y, pose.yaw + pose_error, pose.frame_id)
        fused.add(projector, drivable, known, told)
        single.add(projector, drivable, known, told)

    def agreement(fusion: RollingGridFusion) -> tuple[float, float]:
        grid, g = fusion.grid(), fusion.geometry
        road = np.abs(g.cell_centers()[:, 1]).reshape(grid.shape) < road_half_width
        seen, free = grid != -1, grid == 0
        iou = (free & road).sum() / max(((free | road) & seen).sum(), 1)
        return float(iou), float((free & road).sum() * g.resolution**2)

    iou, area = agreement(fused)
    iou_single, area_single = agreement(single)
    return {
        "frames": num_frames,
        "iou": iou,
        "road_m2": area,
        "single_frame_iou": iou_single,
        "single_frame_road_m2": area_single,
    }


# -- command line (segmentation-ros-eval drivable) --------------------------------------------


def add_arguments(p) -> None:
    """The `drivable` subcommand's arguments."""
    p.add_argument("--data", required=True, help="a written synthetic data set: synthetic:DIR")
    p.add_argument("--checkpoint", default="", help="our checkpoint (empty: the default model)")
    p.add_argument(
        "--truth-masks", action="store_true", help="feed the true masks instead of a model"
    )
    p.add_argument("--num", type=int, default=None, help="evaluate the first N images")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="onnxruntime")
    p.add_argument("--fused-frames", type=int, default=12, help="straight-road sequence length")
    p.add_argument(
        "--grid-stride",
        type=int,
        default=None,
        help="pixel stride of the ground rays (default: the node's grid_stride)",
    )


def run(args) -> int:
    """Print the figures (and one JSON line); exit status 0."""
    kind, _, root = args.data.partition(":")
    if kind != "synthetic" or not root:
        raise ValueError(
            f"--data must be synthetic:DIR (a written synthetic set), got {args.data!r}"
        )
    pipeline = None
    if not args.truth_masks:
        from segmentation_ros.pipeline import SegmentationPipeline

        pipeline = SegmentationPipeline.from_checkpoint(args.checkpoint, backend=args.backend)
    from segmentation_ros.pipeline import FrameSettings

    settings = FrameSettings()
    if args.grid_stride is not None:
        settings = FrameSettings(grid_stride=args.grid_stride)
    ev = evaluate_drivable(pipeline, root, limit=args.num, settings=settings)
    ev.fused = fused_road_agreement(args.fused_frames)
    summary = ev.summary()
    source = "true masks" if pipeline is None else (args.checkpoint or "default model")
    print(f"{source} on {ev.num_images} scenes of {root}")
    for within in ev.scan_abs:
        s = summary[f"scan_within_{within:g}m"]
        a, r = s["abs_m"], s["rel"]
        if a["n"]:
            print(
                f"scan, true range <= {within:g} m: {a['n']} beams, abs error median "
                f"{a['median']:.3f} m p90 {a['p90']:.3f} m, relative median "
                f"{r['median'] * 100:.2f} % p90 {r['p90'] * 100:.2f} %; false obstacles on "
                f"{s['false_obstacle_beams']} of {s['free_beams']} free beams"
            )
    o = summary["objects"]
    if o["position_error_m"]["n"]:
        print(
            f"objects: {o['matched']} of {o['total']} matched; ground position error median "
            f"{o['position_error_m']['median']:.3f} m p90 {o['position_error_m']['p90']:.3f} m; "
            f"distance error median {o['distance_error_m']['median']:.3f} m"
        )
    f = summary["fused_road_sequence"]
    print(
        f"fused grid, straight road, {f['frames']} frames with odometry (true masks): IoU "
        f"{f['iou']:.3f}, road seen {f['road_m2']:.1f} m^2 vs {f['single_frame_road_m2']:.1f} "
        f"m^2 from one frame (IoU {f['single_frame_iou']:.3f})"
    )
    print(json.dumps(summary))
    return 0

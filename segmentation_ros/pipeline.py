"""One frame, end to end, without ROS: RGB image -> preprocess -> backend.infer -> postprocess
-> (panoptic fusion) -> dense maps, drivable mask and grid -> a typed `FrameResult`.

    pipeline = SegmentationPipeline.from_checkpoint("model.pt", backend="onnxruntime")
    result = pipeline.process(rgb, OutputRequest.all(), FrameSettings(), camera=camera_model)
    result.segments.scores, result.id_map, result.semantic, result.grid, result.timings

Conventions (those of the library, stated in `segmentation_ros.structures` and
`segmentation_ros.panoptic.result`):
- Images are [H, W, 3] uint8 RGB. Pixel (u, v) covers [u, u+1) x [v, v+1).
- Class ids index `ClassMeta.names`: for an instance-only YOLACT the thing classes; for a
  panoptic model the stuff classes (0..S-1) then the thing classes (S..S+T-1).
- Segments (things and stuff regions) never overlap: `id_map` holds each pixel's segment id
  1..N (0 = none). For an instance-only YOLACT, overlapping masks are resolved by score (the
  higher score keeps the pixel) and instances left with no pixel are dropped.
- `semantic` holds each pixel's class id, `VOID` where no segment covers it; `confidence` the
  score of the segment covering it (0 elsewhere); `drivable` the drivable surface (bool).
- `class_filter` keeps only the named classes in `segments`, `id_map` and the object geometry;
  `semantic`, `confidence`, `drivable` and `grid` always describe the whole scene (a filtered-out
  person is still an obstacle).
- The grid is a `drivable` occupancy grid (int8: 0 free, 100 occupied, -1 unknown) in
  `FrameSettings.grid` (see `segmentation_ros.drivable.projection`); it needs a `CameraModel`.

Only what `OutputRequest` asks for is computed (the node asks for the topics somebody
subscribes to). Nothing here imports rclpy.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segmentation_ros.drivable import (
    DEFAULT_DRIVABLE_NAMES,
    CameraModel,
    DrivabilityTable,
    GridGeometry,
    MountPose,
    ProjectorCache,
    camera_to_base_matrix,
    drivable_mask,
)

#: The embedded default model (trained by the project; absent until it is).
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "default.pt"
#: `semantic` value of pixels no segment covers (uint8 maps; 65535 for uint16 maps).
VOID = 255


# ---------------------------------------------------------------------------------------------
# Settings and requests


@dataclass(frozen=True)
class FrameSettings:
    """Per-frame settings (all may change between frames).

    score_threshold, nms_threshold, mask_threshold: see `models.config.PostprocessConfig`.
    max_detections: at most this many thing detections per frame.
    class_filter: class names kept in `segments` / `id_map`; empty keeps all.
    drivable_classes: names of the drivable surface classes (matching rules in
        `drivable.classes`); empty: `DEFAULT_DRIVABLE_NAMES`.
    mount: the camera's pose on the robot; grid: the occupancy grid layout (robot frame).
    grid_stride, grid_max_range (m, None: no limit), occupied_fraction: see `GroundProjector`.
    """

    score_threshold: float = 0.3
    nms_threshold: float = 0.5
    mask_threshold: float = 0.5
    max_detections: int = 50
    class_filter: tuple[str, ...] = ()
    drivable_classes: tuple[str, ...] = ()
    mount: MountPose = MountPose(height=0.5, pitch=0.2)
    grid: GridGeometry = GridGeometry(resolution=0.05, width=200, height=200, origin_y=-5.0)
    grid_stride: int = 2
    grid_max_range: float | None = None
    occupied_fraction: float = 0.5


@dataclass(frozen=True)
class OutputRequest:
    """Which parts of a `FrameResult` to compute (segments and id_map always are)."""

    objects: bool = False
    instances: bool = False
    semantic: bool = False
    confidence: bool = False
    drivable_mask: bool = False
    grid: bool = False
    overlay: bool = False
    markers: bool = False  # ground positions of the things (needs a camera)

    @classmethod
    def all(cls) -> OutputRequest:
        return cls(**{f.name: True for f in dataclasses.fields(cls)})

    @property
    def any(self) -> bool:
        return any(dataclasses.astuple(self))

    @property
    def needs_semantic(self) -> bool:
        return self.semantic or self.drivable_mask or self.grid

    @property
    def needs_geometry(self) -> bool:
        return self.objects or self.markers or self.overlay


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class ClassMeta:
    """A model's class table. names[i] is class id i; is_thing[i] tells things from stuff."""

    names: tuple[str, ...]
    is_thing: tuple[bool, ...]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def num_stuff(self) -> int:
        return sum(not t for t in self.is_thing)

    def ids_of(self, names: tuple[str, ...]) -> np.ndarray:
        """Class ids of `names` (ValueError naming the unknown ones)."""
        index = {n: i for i, n in enumerate(self.names)}
        unknown = [n for n in names if n not in index]
        if unknown:
            raise ValueError(f"unknown class names {unknown}; the model's classes: {self.names}")
        return np.array([index[n] for n in names], dtype=np.int64)


@dataclass
class Segments:
    """Struct of arrays, one entry per segment (thing instance or stuff region), N segments.

    ids:         [N] int32, the segment's value in `FrameResult.id_map` (1..N).
    class_ids:   [N] int64, index into the model's `ClassMeta`.
    is_thing:    [N] bool.
    scores:      [N] float32, detection score (things) or mean class probability (stuff).
    mask_scores: [N] float32, YOLACT++ mask-IoU score; equals `scores` without one.
    boxes:       [N, 4] float32 (x1, y1, x2, y2) image pixels: the detection box of a YOLACT
                 thing; otherwise (stuff, PCV things) the segment's pixel bounds once
                 `FrameResult.geometry` is computed (NaN before).
    """

    ids: np.ndarray
    class_ids: np.ndarray
    is_thing: np.ndarray
    scores: np.ndarray
    mask_scores: np.ndarray
    boxes: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __getitem__(self, item) -> Segments:
        return Segments(*(getattr(self, f.name)[item] for f in dataclasses.fields(self)))

    @staticmethod
    def empty() -> Segments:
        return Segments(
            ids=np.zeros(0, np.int32),
            class_ids=np.zeros(0, np.int64),
            is_thing=np.zeros(0, bool),
            scores=np.zeros(0, np.float32),
            mask_scores=np.zeros(0, np.float32),
            boxes=np.zeros((0, 4), np.float32),
        )


@dataclass
class SegmentGeometry:
    """Where each segment's pixels lie in `id_map`, N segments.

    rois: [N, 4] int64 (x, y, w, h), the tight pixel box; centroids: [N, 2] float32 (x, y), mean
    of the pixel centres (u + 0.5, v + 0.5); areas: [N] int64 pixel counts.
    """

    rois: np.ndarray
    centroids: np.ndarray
    areas: np.ndarray


@dataclass
class Timings:
    """Milliseconds spent per stage of one frame."""

    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    postprocess_ms: float = 0.0
    outputs_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.inference_ms + self.postprocess_ms + self.outputs_ms


@dataclass
class FrameResult:
    """One frame's segmentation (see the module docstring for the conventions).

    image_size: (H, W). segments: in decreasing score order, ids 1..N.
    id_map: [H, W] int32 segment ids (0 = none).
    geometry: per-segment rois / centroids / areas (computed for objects, markers, overlay).
    semantic: [H, W] uint8 class ids (uint16 for models with 255 classes or more), VOID / 65535
        where no segment is. confidence: [H, W] float32 in [0, 1]. drivable: [H, W] bool.
    grid: [grid.height, grid.width] int8 occupancy (0 free, 100 occupied, -1 unknown).
    ground_xy: [N, 2] float64 metres in the grid frame, where each thing touches the ground (the
        middle of its box's bottom edge); NaN for stuff and above the horizon. ground_width: [N]
        metres, the bottom edge's length on the ground.
    notes: why a requested part is missing (e.g. no drivable classes, no camera).
    """

    image_size: tuple[int, int]
    segments: Segments
    id_map: np.ndarray
    timings: Timings
    geometry: SegmentGeometry | None = None
    semantic: np.ndarray | None = None
    confidence: np.ndarray | None = None
    drivable: np.ndarray | None = None
    grid: np.ndarray | None = None
    ground_xy: np.ndarray | None = None
    ground_width: np.ndarray | None = None
    notes: tuple[str, ...] = ()

    def mask_crop(self, index: int) -> np.ndarray:
        """Segment `index` (0-based) inside its roi: [h, w] bool (needs `geometry`)."""
        assert self.geometry is not None, "geometry was not requested"
        x, y, w, h = (int(v) for v in self.geometry.rois[index])
        return self.id_map[y : y + h, x : x + w] == self.segments.ids[index]


# ---------------------------------------------------------------------------------------------
# Model loading


@dataclass
class LoadedModel:
    """A network ready for inference and what the pipeline needs to know about it.

    kind: "yolact" (instances only), "panoptic_yolact" (instances fused with semantic logits,
    UPSNet) or "pcv" (Pixel Consensus Voting: votes + semantic logits).
    name: the model's registry name. config: its config (YolactConfig, PanopticYolactConfig or
    PCVConfig). network_config: the YolactConfig describing the network input (size,
    normalisation) and, for YOLACT models, the priors and postprocess defaults.
    classes: the class table the results use. checkpoint: the file it came from.
    """

    model: nn.Module
    kind: str
    name: str
    config: Any
    network_config: Any
    classes: ClassMeta
    checkpoint: Path


def resolve_checkpoint(checkpoint: str | Path | None) -> Path:
    """The checkpoint path to load: `checkpoint`, or the embedded default when empty.

    Raises FileNotFoundError saying which file is missing and what to set.
    """
    if checkpoint:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            what = "is a directory" if path.is_dir() else "is not a regular file"
            what = what if path.exists() else "does not exist"
            raise FileNotFoundError(f"checkpoint {str(path)!r} {what}; expected a .pt / .pth file")
        return path
    if not DEFAULT_CHECKPOINT.is_file():
        raise FileNotFoundError(
            f"the embedded default model {str(DEFAULT_CHECKPOINT)!r} is not installed (not "
            "trained yet?); set the `checkpoint` parameter to a model file"
        )
    return DEFAULT_CHECKPOINT


def load_model(checkpoint: str | Path | None, model_name: str = "") -> LoadedModel:
    """Load a checkpoint: ours (carries its config: YOLACT, panoptic YOLACT or PCV) or official
    YOLACT weights (a plain state dict: `model_name` must name the registered architecture).

    checkpoint: a path, or empty / None for the embedded default model.
    model_name: when given, must match the checkpoint's model (ValueError otherwise).
    Raises FileNotFoundError, ValueError / CheckpointError with a message that says what to fix.
    """
    from segmentation_ros.models import checkpoint as ckpt

    path = resolve_checkpoint(checkpoint)
    embedded = not checkpoint
    data = ckpt._read(path)
    if isinstance(data, dict) and "format" in data:  # ours: it carries its config
        model, config = ckpt.load_checkpoint(path)
    else:
        if not model_name:
            raise ValueError(
                f"{str(path)!r} holds bare weights (official YOLACT?) without a config: set the "
                "`model` parameter to its architecture, e.g. yolact_resnet50"
            )
        from segmentation_ros.models.registry import build_model

        model = build_model(model_name)
        # A panoptic model takes official YOLACT weights into its YOLACT part.
        ckpt.load_official_checkpoint(getattr(model, "yolact", model), data)
        config = model.config
    name = config.name
    if model_name and model_name != name and embedded:
        raise ValueError(
            f"model {model_name!r} has no embedded weights (the embedded default model is "
            f"{name!r}): set the `checkpoint` parameter to its weights"
        )
    if model_name and model_name != name:
        raise ValueError(
            f"checkpoint {str(path)!r} holds model {name!r}, but the `model` parameter asks for "
            f"{model_name!r}; set model to {name!r} (or empty) or use another checkpoint"
        )
    return _describe(model.eval(), config, path)


def _describe(model: nn.Module, config: Any, path: Path) -> LoadedModel:
    from segmentation_ros.models.panoptic_yolact import PanopticYolactConfig
    from segmentation_ros.models.pcv import PCVConfig

    if isinstance(config, PanopticYolactConfig | PCVConfig):
        classes = ClassMeta(
            names=config.category_names,
            is_thing=(False,) * config.num_stuff + (True,) * config.num_things,
        )
        if isinstance(config, PCVConfig):
            return LoadedModel(model, "pcv", config.name, config, config.network, classes, path)
        return LoadedModel(
            model, "panoptic_yolact", config.name, config, config.yolact, classes, path
        )
    classes = ClassMeta(names=config.class_names, is_thing=(True,) * len(config.class_names))
    return LoadedModel(model, "yolact", config.name, config, config, classes, path)


def calibration_batches(spec: str, network_config: Any, input_size, *, count: int = 64):
    """Up to `count` preprocessed images ([1, 3, H, W] float32 each) of the data set `spec`
    (`data.datasets.open_dataset` forms), for TensorRT int8 calibration."""
    from segmentation_ros.data.datasets import open_dataset
    from segmentation_ros.models.preprocess import preprocess

    dataset = open_dataset(spec)
    if len(dataset) == 0:
        raise ValueError(f"calibration data {spec!r} holds no images")
    step = max(1, len(dataset) // count)
    return [
        preprocess(dataset[i].image, network_config, input_size=input_size)
        for i in range(0, len(dataset), step)[:count]
    ]


# ---------------------------------------------------------------------------------------------
# The pipeline


class SegmentationPipeline:
    """Runs one model on frames. Not thread-safe: use one instance per worker thread.

    loaded: the model (see `load_model`). backend: one of `runtime.backends.BACKENDS`, at
    `precision`. device: torch device of the model and the postprocess. input_size: (H, W)
    network input; None: the model's own. engine_path: a prebuilt ONNX file / TensorRT engine;
    default: the artifact cache in `engine_cache_dir` (~/.cache/segmentation_ros/engines), where a
    missing or stale one is built unless `allow_build` is False. calibration_data: a data set spec
    for int8 calibration. warm_up: run the backend twice on zeros before the first frame
    (compiles torch_compile, lets GPUs allocate).
    """

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        backend: str = "torch",
        precision: str = "fp32",
        device: str = "cpu",
        input_size: tuple[int, int] | None = None,
        engine_path: str | Path | None = None,
        engine_cache_dir: str | Path | None = None,
        allow_build: bool = True,
        calibration_data: str = "",
        warm_up: bool = False,
    ) -> None:
        from segmentation_ros.models.config import with_input_size
        from segmentation_ros.models.priors import make_priors
        from segmentation_ros.runtime import backends
        from segmentation_ros.runtime.cache import ArtifactCache

        self.loaded = loaded
        self.device = torch.device(device)
        config = loaded.network_config
        self.input_size = tuple(input_size) if input_size else tuple(config.input_size)
        if self.input_size != tuple(config.input_size):
            config = with_input_size(config, self.input_size)
        self.network_config = config
        self.backend_name = backend
        self.precision = precision
        calibration = None
        # int8 elsewhere, or without calibration data, is refused by build_backend / build_engine.
        if precision == "int8" and backend == "tensorrt" and calibration_data:
            calibration = calibration_batches(calibration_data, config, self.input_size)
        # First: it says what is missing (TensorRT, a CUDA device, a precision) before any
        # tensor goes to the device.
        self.backend = backends.build_backend(
            backend,
            loaded.model,
            precision=precision,
            device=str(self.device),
            input_size=self.input_size,
            artifact_path=engine_path or None,
            cache=ArtifactCache(engine_cache_dir or None),
            allow_build=allow_build,
            calibration=calibration,
        )
        #: How the ONNX file / engine was obtained ("loaded" / "built" and why), or None.
        self.artifact = self.backend.artifact
        self.priors = self._mask_iou_head = None
        if loaded.kind != "pcv":
            self.priors = make_priors(config, self.input_size, device=self.device)
            detector = loaded.model.yolact if loaded.kind == "panoptic_yolact" else loaded.model
            # YOLACT++ re-scoring runs in torch after any backend (not in exported graphs).
            self._mask_iou_head = detector.to(self.device).mask_iou_head
        if warm_up:
            backends.warm_up(self.backend, self.input_size, device=str(self.device))
        self._projectors = ProjectorCache(stride=2)
        self._drivability: dict[tuple[str, ...], DrivabilityTable | str] = {}

    @classmethod
    def from_checkpoint(
        cls, checkpoint: str | Path | None, *, model_name: str = "", **options: Any
    ) -> SegmentationPipeline:
        """`load_model` + the pipeline (`options`: the constructor's keywords); errors as
        `load_model` and `runtime.backends.build_backend`."""
        return cls(load_model(checkpoint, model_name), **options)

    @property
    def classes(self) -> ClassMeta:
        return self.loaded.classes

    @property
    def model_name(self) -> str:
        return self.loaded.name

    def drivability(self, drivable_classes: tuple[str, ...] = ()) -> DrivabilityTable | str:
        """The drivability of the model's classes, or the reason there is none (a model without
        surface classes, or names that match none of them)."""
        key = tuple(drivable_classes)
        if key not in self._drivability:
            classes = self.classes
            try:
                self._drivability[key] = DrivabilityTable.from_names(
                    classes.names, classes.is_thing, key or DEFAULT_DRIVABLE_NAMES
                )
            except ValueError as error:
                why = "it has no stuff (surface) classes" if not classes.num_stuff else str(error)
                self._drivability[key] = f"no drivable mask for model {self.model_name}: {why}"
        return self._drivability[key]

    # -- one frame ------------------------------------------------------------------------------

    def process(
        self,
        image: np.ndarray,
        request: OutputRequest = OutputRequest(),  # noqa: B008 - frozen, immutable
        settings: FrameSettings = FrameSettings(),  # noqa: B008
        *,
        camera: CameraModel | None = None,
    ) -> FrameResult:
        """Segment one image.

        image: [H, W, 3] uint8 RGB. camera: intrinsics of the camera that took it (any size;
        rescaled to the image), needed for `grid` and `markers`.
        """
        from segmentation_ros.models.preprocess import preprocess

        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
            raise ValueError(f"image must be an [H, W, 3] uint8 RGB array, got {_shape(image)}")
        height, width = image.shape[:2]
        t0 = time.perf_counter()
        x = preprocess(image, self.network_config, input_size=self.input_size, device=self.device)
        t1 = time.perf_counter()
        raw = self.backend.infer(x)
        t2 = time.perf_counter()
        id_map, segments = self._segments(raw, (height, width), settings)
        t3 = time.perf_counter()
        result = self._outputs(id_map, segments, request, settings, camera)
        t4 = time.perf_counter()
        result.timings = Timings(
            preprocess_ms=(t1 - t0) * 1e3,
            inference_ms=(t2 - t1) * 1e3,
            postprocess_ms=(t3 - t2) * 1e3,
            outputs_ms=(t4 - t3) * 1e3,
        )
        return result

    def _segments(
        self, raw: Any, image_size: tuple[int, int], settings: FrameSettings
    ) -> tuple[np.ndarray, Segments]:
        """Raw outputs -> (id_map [H, W] int32, segments in decreasing score order)."""
        if self.loaded.kind == "pcv":
            return _pcv(raw, self.loaded.config, image_size, settings)
        instances = _detect(
            raw, self.priors, self.network_config, image_size, settings, self._mask_iou_head
        )
        if self.loaded.kind == "panoptic_yolact":
            return _fuse(instances, raw.semantic[0], self.loaded.config, image_size)
        return _paint_instances(instances, image_size, settings.mask_threshold)

    def _outputs(
        self,
        id_map: np.ndarray,
        segments: Segments,
        request: OutputRequest,
        settings: FrameSettings,
        camera: CameraModel | None,
    ) -> FrameResult:
        height, width = id_map.shape
        notes: list[str] = []
        result = FrameResult((height, width), segments, id_map, Timings())
        num_classes = len(self.classes)
        if request.needs_semantic or request.confidence:
            class_lut = np.concatenate([[_void(num_classes)], segments.class_ids])
            dtype = np.uint8 if num_classes < 255 else np.uint16
            result.semantic = class_lut.astype(dtype)[id_map]
        if request.confidence:
            score_lut = np.concatenate([[0.0], segments.scores]).astype(np.float32)
            result.confidence = score_lut[id_map]
        if request.drivable_mask or request.grid:
            self._drivable(result, settings, notes)
        if request.grid:
            self._grid(result, settings, camera, notes)
        if settings.class_filter:
            keep = np.isin(segments.class_ids, self.classes.ids_of(settings.class_filter))
            result.id_map, result.segments = _renumber(id_map, segments, keep)
        if request.needs_geometry:
            result.geometry = geometry = segment_geometry(result.id_map, len(result.segments))
            unknown = np.isnan(result.segments.boxes).any(axis=1)  # stuff, PCV things
            rois = geometry.rois[unknown].astype(np.float32)
            result.segments.boxes[unknown] = np.concatenate(
                [rois[:, :2], rois[:, :2] + rois[:, 2:]], axis=1
            )
        if request.markers:
            self._ground(result, settings, camera, notes)
        result.notes = tuple(notes)
        return result

    def _drivable(self, result: FrameResult, settings: FrameSettings, notes: list[str]) -> None:
        table = self.drivability(settings.drivable_classes)
        if isinstance(table, str):
            notes.append(table)
            return
        thing_lut = np.concatenate([[False], result.segments.is_thing])
        result.drivable = drivable_mask(
            result.semantic, table, thing_lut[result.id_map], void_label=_void(len(self.classes))
        )

    def _grid(
        self,
        result: FrameResult,
        settings: FrameSettings,
        camera: CameraModel | None,
        notes: list[str],
    ) -> None:
        if result.drivable is None:
            return
        if camera is None:
            notes.append("no drivable grid: no camera_info received yet")
            return
        projector = self._projector(camera, result.image_size, settings)
        known = result.semantic != _void(len(self.classes))
        result.grid = projector.project(
            result.drivable, known, occupied_fraction=settings.occupied_fraction
        )

    def _projector(self, camera: CameraModel, image_size: tuple[int, int], settings):
        height, width = image_size
        if (camera.width, camera.height) != (width, height):
            camera = camera.resized(width, height)
        cache = self._projectors
        if (cache.stride, cache.max_range) != (settings.grid_stride, settings.grid_max_range):
            self._projectors = cache = ProjectorCache(
                stride=settings.grid_stride, max_range=settings.grid_max_range
            )
        return cache.get(camera, settings.mount, settings.grid)

    def _ground(
        self,
        result: FrameResult,
        settings: FrameSettings,
        camera: CameraModel | None,
        notes: list[str],
    ) -> None:
        if camera is None:
            notes.append("no object markers: no camera_info received yet")
            return
        height, width = result.image_size
        if (camera.width, camera.height) != (width, height):
            camera = camera.resized(width, height)
        assert result.geometry is not None
        x, y, w, h = result.geometry.rois.T.astype(np.float64)
        # The roi's bottom edge in image coordinates (pixel (u, v) is centred at (u, v)).
        bottom, left_edge, right_edge = y + h - 0.5, x - 0.5, x + w - 0.5
        mount = settings.mount
        left = pixels_to_ground(camera, mount, np.stack([left_edge, bottom], axis=1))
        right = pixels_to_ground(camera, mount, np.stack([right_edge, bottom], axis=1))
        middle = pixels_to_ground(
            camera, mount, np.stack([(left_edge + right_edge) / 2, bottom], 1)
        )
        things = result.segments.is_thing[:, None]
        result.ground_xy = np.where(things, middle, np.nan)
        result.ground_width = np.linalg.norm(right - left, axis=1)


# ---------------------------------------------------------------------------------------------
# Steps (pure functions)


def _shape(image: Any) -> str:
    return f"{type(image).__name__} of shape {getattr(image, 'shape', '?')}"


def _void(num_classes: int) -> int:
    return VOID if num_classes < 255 else 65535


def _detect(raw: Any, priors: torch.Tensor, config: Any, image_size, settings, mask_iou_head):
    """Raw YOLACT outputs of one image -> `Instances` (postprocess with the frame's settings)."""
    from segmentation_ros.postprocess import YolactPostprocessParams, postprocess_yolact

    params = YolactPostprocessParams.from_config(
        config.postprocess,
        score_threshold=min(settings.score_threshold, 0.9999),
        nms_threshold=max(settings.nms_threshold, 1e-3),
        max_detections=settings.max_detections,
        mask_threshold=settings.mask_threshold,
    )
    return postprocess_yolact(
        raw, priors, image_size=image_size, params=params, mask_iou_head=mask_iou_head
    )[0]


def _fuse(instances, semantic_logits: torch.Tensor, config, image_size):
    """Instances + semantic logits -> (id_map, segments) by UPSNet's panoptic fusion."""
    from segmentation_ros.panoptic.fusion import fuse_instances

    fusion = config.fusion
    panoptic = fuse_instances(
        instances,
        semantic_logits,
        num_stuff=config.num_stuff,
        image_size=image_size,
        prob_eps=fusion.prob_eps,
        unknown=fusion.unknown,
        min_thing_area=fusion.min_thing_area,
        min_stuff_area=fusion.min_stuff_area,
        upsample=fusion.upsample,
    )
    id_map, segments = _from_panoptic(panoptic)
    # Thing segments keep their detection's box (and mask score when the model has one).
    things = np.flatnonzero(segments.is_thing)
    detection = _match_in_order(
        segments.class_ids[things] - config.num_stuff,
        segments.scores[things],
        instances.classes.cpu().numpy(),
        instances.scores.cpu().numpy().astype(np.float32),
    )
    segments.boxes[things] = instances.boxes.cpu().numpy().astype(np.float32)[detection]
    segments.mask_scores[things] = _mask_scores(instances)[detection]
    return _renumber(id_map, segments, np.ones(len(segments), dtype=bool))


def _pcv(raw: Any, config: Any, image_size, settings: FrameSettings):
    """PCV votes + semantic logits -> (id_map, segments). Thing segments below the score
    threshold, or beyond the `max_detections` best, are dropped (their pixels become void)."""
    from segmentation_ros.panoptic.pcv_inference import pcv_panoptic

    panoptic = pcv_panoptic(
        raw.votes[0],
        raw.semantic[0],
        num_stuff=config.num_stuff,
        image_size=image_size,
        vote_config=config.vote,
    )
    id_map, segments = _from_panoptic(panoptic)
    things = segments.is_thing
    keep = ~things | (segments.scores >= settings.score_threshold)
    ranked = np.flatnonzero(keep & things)
    ranked = ranked[np.argsort(-segments.scores[ranked], kind="stable")]
    keep[ranked[settings.max_detections :]] = False
    return _renumber(id_map, segments, keep)


def _from_panoptic(panoptic) -> tuple[np.ndarray, Segments]:
    """A `PanopticResult` as numpy: (id_map [H, W] int32, segments with NaN boxes)."""
    seg = panoptic.segments
    scores = seg.scores.cpu().numpy().astype(np.float32)
    segments = Segments(
        ids=seg.ids.cpu().numpy().astype(np.int32),
        class_ids=seg.category_ids.cpu().numpy().astype(np.int64),
        is_thing=seg.is_thing.cpu().numpy().astype(bool),
        scores=scores,
        mask_scores=scores.copy(),
        boxes=np.full((scores.shape[0], 4), np.nan, dtype=np.float32),
    )
    return panoptic.id_map.cpu().numpy().astype(np.int32, copy=False), segments


def _match_in_order(
    seg_classes: np.ndarray, seg_scores: np.ndarray, classes: np.ndarray, scores: np.ndarray
) -> np.ndarray:
    """Index of the detection each thing segment came from. The fusion keeps the thing
    segments in detection order (dropping small ones) and copies class and score: a greedy
    in-order match recovers the detection."""
    out = np.zeros(seg_classes.shape[0], dtype=np.int64)
    j = 0
    for i, (c, s) in enumerate(zip(seg_classes, seg_scores)):
        while j < classes.shape[0] and not (classes[j] == c and scores[j] == s):
            j += 1
        assert j < classes.shape[0], "a thing segment matches no detection"
        out[i] = j
        j += 1
    return out


def _mask_scores(instances) -> np.ndarray:
    return instances.mask_scores.cpu().numpy().astype(np.float32)


def _paint_instances(instances, image_size, mask_threshold: float):
    """Instances (sorted by descending score) -> non-overlapping id map (the higher score owns
    overlapping pixels, `Instances.id_image`) and their segments."""
    n = len(instances)
    id_map = instances.id_image(mask_threshold).cpu().numpy().astype(np.int32, copy=False)
    segments = Segments(
        ids=np.arange(1, n + 1, dtype=np.int32),
        class_ids=instances.classes.cpu().numpy().astype(np.int64),
        is_thing=np.ones(n, dtype=bool),
        scores=instances.scores.cpu().numpy().astype(np.float32),
        mask_scores=_mask_scores(instances),
        boxes=instances.boxes.cpu().numpy().astype(np.float32).reshape(-1, 4),
    )
    return _renumber(id_map, segments, np.ones(n, dtype=bool))


def _renumber(id_map: np.ndarray, segments: Segments, keep: np.ndarray):
    """Keep the segments where `keep` and that own pixels, order them by decreasing score and
    number them 1..N; pixels of dropped segments become 0."""
    areas = np.bincount(id_map.ravel(), minlength=int(segments.ids.max(initial=0)) + 1)
    keep = keep & (areas[segments.ids] > 0)
    kept = np.flatnonzero(keep)
    kept = kept[np.argsort(-segments.scores[kept], kind="stable")]
    lut = np.zeros(areas.shape[0], dtype=np.int32)
    lut[segments.ids[kept]] = np.arange(1, kept.size + 1, dtype=np.int32)
    out = segments[kept]
    out.ids = np.arange(1, kept.size + 1, dtype=np.int32)
    return lut[id_map], out


def segment_geometry(id_map: np.ndarray, num_segments: int) -> SegmentGeometry:
    """Tight rois, centroids and areas of segments 1..num_segments of an id map.

    Two integer bincounts over the pixels give per-segment pixel counts per column and per row;
    everything follows from those [N, W] and [N, H] tables. Segments without pixels get a zero
    roi and a NaN centroid; ids above num_segments are ignored.
    """
    height, width = id_map.shape
    n = num_segments + 1
    ids = id_map.astype(np.intp, copy=False)
    per_col = np.bincount((ids * width + np.arange(width)).ravel(), minlength=n * width)
    per_row = np.bincount((ids * height + np.arange(height)[:, None]).ravel(), minlength=n * height)
    per_col = per_col[: n * width].reshape(n, width)[1:]
    per_row = per_row[: n * height].reshape(n, height)[1:]
    areas = per_col.sum(axis=1)
    cols, rows = per_col > 0, per_row > 0
    x0, y0 = cols.argmax(axis=1), rows.argmax(axis=1)
    x1 = width - cols[:, ::-1].argmax(axis=1)
    y1 = height - rows[:, ::-1].argmax(axis=1)
    present = areas > 0
    rois = np.where(present[:, None], np.stack([x0, y0, x1 - x0, y1 - y0], axis=1), 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = per_col @ (np.arange(width) + 0.5) / areas
        cy = per_row @ (np.arange(height) + 0.5) / areas
    return SegmentGeometry(
        rois=rois.astype(np.int64),
        centroids=np.stack([cx, cy], axis=1).astype(np.float32),
        areas=areas.astype(np.int64),
    )


def pixels_to_ground(
    camera: CameraModel, mount: MountPose | np.ndarray, uv: np.ndarray
) -> np.ndarray:
    """Image points [N, 2] (image coordinates: the centre of pixel (u, v) is at (u, v)) -> where
    their rays meet the ground z = 0 of the robot frame: [N, 2] float64 (x, y) metres, NaN for
    rays at or above the horizon or outside the distortion model's domain."""
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    xy, ok = camera.undistort(uv)
    transform = camera_to_base_matrix(mount)
    rotation, t = transform[:3, :3], transform[:3, 3]
    rays = xy[:, :1] * rotation[:, 0] + xy[:, 1:] * rotation[:, 1] + rotation[:, 2]
    valid = ok & (rays[:, 2] < -1e-9)
    with np.errstate(divide="ignore", invalid="ignore"):
        ground = t[:2] + (-t[2] / rays[:, 2])[:, None] * rays[:, :2]
    return np.where(valid[:, None], ground, np.nan)


__all__ = [
    "DEFAULT_CHECKPOINT",
    "VOID",
    "ClassMeta",
    "FrameResult",
    "FrameSettings",
    "LoadedModel",
    "OutputRequest",
    "SegmentGeometry",
    "SegmentationPipeline",
    "Segments",
    "Timings",
    "calibration_batches",
    "load_model",
    "pixels_to_ground",
    "resolve_checkpoint",
    "segment_geometry",
]

"""`SegmentationPipeline`: one model on frames, the data flow of the package in one method."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segmentation_ros.drivable import CameraModel, DrivabilityTable
from segmentation_ros.drivable.fusion import PlanarPose
from segmentation_ros.runtime.names import DEFAULT_BACKEND, DEFAULT_PRECISION
from segmentation_ros.structures import ClassTable, Segments

from .dense import DenseOutputs
from .loading import LoadedModel, calibration_batches, load_model
from .results import FrameResult, Timings, renumber
from .settings import FrameSettings, OutputRequest

__all__ = ["Inferred", "SegmentationPipeline"]


class SegmentationPipeline:
    """Runs one model on frames. Not thread-safe, except that `infer` and `finish` (the two
    halves of `process`) may run on two threads, one each, as the node's two stages do.

    loaded: the model (see `load_model`). backend: one of `runtime.names.BACKENDS`, at
    `precision`. device: torch device of the model and the postprocess. input_size: (H, W)
    network input; None: the model's own. engine_path: a prebuilt ONNX file / TensorRT engine;
    default: the artifact cache in `engine_cache_dir` (~/.cache/segmentation_ros/engines), where a
    missing or stale one is built unless `allow_build` is False. calibration_data: a data set spec
    for int8 calibration. threads: the CPU threads of ONNX Runtime / OpenVINO (0: theirs to
    choose). warm_up: run the backend twice on zeros before the first frame
    (compiles torch_compile, lets GPUs allocate).
    """

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        backend: str = DEFAULT_BACKEND,
        precision: str = DEFAULT_PRECISION,
        device: str = "cpu",
        input_size: tuple[int, int] | None = None,
        engine_path: str | Path | None = None,
        engine_cache_dir: str | Path | None = None,
        allow_build: bool = True,
        calibration_data: str = "",
        threads: int = 0,
        warm_up: bool = False,
    ) -> None:
        from segmentation_ros.runtime import backends
        from segmentation_ros.runtime.cache import ArtifactCache

        self.loaded = loaded
        family = loaded.family
        self.device = torch.device(device)
        self.input_size = tuple(input_size or loaded.network_config.input_size)
        # The input's description (size, normalisation) at the size the network runs.
        self.network_config = family.network_config(
            family.with_input_size(loaded.config, self.input_size)
        )
        calibration = None
        # int8 without calibration data is refused by build_backend (unless its artifact exists).
        if precision == "int8" and calibration_data:
            calibration = calibration_batches(
                calibration_data, self.network_config, self.input_size
            )
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
            intra_op_threads=threads,
        )
        #: The backend that runs ("auto" resolved), and how its ONNX file / engine was obtained
        #: ("loaded" / "built" and why, None for torch).
        self.backend_name = self.backend.name
        self.precision = self.backend.precision  # "auto" resolved
        self.artifact = self.backend.artifact
        self.postprocess = family.postprocessor(
            loaded.model, loaded.config, input_size=self.input_size, device=self.device
        )
        self.outputs = DenseOutputs(loaded.classes, loaded.name)
        if warm_up:
            backends.warm_up(self.backend, self.input_size, device=str(self.device))

    @classmethod
    def from_checkpoint(
        cls, checkpoint: str | Path | None, *, model_name: str = "", **options: Any
    ) -> SegmentationPipeline:
        """`load_model` + the pipeline (`options`: the constructor's keywords); errors as
        `load_model` and `runtime.backends.build_backend`."""
        return cls(load_model(checkpoint, model_name), **options)

    @property
    def classes(self) -> ClassTable:
        return self.outputs.classes

    @property
    def model_name(self) -> str:
        return self.loaded.name

    @property
    def keypoint_names(self) -> tuple[str, ...]:
        """Names of the keypoints in the results' `segments.keypoints` (() without)."""
        return tuple(self.loaded.family.keypoint_names(self.loaded.config))

    def drivability(self, drivable_classes: tuple[str, ...] = ()) -> DrivabilityTable | str:
        """The drivability of the model's classes, or the reason there is none (a model without
        surface classes, or names that match none of them)."""
        return self.outputs.drivability(drivable_classes)

    # -- one frame ------------------------------------------------------------------------------

    def process(
        self,
        image: np.ndarray,
        request: OutputRequest = OutputRequest(),  # noqa: B008 - frozen, immutable
        settings: FrameSettings = FrameSettings(),  # noqa: B008
        *,
        camera: CameraModel | None = None,
        pose: PlanarPose | None = None,
    ) -> FrameResult:
        """Segment one image.

        image: [H, W, 3] uint8 RGB. camera: intrinsics of the camera that took it (any size;
        rescaled to the image), needed for `grid`, `markers`, `scan`, `obstacles`, `grid_fused`.
        pose: the robot's planar pose in the odometry frame at the image's time (`grid_fused`).
        """
        return self.finish(self.infer(image), request, settings, camera=camera, pose=pose)

    def infer(self, image: np.ndarray) -> Inferred:
        """The first half of `process`: preprocess and the network (the backend)."""
        image_size = _image_size(image)
        t0 = time.perf_counter()
        x = self.preprocess(image)
        self._synchronize()
        t1 = time.perf_counter()
        raw = self.backend.infer(x)
        self._synchronize()  # else a GPU's inference time would show in the postprocess
        t2 = time.perf_counter()
        return Inferred(
            raw, image_size, preprocess_ms=(t1 - t0) * 1e3, inference_ms=(t2 - t1) * 1e3
        )

    def finish(
        self,
        inferred: Inferred,
        request: OutputRequest = OutputRequest(),  # noqa: B008 - frozen, immutable
        settings: FrameSettings = FrameSettings(),  # noqa: B008
        *,
        camera: CameraModel | None = None,
        pose: PlanarPose | None = None,
    ) -> FrameResult:
        """The second half of `process`: the postprocess and the requested outputs."""
        t2 = time.perf_counter()
        id_map, segments = self.segments(inferred.raw, inferred.image_size, settings)
        t3 = time.perf_counter()
        result = self.outputs(id_map, segments, request, settings, camera, pose)
        t4 = time.perf_counter()
        result.timings = Timings(
            preprocess_ms=inferred.preprocess_ms,
            inference_ms=inferred.inference_ms,
            postprocess_ms=(t3 - t2) * 1e3,
            outputs_ms=(t4 - t3) * 1e3,
        )
        return result

    def _synchronize(self) -> None:
        """Wait for queued GPU work, so that each stage's time is its own (no-op on the CPU)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """[H, W, 3] uint8 RGB -> the network input [1, 3, h, w] on the device."""
        from segmentation_ros.models.preprocess import preprocess

        return preprocess(
            image, self.network_config, input_size=self.input_size, device=self.device
        )

    def segments(
        self, raw: Any, image_size: tuple[int, int], settings: FrameSettings
    ) -> tuple[np.ndarray, Segments]:
        """Raw outputs -> (id_map [H, W] int32, segments numbered 1..N by decreasing score), by
        the family's postprocess."""
        result = self.postprocess(raw, image_size, settings).numpy()
        keep = np.ones(len(result.segments), dtype=bool)
        return renumber(result.id_map, result.segments, keep)


@dataclass(frozen=True)
class Inferred:
    """The network's raw outputs for one image of `image_size` (width, height), and the
    milliseconds its two stages took."""

    raw: Any
    image_size: tuple[int, int]
    preprocess_ms: float
    inference_ms: float


def _image_size(image: Any) -> tuple[int, int]:
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
        shape = f"{type(image).__name__} of shape {getattr(image, 'shape', '?')}"
        raise ValueError(f"image must be an [H, W, 3] uint8 RGB array, got {shape}")
    return int(image.shape[0]), int(image.shape[1])

"""The node's model: the pipeline its configure-time parameters build, and the run-time
parameter values checked against that model's classes (plain functions, no node state)."""

from __future__ import annotations

from collections.abc import Callable

from segmentation_ros.pipeline import SegmentationPipeline
from segmentation_ros.ros.params import NodeSettings


def build_pipeline(settings: NodeSettings, log: Callable[[str], None]) -> SegmentationPipeline:
    """Load the model, build the backend (`backend` x `precision`, from `engine_path`, the
    engine cache, or built unless `build_engine` is false) and warm it up; `log` gets a line
    about the ONNX / TensorRT artifact used. Raises with a message that says what to fix."""
    import torch

    # Set even when it is torch's own default (one per core): left unset, the postprocess in
    # the publishing thread slowed the network in the other thread (bare node 25.8 Hz vs
    # 30.0 Hz with 2 set, 30 Hz camera, benchmarks/bench_node.py).
    torch.set_num_threads(settings.num_threads or torch.get_num_threads())
    pipeline = SegmentationPipeline.from_checkpoint(
        settings.checkpoint or None,
        model_name=settings.model,
        backend=settings.backend,
        precision=settings.precision,
        device=settings.device,
        input_size=settings.input_size,
        engine_path=settings.engine_path or None,
        engine_cache_dir=settings.engine_cache_dir or None,
        allow_build=settings.build_engine,
        calibration_data=settings.calibration_data,
        threads=settings.num_threads,
        warm_up=True,  # before activate: the first camera frame must not be the slow one
    )
    if pipeline.artifact is not None:
        artifact = pipeline.artifact
        why = f" ({artifact.reason})" if artifact.reason else ""
        log(f"{settings.backend} artifact {artifact.status}{why}: {artifact.path}")
    if settings.frame.class_filter:
        pipeline.classes.ids_of(settings.frame.class_filter)
    return pipeline


def check_against_model(pipeline: SegmentationPipeline, name: str, value) -> str | None:
    """None when parameter `name` may take `value` with this model, else the reason (unknown
    class names in `class_filter`, `drivable_classes` that match no stuff class)."""
    if name == "class_filter":
        try:
            pipeline.classes.ids_of(tuple(value))
        except ValueError as error:
            return str(error)
    if name == "drivable_classes" and pipeline.classes.num_stuff:
        table = pipeline.drivability(tuple(value))
        if isinstance(table, str):
            return table
    return None

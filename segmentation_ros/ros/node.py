"""The segmentation node: a lifecycle node around `segmentation_ros.pipeline`.

    ros2 run segmentation_ros segmentation_node --ros-args -r image:=/camera/image_raw \
        -r camera_info:=/camera/camera_info -p checkpoint:=/path/model.pt

Lifecycle: parameters are declared at start-up (`params.PARAMETERS`) and read on configure,
which (`node_pipeline`) loads the model, builds the backend (`backend` x `precision`; an ONNX
file or TensorRT engine is loaded from `engine_path` or the engine cache, or built unless
`build_engine` is false) and warms it up, so the first camera frame is not the slow one. A
missing or unfitting checkpoint, a stale engine with building disabled, or a backend that cannot
run here fails the transition with the reason in the log and on /diagnostics; the node stays
up. Publishers exist from configure, subscriptions while active; cleanup frees the model.
`autostart` (default true) configures and activates at start-up.

Data flow per frame: the image callback only admits the message into a one-frame slot
(`inputs.LatestSlot`: a newer frame replaces an unprocessed one); the inference thread takes
the newest frame, drops it if stale, converts it and runs the network when somebody subscribes
to an output; the publishing thread, one frame behind (`frame_stages`), runs the postprocess,
converts the result to messages (`outputs`) and publishes them with the input's stamp and
frame_id. Drops are counted by cause and reported on /diagnostics.

Parameter changes build a new frozen `NodeConfig` (the settings and the message context) and
swap it in with one assignment: the worker reads it once per frame and never sees half an update.
The lifecycle state is rclpy's (`lifecycle_state`).

Topics (relative, remappable): in `image` (or `image/compressed`), `camera_info`, `odom`
(nav_msgs/Odometry, optional: `drivable/grid_fused` and the tracks' ground motion need it); out the
per-frame outputs of `output_table.OUTPUTS`, `class_info` (latched), and `/diagnostics`.
"""

from __future__ import annotations

import dataclasses
import gc
import time
from dataclasses import dataclass

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from segmentation_ros.pipeline import OutputRequest, SegmentationPipeline
from segmentation_ros.pipeline.pipeline import Inferred
from segmentation_ros.ros import params as P
from segmentation_ros.ros.diagnostics import (
    ERROR,
    OK,
    WARN,
    FrameStats,
    NodeStatus,
    make_diagnostics,
)
from segmentation_ros.ros.frame_stages import FrameStages
from segmentation_ros.ros.inputs import (
    Frame,
    FrameDropped,
    StampOrder,
    camera_from_info,
    camera_misfit,
    check_age,
    check_image,
    decode_image,
    stamp_ns,
)
from segmentation_ros.ros.node_pipeline import build_pipeline, check_against_model
from segmentation_ros.ros.odometry import OdometryBuffer, subscribe_odometry
from segmentation_ros.ros.output_table import (
    CLASS_INFO_TOPIC,
    CLASS_INFO_TYPE,
    OUTPUTS,
    iter_messages,
    output,
    request_for,
)
from segmentation_ros.ros.outputs import OutputContext, class_info_msg, class_table
from segmentation_ros.ros.tracking_glue import TrackingGlue

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE

OUTPUT_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
LATCHED_QOS = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


@dataclass(frozen=True)
class NodeConfig:
    """What frames are processed with: the parameters and, while configured, the message-side
    context (class table, grid frame, encodings). Never changed, only replaced."""

    settings: P.NodeSettings
    context: OutputContext | None = None


@dataclass(frozen=True)
class InferredFrame:
    """A frame between the node's two stages, with the configuration it started under."""

    frame: Frame
    rgb: object  # [H, W, 3] uint8
    request: OutputRequest
    inferred: Inferred
    config: NodeConfig
    pipeline: SegmentationPipeline


class SegmentationNode(LifecycleNode):
    """See the module docstring. `node_name` and rclpy Node keyword arguments are passed on."""

    def __init__(self, node_name: str = "segmentation_node", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        P.declare_parameters(self)
        # `odom`: the robot's pose for drivable/grid_fused and the tracks' ground motion
        self._odometry = OdometryBuffer()
        self._tracking = TrackingGlue(self, self._odometry)  # declares tracking_* parameters
        self._problems: dict[str, tuple[int, str]] = {}
        settings = self._read_settings()
        self._config = NodeConfig(settings) if settings is not None else None
        self._stats = FrameStats()
        self._stages = FrameStages(
            self._infer_frame,
            self._publish_frame,
            lambda error: self._count_drop(
                FrameDropped("inference_error", f"{type(error).__name__}: {error}")
            ),
            stopping=lambda: not self.context.ok(),
        )
        self._order = StampOrder()
        self._pipeline: SegmentationPipeline | None = None
        self._publishers_out: dict[str, object] = {}
        self._class_info_pub = None
        self._subscriptions_in: list[object] = []
        self._camera = None
        self._image_size: tuple[int, int] | None = None  # (width, height) of the last frame
        self._notes: tuple[str, ...] = ()
        self._idle = False
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diagnostics_timer = self.create_timer(
            settings.diagnostics_period if settings is not None else 1.0,
            self._publish_diagnostics,
        )

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def lifecycle_state(self) -> str:
        """The state's label in rclpy's state machine: unconfigured, inactive, active,
        finalized, or a transition (configuring, ...)."""
        return self._state_machine.current_state[1]

    @property
    def config(self) -> NodeConfig | None:
        """The current configuration (None while the parameters are invalid)."""
        return self._config

    def autostart(self) -> None:
        """Configure and activate when the `autostart` parameter is true."""
        if self.get_parameter("autostart").value and self.trigger_configure() == SUCCESS:
            self.trigger_activate()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Read the parameters, load the model, build the backend and the publishers."""
        self._problems.pop("configure", None)
        try:
            settings = P.read_settings(self)
            self._tracking.configure()
            pipeline = build_pipeline(settings, self.get_logger().info)
        except Exception as error:  # a transition reports failure, it never raises
            text = f"configure failed: {error}"
            self.get_logger().error(text)
            self._problems["configure"] = (ERROR, text)
            return FAILURE
        self._pipeline = pipeline
        self._config = self._make_config(settings)
        for topic in settings.outputs:
            self._publishers_out[topic] = self.create_lifecycle_publisher(
                output(topic).msg_type, topic, OUTPUT_QOS
            )
        self._class_info_pub = self.create_lifecycle_publisher(
            CLASS_INFO_TYPE, CLASS_INFO_TOPIC, LATCHED_QOS
        )
        self._reset_frame_state()
        self._restart_diagnostics_timer(settings.diagnostics_period)
        self.get_logger().info(
            f"configured: model {pipeline.model_name} ({len(pipeline.classes)} classes), backend "
            f"{pipeline.backend_name} {pipeline.precision}, "
            f"input {pipeline.input_size[1]}x{pipeline.input_size[0]}, "
            f"outputs {', '.join(settings.outputs) or 'none'}"
        )
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Enable the publishers, start the worker, subscribe; publish the class table."""
        result = super().on_activate(state)
        if result != SUCCESS:
            return result
        self._publish_class_info()
        self._order.reset()  # a new run of frames: no stamp reference from before
        self._stages.start()
        self._subscribe()
        self.get_logger().info("active")
        return SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing(final=True)
        self._release()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._release()
        return SUCCESS

    def close(self) -> None:
        """Stop the worker (process exit)."""
        self._stop_processing(final=True)

    # -- frames ---------------------------------------------------------------------------------

    def _on_image(self, msg) -> None:
        """Admit a frame into the slot (runs in the executor; cheap checks, no conversion)."""
        self._stats.frame_in()
        stamp, settings = stamp_ns(msg.header), self._config.settings
        try:
            check_image(msg, max_side=settings.max_image_side)
            check_age(stamp, self.get_clock().now().nanoseconds, settings.max_image_age_ms)
            self._order.check(stamp)
        except FrameDropped as drop:
            self._count_drop(drop)
            return
        if self._stages.frames.put(Frame(msg, time.monotonic(), stamp)):
            self._stats.drop("overwritten")

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            camera = camera_from_info(msg, self._image_size)
        except FrameDropped as drop:
            self._reject_camera_info(drop)
            return
        self._problems.pop("camera_info", None)
        if camera != self._camera:
            self._camera = camera

    def _infer_frame(self, frame: Frame) -> InferredFrame | None:
        """Inference thread: convert, then the network, for the outputs somebody listens to."""
        config, pipeline = self._config, self._pipeline  # one read: a consistent snapshot
        settings = config.settings
        try:
            check_age(frame.stamp_ns, self.get_clock().now().nanoseconds, settings.max_image_age_ms)
            rgb = decode_image(frame.msg, max_side=settings.max_image_side)
        except FrameDropped as drop:
            self._count_drop(drop)
            return None
        self._image_size = (rgb.shape[1], rgb.shape[0])
        if misfit := camera_misfit(self._camera, self._image_size):  # came before any image
            self._reject_camera_info(misfit)
            self._camera = None
        request = self._request()
        self._idle = not request.any
        if self._idle or pipeline is None:
            return None
        return InferredFrame(frame, rgb, request, pipeline.infer(rgb), config, pipeline)

    def _publish_frame(self, staged: InferredFrame) -> None:
        """Publishing thread: postprocess -> messages -> publish, `objects` first."""
        frame, rgb, request = staged.frame, staged.rgb, staged.request
        settings, context = staged.config.settings, staged.config.context
        pose = self._odometry.pose_at(frame.stamp_ns) if request.grid_fused else None
        result = staged.pipeline.finish(
            staged.inferred, request, settings.frame, camera=self._camera, pose=pose
        )
        # Each message goes out as soon as it is built, `objects` first.
        for topic, msg in iter_messages(
            result, rgb, frame.msg.header, request, context, arrival=frame.arrival
        ):
            if topic == "objects":
                self._tracking.annotate(
                    msg, self._camera, settings.frame.mount, rgb.shape[:2], result.segments
                )
            elif topic == "markers":
                self._tracking.add_markers(msg)
            self._publishers_out[topic].publish(msg)
        self._notes = result.notes
        timings = result.timings
        self._stats.frame_out(
            (time.monotonic() - frame.arrival) * 1e3,
            inference_ms=timings.inference_ms,
            model_ms=timings.preprocess_ms + timings.inference_ms + timings.postprocess_ms,
        )

    def _request(self) -> OutputRequest:
        """What the published outputs need; an on-demand one only while it has a subscriber."""

        def wanted(topic: str, on_demand: bool) -> bool:
            publisher = self._publishers_out.get(topic)
            if publisher is None:
                return False
            return not on_demand or publisher.get_subscription_count() > 0

        return request_for(out for out in OUTPUTS if wanted(out.topic, out.on_demand))

    def _reject_camera_info(self, drop: FrameDropped) -> None:
        self._count_drop(drop)
        self._problems["camera_info"] = (WARN, f"camera_info ignored: {drop.detail}")

    def _count_drop(self, drop: FrameDropped) -> None:
        self._stats.drop(drop.cause)
        self.get_logger().warning(f"frame dropped: {drop}", throttle_duration_sec=5.0)

    # -- parameters -----------------------------------------------------------------------------

    def _validate_parameters(self, parameters) -> SetParametersResult:
        for parameter in parameters:
            spec = P.PARAMETERS.get(parameter.name)
            if spec is None:  # rclpy's own (use_sim_time, ...)
                continue
            reason = P.check_value(parameter.name, parameter.value)
            if reason is None and not spec.dynamic:
                state = self.lifecycle_state
                if state not in ("unconfigured", "finalized"):
                    reason = (
                        f"{parameter.name} is read on configure: deactivate and clean up the "
                        f"node first (it is {state})"
                    )
            if reason is None and self._pipeline is not None:
                reason = check_against_model(self._pipeline, parameter.name, parameter.value)
            if reason is not None:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters) -> None:
        settings = self._read_settings()
        if settings is None:
            return
        self._config = self._make_config(settings)  # the one assignment the worker can see
        if self._pipeline is not None and self.lifecycle_state == "active":
            if any(p.name == "drivable_classes" for p in parameters):
                self._publish_class_info()

    def _read_settings(self) -> P.NodeSettings | None:
        try:
            settings = P.read_settings(self)
        except ValueError as error:
            self._problems["parameters"] = (ERROR, f"invalid parameters: {error}")
            return None
        self._problems.pop("parameters", None)
        return settings

    def _make_config(self, settings: P.NodeSettings) -> NodeConfig:
        """`settings` and, with a pipeline, the output context they give."""
        pipeline = self._pipeline
        if pipeline is None:
            return NodeConfig(settings)
        frame = settings.frame
        context = OutputContext(
            table=class_table(pipeline.classes, pipeline.drivability(frame.drivable_classes)),
            model_name=pipeline.model_name,
            grid=frame.grid,
            grid_frame=frame.grid.frame_id,
            confidence_encoding=settings.confidence_encoding,
            overlay_alpha=settings.overlay_alpha,
            keypoint_names=pipeline.keypoint_names,
        )
        return NodeConfig(settings, context)

    # -- helpers ----------------------------------------------------------------------------------

    def _subscribe(self) -> None:
        settings = self._config.settings
        reliability = (
            ReliabilityPolicy.RELIABLE
            if settings.input_reliability == "reliable"
            else ReliabilityPolicy.BEST_EFFORT
        )
        qos = QoSProfile(depth=1, reliability=reliability)
        if settings.image_transport == "compressed":
            image = self.create_subscription(
                CompressedImage, "image/compressed", self._on_image, qos
            )
        else:
            image = self.create_subscription(Image, "image", self._on_image, qos)
        info = self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos)
        odometry = subscribe_odometry(self, self._odometry)
        self._subscriptions_in = [image, info, odometry]

    def _stop_processing(self, final: bool = False) -> None:
        for subscription in self._subscriptions_in:
            self.destroy_subscription(subscription)
        self._subscriptions_in = []
        self._stages.stop(final=final)  # waits for the frames in flight

    def _release(self) -> None:
        for publisher in self._publishers_out.values():
            self.destroy_lifecycle_publisher(publisher)
        if self._class_info_pub is not None:
            self.destroy_lifecycle_publisher(self._class_info_pub)
        self._publishers_out, self._class_info_pub = {}, None
        self._pipeline = None
        if self._config is not None:
            self._config = dataclasses.replace(self._config, context=None)
        self._reset_frame_state()
        gc.collect()

    def _reset_frame_state(self) -> None:
        self._stats.reset()
        self._order.reset()
        self._camera = self._image_size = None
        self._odometry.clear()
        self._tracking.reset()
        self._notes = ()
        self._problems.pop("camera_info", None)

    def _publish_class_info(self) -> None:
        header = Header(stamp=self.get_clock().now().to_msg())
        self._class_info_pub.publish(class_info_msg(self._config.context, header))

    def _restart_diagnostics_timer(self, period: float) -> None:
        self._diagnostics_timer.timer_period_ns = int(period * 1e9)

    def _status(self) -> NodeStatus:
        problems = list(self._problems.values())
        config, pipeline, state = self._config, self._pipeline, self.lifecycle_state
        if state == "active" and config is not None:
            waiting = [
                o.topic for o in OUTPUTS if o.needs_camera and o.topic in config.settings.outputs
            ]
            if waiting and self._camera is None:
                topic = self.resolve_topic_name("camera_info")
                problems.append(
                    (WARN, f"no camera_info on {topic}: {' and '.join(waiting)} not published")
                )
            problems += [(WARN, note) for note in self._notes if "camera_info" not in note]
            if self._idle:
                problems.append((OK, "idle: no output has a subscriber, frames are skipped"))
        return NodeStatus(
            state=state,
            model=pipeline.model_name if pipeline else "",
            backend=pipeline.backend_name if pipeline else "",
            input_size=f"{pipeline.input_size[1]}x{pipeline.input_size[0]}" if pipeline else "",
            problems=problems,
        )

    def _publish_diagnostics(self) -> None:
        stats = self._stats.snapshot(mark_reported=True)
        stamp = self.get_clock().now().to_msg()
        self._diagnostics_pub.publish(
            make_diagnostics(self.get_fully_qualified_name(), self._status(), stats, stamp=stamp)
        )


def main(args=None) -> int:
    """Console script `segmentation_node`."""
    rclpy.init(args=args)
    node = None
    try:
        node = SegmentationNode()
        node.autostart()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.close()
        rclpy.try_shutdown()  # destroys the node too
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``anonymizer_node``: the rclpy lifecycle shell around the ROS-free modules of this package.

Everything that decides what is published lives in ``frame_handler`` (scheduling, fail closed),
``image_codec`` (messages <-> frames) and ``parameters`` (the parameter table); this module only
declares parameters, owns subscriptions, publishers, QoS and diagnostics, and moves messages.

Lifecycle: the pipeline (detector, landmarker, engine, TensorRT engine cache) is built on
configure; subscriptions and publishers are made on activate; everything is freed on
deactivate / cleanup. With ``autostart`` the node configures and activates itself.
"""

from __future__ import annotations

import time
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticStatus
from diagnostic_updater import DiagnosticStatusWrapper, Updater
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.lifecycle import Node, State, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import (
    HistoryPolicy,
    QoSOverridingOptions,
    QoSProfile,
    ReliabilityPolicy,
)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

from ciagan_core.errors import CiaganError
from ciagan_core.pipeline import Anonymizer
from ciagan_ros.frame_handler import FrameHandler, InFrame, OutFrame
from ciagan_ros.image_codec import (
    frame_to_compressed_data,
    frame_to_image_data,
    message_to_frame,
)
from ciagan_ros.parameters import PARAMETERS, anonymizer_configs, check_values

_TYPES = {
    "bool": Parameter.Type.BOOL,
    "integer": Parameter.Type.INTEGER,
    "double": Parameter.Type.DOUBLE,
    "string": Parameter.Type.STRING,
    "string_array": Parameter.Type.STRING_ARRAY,
    "integer_array": Parameter.Type.INTEGER_ARRAY,
}
#: Parameters read when the node is configured (changing them needs cleanup, configure).
_TOPIC_PARAMETERS = {"input_topics", "input_transport", "qos_reliability", "qos_depth"}


def _descriptor(param) -> ParameterDescriptor:
    text = param.description
    if param.choices:
        text += f" ({', '.join(param.choices)})"
    descriptor = ParameterDescriptor(
        description=text, type=_TYPES[param.kind].value, read_only=param.name == "autostart"
    )
    if param.bounds and param.kind == "integer":
        descriptor.integer_range = [
            IntegerRange(from_value=int(param.bounds[0]), to_value=int(param.bounds[1]), step=1)
        ]
    elif param.bounds and param.kind == "double":
        descriptor.floating_point_range = [
            FloatingPointRange(from_value=param.bounds[0], to_value=param.bounds[1], step=0.0)
        ]
    return descriptor


def _sibling(topic: str, name: str) -> str:
    """``name`` in the namespace of ``topic`` (camera/image -> camera/camera_info)."""
    return f"{topic.rsplit('/', 1)[0]}/{name}" if "/" in topic else name


class AnonymizerNode(Node):
    """Subscribes to camera images, publishes them with every face anonymized."""

    def __init__(self, **kwargs: Any):
        super().__init__("anonymizer", **kwargs)
        for param in PARAMETERS:
            self.declare_parameter(param.name, param.default, _descriptor(param))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._handler: FrameHandler | None = None
        self._subscriptions: list = []
        self._publishers: dict[str, dict[str, Any]] = {}
        self._diagnostics: Updater | None = None
        self._last_warning: dict[str, float] = {}
        self._rebuild_requested = False
        self._rebuild_timer = None
        self._landmarker_warning = ""

    # -- parameters ---------------------------------------------------------------------------

    def _values(self) -> dict[str, Any]:
        return {p.name: self.get_parameter(p.name).value for p in PARAMETERS}

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Validate with the CLI's validation; apply on the worker's next frame."""
        changes = {p.name: p.value for p in params}
        topics = sorted(_TOPIC_PARAMETERS & set(changes))
        if topics and self._handler is not None:
            return SetParametersResult(
                successful=False,
                reason=f"{', '.join(topics)} take effect on configure: deactivate and clean up "
                "the node first",
            )
        try:
            check_values(changes)
            anonymizer_configs({**self._values(), **changes})
        except CiaganError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if self._handler is not None:
            if "on_failure" in changes:
                self._handler.on_failure = changes["on_failure"]
            if "max_latency_ms" in changes:
                self._handler.max_latency_ms = float(changes["max_latency_ms"])
            if any(name not in _TOPIC_PARAMETERS for name in changes):
                self._rebuild_requested = True  # by the timer, once the values are set
        return SetParametersResult(successful=True)

    def _rebuild_if_requested(self) -> None:
        if self._rebuild_requested and self._handler is not None:
            self._rebuild_requested = False
            self._build_pipeline()

    def _build_pipeline(self) -> bool:
        """Build one anonymizer per camera sharing detector and engine, then swap it in; the
        previous pipeline serves meanwhile. If building fails, frames are pixelated whole (the
        handler has no pipeline) until a good setting is given."""
        values = self._values()
        try:
            configs = anonymizer_configs(values)
            cameras = list(configs)
            first = Anonymizer(configs[cameras[0]])
            anonymizers = {cameras[0]: first}
            for camera in cameras[1:]:  # one detector, landmarker and engine for all
                anonymizers[camera] = Anonymizer(
                    configs[camera],
                    detector=first.detector,
                    landmarker=first.landmarker,
                    engine=first.engine,
                )
            config = configs[cameras[0]]
        except Exception as exc:
            self._handler.set_anonymizers(None)
            self.get_logger().error(f"cannot build the anonymization pipeline: {exc}")
            return False
        self._handler.set_anonymizers(anonymizers)
        self._landmarker_warning = first.landmarker_warning
        if first.landmarker_warning:
            self.get_logger().warning(first.landmarker_warning)
        engine = first.engine.name if first.engine else "none"
        self.get_logger().info(
            f"pipeline ready: method {config.method}, detector {config.detector} "
            f"({getattr(first.detector, 'precision', '-')}), engine {engine}"
        )
        return True

    # -- lifecycle ----------------------------------------------------------------------------

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        values = self._values()
        cameras = list(values["input_topics"])
        if not cameras or len(set(cameras)) != len(cameras):
            self.get_logger().error("input_topics must list distinct topics")
            return TransitionCallbackReturn.FAILURE
        self._handler = FrameHandler(
            cameras, self._publish, values["on_failure"], values["max_latency_ms"]
        )
        if not self._build_pipeline():
            return TransitionCallbackReturn.FAILURE
        self._rebuild_timer = self.create_timer(0.2, self._rebuild_if_requested)
        self._diagnostics = Updater(self)
        self._diagnostics.setHardwareID("ciagan_anonymizer")
        for camera in cameras:
            self._diagnostics.add(f"anonymizer {camera}", lambda s, c=camera: self._diagnose(s, c))
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        values = self._values()
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=values["qos_depth"],
            reliability=ReliabilityPolicy.RELIABLE
            if values["qos_reliability"] == "reliable"
            else ReliabilityPolicy.BEST_EFFORT,
        )
        overrides = QoSOverridingOptions.with_default_policies()
        compressed_in = values["input_transport"] == "compressed"
        for camera in values["input_topics"]:
            out = f"{camera}_anonymized"
            pubs = {
                "image": self.create_lifecycle_publisher(
                    Image, out, qos, qos_overriding_options=overrides
                )
            }
            if values["publish_compressed"]:
                pubs["compressed"] = self.create_lifecycle_publisher(
                    CompressedImage, f"{out}/compressed", qos, qos_overriding_options=overrides
                )
            if values["publish_faces"]:
                pubs["faces"] = self.create_lifecycle_publisher(
                    Detection2DArray, f"{camera}_faces", qos
                )
            if values["pass_camera_info"]:
                info_pub = self.create_lifecycle_publisher(
                    CameraInfo, _sibling(camera, "camera_info_anonymized"), qos
                )
                self._subscriptions.append(
                    self.create_subscription(
                        CameraInfo, _sibling(camera, "camera_info"), info_pub.publish, qos
                    )
                )
            self._publishers[camera] = pubs
            self._subscriptions.append(
                self.create_subscription(
                    CompressedImage if compressed_in else Image,
                    f"{camera}/compressed" if compressed_in else camera,
                    lambda msg, c=camera: self._on_image(c, msg),
                    qos,
                    qos_overriding_options=overrides,
                )
            )
        self._handler.start()
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        if self._handler is not None:
            self._handler.stop()
        for subscription in self._subscriptions:
            self.destroy_subscription(subscription)
        self._subscriptions = []
        for pubs in self._publishers.values():
            for publisher in pubs.values():
                self.destroy_publisher(publisher)
        self._publishers = {}
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        if self._handler is not None:
            self._handler.stop()
            self._handler.set_anonymizers(None)
        self._handler = None  # frees detector, landmarker and engine (GPU memory)
        if self._rebuild_timer is not None:
            self.destroy_timer(self._rebuild_timer)
            self._rebuild_timer = None
        self._diagnostics = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        if self._handler is not None:
            self._handler.stop()
        return TransitionCallbackReturn.SUCCESS

    # -- messages -----------------------------------------------------------------------------

    def _on_image(self, camera: str, msg: Any) -> None:
        """Executor callback: decode and hand over; inference runs on the worker."""
        try:
            frame = message_to_frame(msg)
        except Exception as exc:  # nothing can be published for an undecodable frame
            self._throttled_warning(camera, f"{camera}: frame dropped: {exc}")
            return
        self._handler.submit(InFrame(camera, frame, msg.header, time.monotonic(), (msg, frame)))

    def _publish(self, out: OutFrame) -> None:
        """Worker callback: encode in the input's own format, same header, and publish."""
        msg, original = out.context
        pubs = self._publishers.get(out.camera)
        if pubs is None:  # deactivated meanwhile
            return
        if out.status != "ok":
            self._throttled_warning(
                out.camera,
                f"{out.camera}: frame published pixelated whole ({out.status}: {out.reason})",
            )
        quality = self.get_parameter("jpeg_quality").value
        if isinstance(msg, CompressedImage):
            height, width = out.image.shape[:2]
            channels = 1 if out.image.ndim == 2 else out.image.shape[2]
            bits = 8 * out.image.dtype.itemsize
            encoding = {1: f"mono{bits}", 3: f"bgr{bits}", 4: f"bgra{bits}"}[channels]
            step = width * channels * out.image.dtype.itemsize
            image = Image(
                header=out.header, height=height, width=width, encoding=encoding, step=step
            )
            image.data = out.image.tobytes()
            compressed_format = msg.format
        else:
            image = Image(
                header=out.header,
                height=msg.height,
                width=msg.width,
                encoding=msg.encoding,
                is_bigendian=msg.is_bigendian,
                step=msg.step,
            )
            image.data = frame_to_image_data(out.image, msg, original).tobytes()
            compressed_format = "jpeg"
        pubs["image"].publish(image)
        if "compressed" in pubs:
            compressed = CompressedImage(header=out.header, format=compressed_format)
            compressed.data = frame_to_compressed_data(
                out.image, compressed_format, quality
            ).tobytes()
            pubs["compressed"].publish(compressed)
        if "faces" in pubs:
            pubs["faces"].publish(self._faces_message(out))

    def _faces_message(self, out: OutFrame) -> Detection2DArray:
        array = Detection2DArray(header=out.header)
        for face in out.faces:
            detection = Detection2D(header=out.header)
            detection.bbox.center.position.x, detection.bbox.center.position.y = face.box.center
            detection.bbox.size_x, detection.bbox.size_y = face.box.width, face.box.height
            detection.id = "" if face.track_id is None else str(face.track_id)
            hypothesis = ObjectHypothesisWithPose()
            reason = f":{face.fallback_reason}" if face.fallback_reason else ""
            hypothesis.hypothesis.class_id = f"face/{face.method}{reason}"
            hypothesis.hypothesis.score = float(face.box.score)
            detection.results.append(hypothesis)
            array.detections.append(detection)
        return array

    def _throttled_warning(self, key: str, text: str, period_s: float = 5.0) -> None:
        now = time.monotonic()
        if now - self._last_warning.get(key, -period_s) >= period_s:
            self._last_warning[key] = now
            self.get_logger().warning(text)

    def _diagnose(self, status: DiagnosticStatusWrapper, camera: str) -> DiagnosticStatusWrapper:
        stats = self._handler.stats[camera] if self._handler else None
        if stats is None:
            status.summary(DiagnosticStatus.ERROR, "not configured")
            return status
        failures = sum(stats.failures.values())
        mismatch = self._landmarker_warning
        level = DiagnosticStatus.WARN if failures or mismatch else DiagnosticStatus.OK
        summary = "fail-closed frames published" if failures else mismatch or "ok"
        status.summary(level, summary)
        status.add("received", str(stats.received))
        status.add("published", str(stats.published))
        status.add("dropped stale", str(stats.dropped_stale))
        status.add("failures", str(dict(stats.failures)))
        status.add("faces", str(stats.faces))
        status.add("fallbacks", str(stats.fallbacks))
        status.add("median latency ms", f"{stats.median_latency_ms():.1f}")
        for name in ("method", "landmarks", "engine", "device", "precision", "detector_precision"):
            status.add(name, str(self.get_parameter(name).value))
        return status


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    node = AnonymizerNode()
    if node.get_parameter("autostart").value:
        node.trigger_configure()
        node.trigger_activate()
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()

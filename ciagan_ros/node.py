"""``anonymizer_node``: the rclpy lifecycle shell around the ROS-free modules of this package.

Everything that decides what is published lives in ``frame_handler`` (scheduling, fail closed),
``image_codec`` (messages <-> frames) and ``parameters`` (the parameter table); this module only
declares parameters, owns subscriptions, publishers, QoS and diagnostics, and moves messages.

Lifecycle: the pipeline (detector, landmarker, engine, TensorRT engine cache) and the
``/diagnostics`` publisher are made on configure; subscriptions and publishers on activate;
everything is freed on deactivate / cleanup. With ``autostart`` the node configures and
activates itself. SIGINT and SIGTERM stop it cleanly with exit status 0; the ``shutdown``
transition ends the process too.

Needs only what installs from PyPI (``pip install -e '.[ros]'``) or a ROS 2 distro: rclpy,
sensor_msgs, lifecycle_msgs, diagnostic_msgs. ``vision_msgs`` is optional: without it the
faces topic is off (said once in the log) and everything else is published.

Attribute names never reuse rclpy's (``_publishers``, ``_subscriptions``, ``_timers``, ...):
rclpy keeps its own lists under those names.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSPolicyKind, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from ciagan_core.errors import CiaganError, ConfigError
from ciagan_core.pipeline import Anonymizer
from ciagan_ros.dds import use_shipped_profile
from ciagan_ros.frame_handler import FrameHandler, InFrame, OutFrame
from ciagan_ros.image_codec import (
    frame_to_compressed_data,
    frame_to_image_data,
    message_to_frame,
)
from ciagan_ros.parameters import (
    BY_NAME,
    PARAMETERS,
    READ_PER_FRAME,
    TOPIC_PARAMETERS,
    anonymizer_configs,
    check_values,
)

try:  # not on PyPI; a ROS workspace has it
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose
except ImportError:
    Detection2DArray = None

_TYPES = {
    "bool": Parameter.Type.BOOL,
    "integer": Parameter.Type.INTEGER,
    "double": Parameter.Type.DOUBLE,
    "string": Parameter.Type.STRING,
    "string_array": Parameter.Type.STRING_ARRAY,
    "integer_array": Parameter.Type.INTEGER_ARRAY,
}
#: Parameters rclpy itself declares on a node; they are not ours to judge.
_RCLPY_PARAMETERS = {"use_sim_time", "start_type_description_service"}
#: QoS policies operators may override per topic (rclpy's default set lacks durability).
_OVERRIDABLE = (
    QoSPolicyKind.HISTORY,
    QoSPolicyKind.DEPTH,
    QoSPolicyKind.RELIABILITY,
    QoSPolicyKind.DURABILITY,
    QoSPolicyKind.DEADLINE,
    QoSPolicyKind.LIFESPAN,
    QoSPolicyKind.LIVELINESS,
    QoSPolicyKind.LIVELINESS_LEASE_DURATION,
)
_LEVELS = {
    "ok": DiagnosticStatus.OK,
    "warn": DiagnosticStatus.WARN,
    "error": DiagnosticStatus.ERROR,
}


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


def _topics(node: LifecycleNode, camera: str, compressed_in: bool) -> dict[str, str]:
    """The names one camera's topics get. Remapping the camera topic (``-r image:=/cam/raw``)
    moves all of them with it (``/cam/raw/compressed`` in, ``/cam/raw_anonymized`` out);
    otherwise they stay relative, so that namespaces and remapping of each output work."""
    base = camera
    if node.resolve_topic_name(camera) != node.resolve_topic_name(camera, only_expand=True):
        base = node.resolve_topic_name(camera)
    return {
        "input": f"{base}/compressed" if compressed_in else base,
        "image": f"{base}_anonymized",
        "compressed": f"{base}_anonymized/compressed",
        "faces": f"{base}_faces",
        "camera_info": _sibling(base, "camera_info"),
        "camera_info_out": _sibling(base, "camera_info_anonymized"),
    }


def _transition(callback):
    """Log a transition callback's exception with its traceback (rclpy swallows it and only
    says the transition failed), then let rclpy turn it into an error transition."""

    @functools.wraps(callback)
    def logged(self: AnonymizerNode, state: State) -> TransitionCallbackReturn:
        try:
            return callback(self, state)
        except Exception as exc:
            self.get_logger().error(
                f"{callback.__name__} failed: {exc}\n{traceback.format_exc().rstrip()}"
            )
            raise

    return logged


class AnonymizerNode(LifecycleNode):
    """Subscribes to camera images, publishes them with every face anonymized."""

    def __init__(self, **kwargs: Any):
        super().__init__("anonymizer", **kwargs)
        problems = []
        for param in PARAMETERS:
            try:
                self.declare_parameter(param.name, param.default, _descriptor(param))
            except ParameterException as exc:  # a value of the wrong type or out of range
                problems.append(f"{param.name}: {exc}")
        if problems:
            raise ConfigError("invalid parameters: " + "; ".join(problems))
        try:  # a bad choice or combination stops the start like a bad type: fix the file
            self._check(self._values())
        except CiaganError as exc:
            raise ConfigError(f"invalid parameters: {exc}") from None
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._frames: FrameHandler | None = None
        self._inputs: list[Any] = []
        self._outputs: dict[str, dict[str, Any]] = {}
        self._diagnostics_pub = None
        self._diagnostics_timer = None
        self._diagnostics_failures: dict[str, int] = {}
        #: Per camera: the received count last seen to change, and when (monotonic seconds).
        self._last_input: dict[str, tuple[int, float]] = {}
        self._rebuild_timer = None
        self._rebuild_requested = False
        self._build_thread: threading.Thread | None = None
        self._pipeline_error = ""
        #: Why the last configure failed (said on /diagnostics while unconfigured).
        self._configure_error = ""
        self._landmarker_warning = ""
        self._engine_name = "none"
        self._warned_at: dict[str, float] = {}
        self._active = False
        self.finalized = False
        unknown = sorted(
            name
            for name in getattr(self, "_parameter_overrides", {})
            if name not in BY_NAME
            and name not in _RCLPY_PARAMETERS
            and not name.startswith("qos_overrides.")
        )
        if unknown:
            self.get_logger().warning(
                f"unknown parameters ignored: {', '.join(unknown)} "
                "(config/anonymizer.yaml lists every parameter)"
            )
        # /diagnostics from the start: a node that cannot configure says why there too.
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._start_diagnostics_timer(self.get_parameter("diagnostics_period").value)

    # -- parameters ---------------------------------------------------------------------------

    def _values(self) -> dict[str, Any]:
        return {p.name: self.get_parameter(p.name).value for p in PARAMETERS}

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Judge the node's own parameters with the CLI's validation; let rclpy's own (QoS
        overrides, use_sim_time, ...) through. Pipeline settings apply by a rebuild."""
        changes = {p.name: p.value for p in params if p.name in BY_NAME}
        if not changes:
            return SetParametersResult(successful=True)
        topics = sorted(TOPIC_PARAMETERS & set(changes))
        if topics and self._frames is not None:
            return SetParametersResult(
                successful=False,
                reason=f"{', '.join(topics)} take effect on configure: deactivate and clean up "
                "the node first",
            )
        try:
            check_values(changes)
            self._check({**self._values(), **changes}, changes)
        except CiaganError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if "diagnostics_period" in changes:
            self._start_diagnostics_timer(float(changes["diagnostics_period"]))
        if self._frames is not None:
            if "on_failure" in changes:
                self._frames.on_failure = changes["on_failure"]
            if "max_latency_ms" in changes:
                self._frames.max_latency_ms = float(changes["max_latency_ms"])
            if set(changes) - READ_PER_FRAME:
                self._rebuild_requested = True  # by the timer, once the values are set
        return SetParametersResult(successful=True)

    def _check(self, values: dict[str, Any], changes: dict[str, Any] | None = None) -> None:
        """ConfigError unless ``values`` make a valid configuration: the CLI's validation,
        topic names rclpy accepts, and model and landmark files that exist (when they are
        being set: a missing one would cost the working pipeline)."""
        anonymizer_configs(values)
        for topic in values["input_topics"]:
            try:
                self.resolve_topic_name(topic)
            except Exception as exc:
                reason = str(exc).split(", at ")[0]  # rcl appends its source file
                raise ConfigError(
                    f"input_topics: {topic!r} is not a valid topic name: {reason}"
                ) from None
        if changes is None:  # at start: a missing file fails configure (fixable at run time)
            return
        model = values["model_path"]
        asked = values["method"] == "ciagan" and {"model_path", "method"} & set(changes)
        if asked and not Path(model).is_file():
            raise ConfigError(f"model_path: {model} is not a file")
        weights = values["landmark_weights"]
        if "landmark_weights" in changes and weights and not Path(weights).exists():
            raise ConfigError(f"landmark_weights: {weights} does not exist")

    def stop_frames(self) -> None:
        """Stop the worker: nothing more is published."""
        self._active = False
        if self._frames is not None:
            self._frames.stop()

    def building(self) -> bool:
        """Whether a pipeline is being built right now."""
        return self._build_thread is not None and self._build_thread.is_alive()

    def _rebuild_if_requested(self) -> None:
        """Timer: start a rebuild in the background when settings changed (and none runs)."""
        if self._rebuild_requested and self._frames is not None and not self.building():
            self._rebuild_requested = False
            self._build_thread = self._start_build(self._values(), self._frames)

    def _start_build(self, values: dict[str, Any], frames: FrameHandler) -> threading.Thread:
        """Build the pipeline on a thread of its own: loading models (or building a TensorRT
        engine) must not stop the executor, so frames, services and diagnostics go on, served
        by the previous pipeline meanwhile."""
        thread = threading.Thread(
            target=self._build_pipeline, args=(values, frames), name="ciagan-build", daemon=True
        )
        thread.start()
        return thread

    def _build_pipeline(self, values: dict[str, Any], frames: FrameHandler) -> bool:
        """Build one anonymizer per camera sharing detector and engine, then swap it in. If
        building fails, frames are pixelated whole (the handler has no pipeline) until a good
        setting is given, and /diagnostics says ERROR with the reason."""
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
            self._pipeline_error = f"cannot build the anonymization pipeline: {exc}"
            frames.set_anonymizers(None, self._pipeline_error)
            self.get_logger().error(self._pipeline_error)
            return False
        if frames is not self._frames:  # cleaned up while building
            return False
        frames.set_anonymizers(anonymizers)
        self._pipeline_error = ""
        self._landmarker_warning = first.landmarker_warning
        if first.landmarker_warning:
            self.get_logger().warning(first.landmarker_warning)
        self._engine_name = first.engine.name if first.engine else "none"
        self.get_logger().info(
            f"pipeline ready: method {config.method}, detector {config.detector} "
            f"({getattr(first.detector, 'precision', '-')}), engine {self._engine_name}"
        )
        return True

    # -- lifecycle ----------------------------------------------------------------------------

    @_transition
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        values = self._values()
        try:
            self._check(values)
        except CiaganError as exc:
            self._configure_error = f"cannot configure: {exc}"
            self.get_logger().error(self._configure_error)
            return TransitionCallbackReturn.FAILURE
        self._frames = FrameHandler(
            values["input_topics"], self._publish, values["on_failure"], values["max_latency_ms"]
        )
        self._pipeline_error = ""
        self._build_thread = self._start_build(values, self._frames)
        while self._build_thread.is_alive():  # SIGTERM meanwhile ends the wait
            self._build_thread.join(0.1)
            if not self.context.ok():
                self._frames = None
                return TransitionCallbackReturn.FAILURE
        if self._pipeline_error:
            self._configure_error = self._pipeline_error
            self._release()
            return TransitionCallbackReturn.FAILURE
        self._configure_error = ""
        self._rebuild_timer = self.create_timer(0.2, self._rebuild_if_requested)
        return TransitionCallbackReturn.SUCCESS

    def _qos(self, reliability: str) -> QoSProfile:
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=self.get_parameter("qos_depth").value,
            reliability=ReliabilityPolicy.RELIABLE
            if reliability == "reliable"
            else ReliabilityPolicy.BEST_EFFORT,
        )

    def _overrides(self, topic: str, kind: str) -> dict[str, Any]:
        """Operators' ``qos_overrides.<topic>.<kind>.*`` for ``topic``, if any were given:
        only then are the override parameters declared (they are read-only once declared, so
        declaring them unasked would pin the first activation's QoS)."""
        prefix = f"qos_overrides.{self.resolve_topic_name(topic)}.{kind}."
        given = any(n.startswith(prefix) for n in getattr(self, "_parameter_overrides", {}))
        if not given:
            return {}
        return {"qos_overriding_options": QoSOverridingOptions(policy_kinds=_OVERRIDABLE)}

    @_transition
    def on_activate(self, state: State) -> TransitionCallbackReturn:
        values = self._values()

        def qos_in():  # a fresh profile each: rclpy writes operators' overrides into it
            return self._qos(values["input_qos_reliability"])

        def qos_out():
            return self._qos(values["output_qos_reliability"])

        compressed_in = values["input_transport"] == "compressed"
        if values["publish_faces"] and Detection2DArray is None:
            self.get_logger().warning(
                "vision_msgs is not installed: the faces topics are off; images are published"
            )
        info_subscriptions = []
        names = {c: _topics(self, c, compressed_in) for c in values["input_topics"]}
        for camera, name in names.items():
            outputs = {
                "image": self.create_lifecycle_publisher(
                    Image, name["image"], qos_out(), **self._overrides(name["image"], "publisher")
                )
            }
            if values["publish_compressed"]:
                outputs["compressed"] = self.create_lifecycle_publisher(
                    CompressedImage,
                    name["compressed"],
                    qos_out(),
                    **self._overrides(name["compressed"], "publisher"),
                )
            if values["publish_faces"] and Detection2DArray is not None:
                outputs["faces"] = self.create_lifecycle_publisher(
                    Detection2DArray, name["faces"], qos_out()
                )
            if values["pass_camera_info"]:
                outputs["camera_info"] = self.create_lifecycle_publisher(
                    CameraInfo, name["camera_info_out"], qos_out()
                )
                info_subscriptions.append((name["camera_info"], outputs["camera_info"]))
            self._outputs[camera] = outputs
        result = super().on_activate(state)  # activates the lifecycle publishers
        for topic, info_pub in info_subscriptions:
            self._inputs.append(
                self.create_subscription(CameraInfo, topic, info_pub.publish, qos_in())
            )
        for camera, name in names.items():
            self._inputs.append(
                self.create_subscription(
                    CompressedImage if compressed_in else Image,
                    name["input"],
                    lambda msg, c=camera: self._on_image(c, msg),
                    qos_in(),
                    **self._overrides(name["input"], "subscription"),
                )
            )
        self._frames.start()
        self._last_input = {}  # silence counts from now
        self._active = True
        self.get_logger().info(
            "active: "
            + ", ".join(
                f"{self.resolve_topic_name(n['input'])} -> {self.resolve_topic_name(n['image'])}"
                for n in names.values()
            )
        )
        return result

    def _stop_topics(self) -> None:
        """Stop the worker (frames still waiting are dropped) and free topics."""
        self._active = False
        if self._frames is not None:
            self._frames.stop()
        for subscription in self._inputs:
            self.destroy_subscription(subscription)
        self._inputs = []
        for outputs in self._outputs.values():
            for publisher in outputs.values():
                self.destroy_lifecycle_publisher(publisher)
        self._outputs = {}

    def _release(self) -> None:
        """Free everything configure and activate made (the pipeline: GPU memory too)."""
        self._stop_topics()
        if self._frames is not None:
            self._frames.set_anonymizers(None)
        self._frames = None
        if self._rebuild_timer is not None:
            self.destroy_timer(self._rebuild_timer)
        self._rebuild_timer = None
        self._rebuild_requested = False
        self._pipeline_error = ""

    @_transition
    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_topics()
        return super().on_deactivate(state)

    @_transition
    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    @_transition
    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._release()
        self.finalized = True  # main() ends the process
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS  # back to unconfigured

    # -- messages -----------------------------------------------------------------------------

    def _on_image(self, camera: str, msg: Any) -> None:
        """Executor callback: decode and hand over; inference runs on the worker."""
        frames = self._frames
        if frames is None or not self._active:
            return
        try:
            frame = message_to_frame(msg)
        except Exception as exc:  # nothing can be published for an undecodable frame
            frames.count_undecodable(camera)
            self._throttled_warning(camera, f"{camera}: frame dropped: {exc}")
            return
        frames.submit(InFrame(camera, frame, msg.header, time.monotonic(), (msg, frame)))

    def _publish(self, out: OutFrame) -> None:
        """Worker callback: encode in the input's own format, same header, and publish."""
        msg, original = out.context
        outputs = self._outputs.get(out.camera)
        if outputs is None:  # deactivated meanwhile
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
            # JPEG holds 8 bits; a 16-bit frame (mono16, 16-bit Bayer) goes out as PNG.
            compressed_format = "png" if out.image.dtype.itemsize > 1 else "jpeg"
        outputs["image"].publish(image)
        if "compressed" in outputs:
            compressed = CompressedImage(header=out.header, format=compressed_format)
            compressed.data = frame_to_compressed_data(
                out.image, compressed_format, quality
            ).tobytes()
            outputs["compressed"].publish(compressed)
        if "faces" in outputs:
            outputs["faces"].publish(self._faces_message(out))

    def _faces_message(self, out: OutFrame) -> Any:
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
        if now - self._warned_at.get(key, -period_s) >= period_s:
            self._warned_at[key] = now
            self.get_logger().warning(text)

    # -- diagnostics --------------------------------------------------------------------------

    def _start_diagnostics_timer(self, period: float) -> None:
        if self._diagnostics_timer is not None:
            self.destroy_timer(self._diagnostics_timer)
        self._diagnostics_timer = self.create_timer(period, self._publish_diagnostics)

    def _publish_diagnostics(self) -> None:
        frames = self._frames
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        if frames is None:  # unconfigured: nothing is anonymized, nothing published
            level = "error" if self._configure_error else "ok"
            message = self._configure_error or "unconfigured"
            array.status = [
                DiagnosticStatus(
                    level=_LEVELS[level],
                    name=f"{self.get_fully_qualified_name()}: {camera}",
                    message=message,
                    hardware_id="ciagan_anonymizer",
                    values=[KeyValue(key="state", value="unconfigured")],
                )
                for camera in self.get_parameter("input_topics").value
            ]
        else:
            array.status = [self._camera_status(frames, camera) for camera in frames.cameras]
        self._diagnostics_pub.publish(array)

    def _silent_for(self, camera: str, received: int) -> float:
        """Seconds since ``camera``'s received count last changed (counted from the first
        report after activation)."""
        now = time.monotonic()
        count, since = self._last_input.setdefault(camera, (received, now))
        if received != count:
            self._last_input[camera] = (received, now)
            return 0.0
        return now - since

    def _camera_status(self, frames: FrameHandler, camera: str) -> DiagnosticStatus:
        stats = frames.snapshot(camera)
        failures = sum(stats.failures.values())
        new_failures = failures - self._diagnostics_failures.get(camera, 0)
        self._diagnostics_failures[camera] = failures
        if self._pipeline_error:
            level, message = "error", f"frames fail closed: {self._pipeline_error}"
        elif new_failures:
            level, message = "warn", f"{new_failures} frames failed closed (pixelated or dropped)"
        elif self._landmarker_warning:
            level, message = "warn", self._landmarker_warning
        elif self._active and (silent := self._silent_for(camera, stats.received)) >= 5.0:
            level = "warn"
            message = (
                f"no frames received for {silent:.0f} s: is the camera publishing, and does "
                "it use a Fast DDS profile sized for camera frames (config/fastdds.xml)?"
            )
        else:
            level, message = "ok", "active" if self._active else "inactive"
        values = {
            "state": "active" if self._active else "inactive",
            "received": stats.received,
            "published": stats.published,
            "dropped stale": stats.dropped_stale,
            "dropped undecodable": stats.undecodable,
            "fail-closed frames": failures,
            **{f"fail-closed: {reason}": n for reason, n in sorted(stats.failures.items())},
            "faces": stats.faces,
            "fallbacks": stats.fallbacks,
            "median latency ms": f"{stats.median_latency_ms():.1f}",
            "engine": self._engine_name,
        }
        for name in ("method", "landmarks", "device", "precision", "detector_precision"):
            values[name] = self.get_parameter(name).value
        if self.get_parameter("publish_faces").value and Detection2DArray is None:
            values["faces topic"] = "off: vision_msgs is not installed"
        return DiagnosticStatus(
            level=_LEVELS[level],
            name=f"{self.get_fully_qualified_name()}: {camera}",
            message=message,
            hardware_id="ciagan_anonymizer",
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
        )


def main(args: list[str] | None = None) -> int:
    """``anonymizer_node [--ros-args ...]``: exit status 0 after SIGINT, SIGTERM or the
    ``shutdown`` transition, 2 when the given parameters are invalid."""
    profile = use_shipped_profile()  # before rclpy.init: Fast DDS reads it then
    # rclpy installs its own handlers at init. Until then a signal stays pending rather than
    # meeting SIG_DFL (exit -15) in between; rclpy's handler then shuts the context down.
    held = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        rclpy.init(args=args)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)
    try:
        node = AnonymizerNode()
    except ConfigError as exc:
        print(f"anonymizer_node: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    except Exception:
        if rclpy.ok():
            raise
        return 0  # stopped by a signal while the node was being created
    node.get_logger().info(profile)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        if node.get_parameter("autostart").value:
            if node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                node.trigger_activate()
            elif rclpy.ok():
                node.get_logger().error(
                    "not configured: fix the parameters, then configure the node "
                    "(lifecycle change_state); nothing is published meanwhile"
                )
        while rclpy.ok() and not node.finalized:
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node.building():
            # Stopped while models load: end now. Tearing rclpy down under a thread that may
            # still log (or finish its build) can abort the process; nothing is left to save.
            node.stop_frames()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        node._release()  # the worker stops before the context goes
        executor.remove_node(node)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

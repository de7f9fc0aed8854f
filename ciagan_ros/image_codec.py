"""sensor_msgs/Image and CompressedImage fields <-> numpy frames, without ROS or cv_bridge.

One codec for the node (rclpy messages) and the bag tool (``rosbags`` messages): both have the
same field names. Frames come out in the pipeline's layout (BGR, BGRA, gray; uint8 or uint16)
and go back in the message's own encoding. Re-encoding keeps the message's size, ``step`` and
byte order, and every pixel the pipeline did not change keeps its original bytes. Row padding
and any bytes past the last row are written as zeros: they are not part of the image, so nothing
anonymizes them, and a driver may leave pixels there (an ROI published as a view into the
sensor's buffer, its step the full row's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ciagan_core.errors import InputError


class UnsupportedEncodingError(InputError):
    """An image encoding or compressed format this codec does not handle."""


@dataclass(frozen=True)
class _Layout:
    dtype: type
    channels: int
    #: How the message's pixels become the pipeline's (and back): None (as is), a colour
    #: conversion pair, or "yuv" for packed 4:2:2.
    to_frame: int | None = None
    from_frame: int | None = None
    yuv: str = ""
    #: A Bayer mosaic: the colours (BGR channel index) at (0,0), (0,1), (1,0), (1,1).
    bayer: tuple[int, int, int, int] | None = None
    #: Semi-planar 4:2:0 ("nv12": U then V; "nv21": V then U): a full-size Y plane, then
    #: half-height rows of interleaved chroma; ``step`` is the bytes of one row of either.
    semiplanar: str = ""


_UYVY = _Layout(np.uint8, 2, yuv="uyvy")
_YUYV = _Layout(np.uint8, 2, yuv="yuyv")
_B, _G, _R = 0, 1, 2
#: OpenCV names a Bayer pattern by the second row's second and third pixel, so ROS's rggb is
#: OpenCV's BayerBG (the mapping cv_bridge uses).
_BAYER = {
    "rggb": ((_R, _G, _G, _B), cv2.COLOR_BayerBG2BGR),
    "bggr": ((_B, _G, _G, _R), cv2.COLOR_BayerRG2BGR),
    "gbrg": ((_G, _B, _R, _G), cv2.COLOR_BayerGR2BGR),
    "grbg": ((_G, _R, _B, _G), cv2.COLOR_BayerGB2BGR),
}

#: Encodings and their layouts; sensor_msgs' "yuv422" is UYVY, "yuv422_yuy2" is YUYV.
LAYOUTS: dict[str, _Layout] = {
    "bgr8": _Layout(np.uint8, 3),
    "8UC3": _Layout(np.uint8, 3),
    "rgb8": _Layout(np.uint8, 3, cv2.COLOR_RGB2BGR, cv2.COLOR_BGR2RGB),
    "bgra8": _Layout(np.uint8, 4),
    "8UC4": _Layout(np.uint8, 4),
    "rgba8": _Layout(np.uint8, 4, cv2.COLOR_RGBA2BGRA, cv2.COLOR_BGRA2RGBA),
    "mono8": _Layout(np.uint8, 1),
    "8UC1": _Layout(np.uint8, 1),
    "mono16": _Layout(np.uint16, 1),
    "16UC1": _Layout(np.uint16, 1),
    "yuv422": _UYVY,
    "uyvy": _UYVY,
    "yuv422_yuy2": _YUYV,
    "yuyv": _YUYV,
    "nv12": _Layout(np.uint8, 1, semiplanar="nv12"),
    "nv21": _Layout(np.uint8, 1, semiplanar="nv21"),
    **{
        f"bayer_{name}{bits}": _Layout(dtype, 1, to_frame=code, bayer=colours)
        for name, (colours, code) in _BAYER.items()
        for bits, dtype in ((8, np.uint8), (16, np.uint16))
    },
}
ENCODINGS = tuple(LAYOUTS)


def _layout(encoding: str) -> _Layout:
    try:
        return LAYOUTS[encoding]
    except KeyError:
        raise UnsupportedEncodingError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(ENCODINGS)}"
        ) from None


def _buffer(data: Any) -> np.ndarray:
    """A message's ``data`` (bytes, array.array, list or numpy array) as flat uint8."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).astype(np.uint8, copy=False)
    if isinstance(data, list):
        return np.asarray(data, dtype=np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def _bigendian(msg: Any) -> bool:
    """The message's byte order; Foxglove's RawImage has no ``is_bigendian`` field and is
    little-endian."""
    return bool(getattr(msg, "is_bigendian", 0))


def _wire_dtype(layout: _Layout, bigendian: bool) -> np.dtype:
    dtype = np.dtype(layout.dtype)
    return dtype.newbyteorder(">" if bigendian else "<") if dtype.itemsize > 1 else dtype


def _data_rows(msg: Any, layout: _Layout) -> int:
    """Rows of ``step`` bytes in the data: the height, and half as many again for the chroma
    of a semi-planar image."""
    height = int(msg.height)
    return height + height // 2 if layout.semiplanar else height


def _row_bytes(msg: Any, layout: _Layout, data: np.ndarray) -> int:
    """The pixel bytes per row; InputError when the size fields and the data disagree."""
    height, width, step = _data_rows(msg, layout), int(msg.width), int(msg.step)
    row_bytes = width * layout.channels * np.dtype(layout.dtype).itemsize
    if height <= 0 or width <= 0:
        raise InputError(f"empty image ({width}x{height})")
    if (layout.semiplanar or layout.bayer) and (int(msg.width) % 2 or int(msg.height) % 2):
        raise InputError(
            f"{msg.encoding} image of {width}x{msg.height}: needs an even width and height"
        )
    needed = step * (height - 1) + row_bytes
    if step < row_bytes or data.size < needed:
        raise InputError(
            f"{msg.encoding} image of {width}x{height} needs step >= {row_bytes} and {needed} "
            f"bytes of data; got step {step} and {data.size} bytes (truncated?)"
        )
    return row_bytes


def _rows(msg: Any, layout: _Layout) -> tuple[np.ndarray, int]:
    """The message's data as [rows, step] (a copy) and the pixel bytes per row. A semi-planar
    image has its chroma rows after the ``height`` rows of its Y plane."""
    height, step = _data_rows(msg, layout), int(msg.step)
    data = _buffer(msg.data)
    row_bytes = _row_bytes(msg, layout, data)
    padded = np.zeros(step * height, np.uint8)  # the last row may come without its padding
    padded[: min(data.size, padded.size)] = data[: padded.size]
    return padded.reshape(height, step), row_bytes


def _pixels(msg: Any, layout: _Layout) -> np.ndarray:
    """The message's pixels [H, W(, C)] in its own channel order, native byte order (a
    semi-planar image: its Y rows, then its chroma rows, [1.5 H, W])."""
    rows, row_bytes = _rows(msg, layout)
    wire = np.ascontiguousarray(rows[:, :row_bytes]).view(_wire_dtype(layout, _bigendian(msg)))
    pixels = wire.astype(layout.dtype)
    shape = (rows.shape[0], int(msg.width), layout.channels)
    return pixels.reshape(shape[:2] if layout.channels == 1 else shape)


def image_to_frame(msg: Any) -> np.ndarray:
    """A sensor_msgs/Image (rclpy or rosbags) as a pipeline frame: BGR, BGRA or gray."""
    layout = _layout(str(msg.encoding))
    if layout.yuv and int(msg.width) % 2:
        raise InputError(f"{msg.encoding} image of odd width {msg.width}: 4:2:2 needs pairs")
    pixels = _pixels(msg, layout)
    if layout.yuv:
        code = cv2.COLOR_YUV2BGR_UYVY if layout.yuv == "uyvy" else cv2.COLOR_YUV2BGR_YUYV
        return cv2.cvtColor(pixels, code)
    if layout.semiplanar:
        code = cv2.COLOR_YUV2BGR_NV12 if layout.semiplanar == "nv12" else cv2.COLOR_YUV2BGR_NV21
        return cv2.cvtColor(pixels, code)
    if layout.to_frame is not None:
        return cv2.cvtColor(pixels, layout.to_frame)
    return pixels


def _bgr_to_yuv422(frame: np.ndarray, kind: str) -> np.ndarray:
    """BGR -> packed 4:2:2 (BT.601, as OpenCV's YUV2BGR_UYVY/YUYV reads it), [H, W, 2]."""
    yuv = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV).astype(np.float32)
    y = yuv[:, :, 0]
    u = (yuv[:, 0::2, 1] + yuv[:, 1::2, 1]) / 2  # chroma shared by each pixel pair
    v = (yuv[:, 0::2, 2] + yuv[:, 1::2, 2]) / 2
    packed = np.empty((frame.shape[0], frame.shape[1], 2), np.float32)
    packed[:, :, 1 if kind == "uyvy" else 0] = y
    chroma = packed[:, :, 0 if kind == "uyvy" else 1]
    chroma[:, 0::2], chroma[:, 1::2] = u, v
    return np.clip(np.rint(packed), 0, 255).astype(np.uint8)


def _mosaic(frame: np.ndarray, colours: tuple[int, int, int, int]) -> np.ndarray:
    """A BGR frame as a Bayer mosaic: each pixel keeps its own colour channel."""
    mosaic = np.empty(frame.shape[:2], frame.dtype)
    for (dy, dx), colour in zip(((0, 0), (0, 1), (1, 0), (1, 1)), colours, strict=True):
        mosaic[dy::2, dx::2] = frame[dy::2, dx::2, colour]
    return mosaic


def _bgr_to_semiplanar(frame: np.ndarray, kind: str) -> np.ndarray:
    """BGR -> NV12/NV21 [1.5 H, W]: the Y plane, then rows of interleaved half-size chroma."""
    height, width = frame.shape[:2]
    i420 = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)  # Y, then the U plane, then V
    quarter = (height // 2) * (width // 2)
    u = i420[height:].reshape(-1)[:quarter].reshape(height // 2, width // 2)
    v = i420[height:].reshape(-1)[quarter:].reshape(height // 2, width // 2)
    chroma = np.empty((height // 2, width), np.uint8)
    chroma[:, 0::2], chroma[:, 1::2] = (u, v) if kind == "nv12" else (v, u)
    return np.concatenate([i420[:height], chroma])


def _keep_unchanged(
    pixels: np.ndarray, frame: np.ndarray, original: np.ndarray, layout: _Layout, like: Any
) -> np.ndarray:
    """``pixels`` with every unchanged pixel's original bytes, for the layouts whose way back
    is not exact: packed 4:2:2 and NV12/NV21 (chroma shared by neighbours) and Bayer (the
    demosaicked image's border). Every other layout gives a pixel back its own bytes."""
    same = frame == original
    unchanged = same if same.ndim == 2 else same.all(-1)
    if layout.yuv:  # a pixel pair shares its chroma: keep it only if both are unchanged
        unchanged = np.repeat(unchanged[:, 0::2] & unchanged[:, 1::2], 2, axis=1)
    elif layout.semiplanar:  # a 2x2 block shares its chroma
        block = unchanged[0::2, 0::2] & unchanged[0::2, 1::2]
        block &= unchanged[1::2, 0::2] & unchanged[1::2, 1::2]
        unchanged = np.concatenate([unchanged, np.repeat(block, 2, axis=1)])
    before = _pixels(like, layout).reshape(pixels.shape)
    return np.where(unchanged[..., None], before, pixels)


def frame_to_image_data(
    frame: np.ndarray, like: Any, original: np.ndarray | None = None
) -> np.ndarray:
    """``frame`` (pipeline layout) as the uint8 data of a message like ``like``: same encoding,
    size, step and byte order; row padding and bytes past the last row zeroed (never copied:
    they may hold raw pixels). With ``original`` (the frame ``like`` decoded to), every pixel
    equal to it keeps its original bytes."""
    layout = _layout(str(like.encoding))
    height, width = int(like.height), int(like.width)
    if frame.shape[:2] != (height, width):
        raise InputError(f"frame {frame.shape[1]}x{frame.shape[0]} != image {width}x{height}")
    if layout.yuv:
        pixels = _bgr_to_yuv422(frame, layout.yuv)
    elif layout.semiplanar:
        pixels = _bgr_to_semiplanar(frame, layout.semiplanar)
    elif layout.bayer:
        pixels = _mosaic(frame, layout.bayer)
    elif layout.from_frame is not None:
        pixels = cv2.cvtColor(frame, layout.from_frame)
    else:
        pixels = frame
    rows_out = _data_rows(like, layout)
    pixels = np.asarray(pixels, dtype=layout.dtype).reshape(rows_out, width, layout.channels)
    if original is not None and (layout.yuv or layout.semiplanar or layout.bayer):
        pixels = _keep_unchanged(pixels, frame, original, layout, like)
    wire = pixels.astype(_wire_dtype(layout, _bigendian(like)), copy=False)
    source = _buffer(like.data)
    row_bytes, step = _row_bytes(like, layout, source), int(like.step)
    data = np.zeros(source.size, np.uint8)  # same length; padding and any tail stay zero
    height = rows_out
    if step == row_bytes:
        data[: height * row_bytes] = wire.reshape(-1).view(np.uint8)
    else:
        rows = np.zeros(step * height, np.uint8)
        rows = rows.reshape(height, step)
        rows[:, :row_bytes] = wire.view(np.uint8).reshape(height, row_bytes)
        covered = min(data.size, rows.size)
        data[:covered] = rows.reshape(-1)[:covered]
    return data


# -- CompressedImage ---------------------------------------------------------------------------


def compression(format_string: str) -> str:
    """``jpeg`` or ``png`` for an image_transport format string ("jpeg", "png", or
    "<encoding>; <jpeg|png> compressed <encoding>"); anything else, compressedDepth (a depth
    image, not a camera image) included, is refused."""
    text = format_string.strip().lower()
    if "compresseddepth" in text:
        raise UnsupportedEncodingError(
            f"unsupported compressed format {format_string!r}: compressedDepth is a depth "
            "image, not a camera image"
        )
    if text in ("jpeg", "jpg") or "jpeg compressed" in text:
        return "jpeg"
    if text == "png" or "png compressed" in text:
        return "png"
    raise UnsupportedEncodingError(
        f"unsupported compressed format {format_string!r}; expected jpeg or png "
        "(image_transport's compressed formats)"
    )


def compressed_to_frame(msg: Any) -> np.ndarray:
    """A sensor_msgs/CompressedImage as a pipeline frame (BGR, gray, or 16-bit gray PNG)."""
    compression(str(msg.format))
    data = _buffer(msg.data)
    frame = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if frame is None:
        raise InputError(f"cannot decode {msg.format!r} image of {data.size} bytes (corrupt?)")
    return frame


def frame_to_compressed_data(
    frame: np.ndarray, format_string: str, jpeg_quality: int = 95
) -> np.ndarray:
    """``frame`` compressed in the format ``format_string`` names (JPEG at ``jpeg_quality``)."""
    kind = compression(format_string)
    if kind == "jpeg":
        ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    else:
        ok, encoded = cv2.imencode(".png", frame)
    if not ok:
        raise InputError(f"cannot encode a {frame.dtype} {frame.shape} frame as {kind}")
    return encoded.reshape(-1)


def message_to_frame(msg: Any) -> np.ndarray:
    """An Image or a CompressedImage (the one with a ``format`` field) as a pipeline frame."""
    return compressed_to_frame(msg) if hasattr(msg, "format") else image_to_frame(msg)

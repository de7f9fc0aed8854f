"""The model file: the one generator format every engine, the node and the bag tool load.

A safetensors file holding the *folded* generator (spectral norm divided into plain conv weights,
float32) plus string metadata:

- ``format``: ``ciagan-generator``; ``format_version``: ``1`` (float32 weights) or ``2``
  (float16 storage, ``storage: float16``)
- ``num_identities``, ``image_size``
- ``provenance``: JSON (where the weights came from, tool and version, time, and
  ``landmarker``: the landmarker that drew the training data's landmarks)
- ``weights_sha256``: hash of the tensors (names, dtypes, shapes, bytes) in key order, checked on
  every load so a damaged file is refused instead of generating garbage.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ciagan_core import __version__
from ciagan_core.atomic_write import atomic_path, check_output_name
from ciagan_core.errors import InputError, ModelFileError
from ciagan_core.models.folding import fold_spectral_norm
from ciagan_core.models.generator import IMAGE_SIZE, Generator

FORMAT = "ciagan-generator"
#: The newest format this code reads: 1 (float32 weights) or 2 (float16 storage).
FORMAT_VERSION = 2
_IDENTITY_KEY = "encode_one_hot.0.weight"


@dataclass(frozen=True)
class ModelInfo:
    """What a model file says about itself."""

    path: Path
    num_identities: int
    image_size: int
    format_version: int
    weights_sha256: str
    parameter_count: int
    provenance: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """Human-readable multi-line summary (used by ``ciagan model info``)."""
        prov = ", ".join(f"{k}={v}" for k, v in sorted(self.provenance.items()))
        return "\n".join(
            [
                f"file:        {self.path}",
                f"format:      {FORMAT} v{self.format_version}",
                f"identities:  {self.num_identities}",
                f"image size:  {self.image_size} px",
                f"parameters:  {self.parameter_count:,}",
                f"provenance:  {prov or 'unknown'}",
                f"sha256:      {self.weights_sha256}",
            ]
        )


@dataclass(frozen=True)
class LoadedModel:
    """A verified model file: its metadata and folded float32 weights."""

    info: ModelInfo
    state_dict: dict[str, torch.Tensor]

    def build_generator(self, device: str | torch.device = "cpu") -> Generator:
        """The folded inference generator on ``device``, in eval mode, without gradients."""
        net = Generator(self.info.num_identities, spectral_norm=False)
        net.load_state_dict(self.state_dict)
        net.eval().requires_grad_(False)
        return net.to(device)


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file or folder: equal once resolved, or (both existing) the
    same inode: a symbolic link to it, a hard link of it, a bind mount."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist: not the same
        return False


def check_output_apart(output: str | Path, *inputs: str | Path, what: str = "input") -> None:
    """Refuse (InputError) to write ``output`` where it would replace one of ``inputs``: the
    same file, a link to it (symbolic or hard), or a file inside an input folder; or where no
    file can be written (check_output_file). Every command that writes a file beside what it
    reads checks its outputs with this first, before the work."""
    output = Path(output)
    check_output_file(output)
    for source in map(Path, inputs):
        inside = source.is_dir() and source.resolve() in output.resolve().parents
        if same_file(output, source) or inside:
            raise InputError(
                f"{output}: would overwrite the {what} {source}; choose another output"
            )


def check_output_file(output: str | Path) -> None:
    """Refuse (one-line InputError) a file name that no file can be written to, before the
    work rather than in a traceback after it: an existing folder ('.' included: a file is
    renamed onto the name at the end), something else that is not a regular file (a FIFO, a
    device: it would be replaced), or a name below a file or below a folder that cannot be
    written."""
    output = Path(output)
    folder = check_output_name(output)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{output}: cannot write in {folder} (permission denied)")


def row_major(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` on the CPU with plain row-major strides, which byte views and safetensors need.

    ``.contiguous()`` is not enough: a channels-last 1x1 convolution weight (as trained on CUDA)
    counts as contiguous, because its size-1 dimensions make any stride valid, yet keeps a last
    stride other than 1.
    """
    return tensor.detach().cpu().clone(memory_format=torch.contiguous_format)


def weights_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """Hash of tensor names, dtypes, shapes and bytes, independent of file layout."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = row_major(state[key])
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def expected_shapes(num_identities: int, spectral_norm: bool) -> dict[str, tuple[int, ...]]:
    """Every state_dict key of the generator with its shape, without allocating weights."""
    with torch.device("meta"):
        net = Generator(num_identities, spectral_norm=spectral_norm)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def check_state_dict(state: Mapping[str, torch.Tensor], spectral_norm: bool, source: Path) -> int:
    """Validate keys, shapes and values against the generator; return its identity count."""
    if _IDENTITY_KEY not in state:
        raise ModelFileError(
            f"{source}: not a CIAGAN generator (no {_IDENTITY_KEY!r}; "
            f"found keys like {', '.join(sorted(state)[:3]) or 'none'})"
        )
    num_identities = int(state[_IDENTITY_KEY].shape[-1])
    if num_identities < 2:
        raise ModelFileError(f"{source}: {num_identities} identities; a generator needs >= 2")
    expected = expected_shapes(num_identities, spectral_norm)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        raise ModelFileError(f"{source}: not a CIAGAN generator: {'; '.join(parts)}")
    for key, shape in expected.items():
        actual = tuple(state[key].shape)
        if actual != shape:
            raise ModelFileError(
                f"{source}: tensor {key} has shape {list(actual)}, the CIAGAN generator with "
                f"{num_identities} identities expects {list(shape)}"
            )
        if not state[key].dtype.is_floating_point:
            raise ModelFileError(f"{source}: tensor {key} has dtype {state[key].dtype}")
        if not bool(torch.isfinite(state[key]).all()):
            raise ModelFileError(f"{source}: tensor {key} contains NaN or infinite values")
    return num_identities


def save_model_file(
    path: str | Path,
    folded_state: Mapping[str, torch.Tensor],
    provenance: Mapping[str, Any],
    half: bool = False,
) -> ModelInfo:
    """Write a model file atomically: on any failure nothing appears at ``path``.

    ``half`` stores the weights in float16 (half the size; every engine computes in float32
    or its own precision after loading). Such files have format version 2, which readers
    older than it refuse with "upgrade" instead of misreading.
    """
    from safetensors.torch import save_file

    path = Path(path)
    dtype = torch.float16 if half else torch.float32
    state = {k: row_major(v.detach().to(dtype)) for k, v in folded_state.items()}
    num_identities = check_state_dict(state, spectral_norm=False, source=path)
    digest = weights_sha256(state)
    metadata = {
        "format": FORMAT,
        "format_version": str(2 if half else 1),
        "storage": "float16" if half else "float32",
        "num_identities": str(num_identities),
        "image_size": str(IMAGE_SIZE),
        "provenance": json.dumps(dict(provenance), sort_keys=True),
        "weights_sha256": digest,
    }
    with atomic_path(path) as tmp:
        mode = tmp.stat().st_mode & 0o777
        save_file(state, str(tmp), metadata=metadata)
        os.chmod(tmp, mode)  # safetensors recreates the file 0600; keep the usual mode
    return _info_from_metadata(path, metadata, sum(v.numel() for v in state.values()))


def _info_from_metadata(path: Path, meta: Mapping[str, str], parameter_count: int) -> ModelInfo:
    if meta.get("format") != FORMAT:
        raise ModelFileError(
            f"{path}: not a ciagan model file (format {meta.get('format')!r}); convert a "
            "published checkpoint with 'ciagan model import-official'"
        )
    try:
        version = int(meta["format_version"])
        info = ModelInfo(
            path=path,
            num_identities=int(meta["num_identities"]),
            image_size=int(meta["image_size"]),
            format_version=version,
            weights_sha256=meta["weights_sha256"],
            parameter_count=parameter_count,
            provenance=json.loads(meta.get("provenance", "{}")),
        )
    except (KeyError, ValueError) as exc:
        raise ModelFileError(f"{path}: model file metadata is damaged ({exc})") from None
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model format version {version} is newer than this ciagan "
            f"({FORMAT_VERSION}); upgrade ciagan_ros"
        )
    return info


def _open_checked(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    from safetensors import safe_open

    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises several types for truncated/corrupt files
        raise ModelFileError(
            f"{path}: not a readable safetensors model file (truncated or corrupt: {exc})"
        ) from None
    return meta, tensors


def model_landmarker(path: str | Path | None) -> str | None:
    """The landmarker a model file (or its ONNX export) was trained with, if it says; cheap
    (metadata only), and None for anything unreadable (loading it reports that properly)."""
    if not path:
        return None
    path = Path(path)
    try:
        if path.suffix == ".onnx":
            import onnx

            proto = onnx.load(str(path), load_external_data=False)
            return {p.key: p.value for p in proto.metadata_props}.get("landmarker") or None
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
        provenance = json.loads(meta.get("provenance", "{}"))
        if provenance.get("source") == "official-checkpoint":
            # Imported before model files said so: the authors' data was made with dlib.
            return provenance.get("landmarker") or "dlib"
        return provenance.get("landmarker") or None
    except Exception:  # only a hint; loading the model reports a damaged file
        return None


def read_model_info(path: str | Path) -> ModelInfo:
    """Metadata of a model file, after verifying its weights."""
    return load_model_file(path).info


def load_model_file(path: str | Path) -> LoadedModel:
    """Load and verify a model file (format, architecture, shapes, weights hash)."""
    path = Path(path)
    meta, state = _open_checked(path)
    info = _info_from_metadata(path, meta, sum(v.numel() for v in state.values()))
    num_identities = check_state_dict(state, spectral_norm=False, source=path)
    if num_identities != info.num_identities:
        raise ModelFileError(
            f"{path}: metadata says {info.num_identities} identities but the weights have "
            f"{num_identities}"
        )
    if info.image_size != IMAGE_SIZE:
        raise ModelFileError(
            f"{path}: image size {info.image_size} px; only {IMAGE_SIZE} is supported"
        )
    digest = weights_sha256(state)
    if digest != info.weights_sha256:
        raise ModelFileError(
            f"{path}: weights do not match their recorded sha256 (file damaged or edited)"
        )
    return LoadedModel(info=info, state_dict={k: v.float() for k, v in state.items()})


def load_official_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a published CIAGAN generator ``.pth`` (a plain state_dict) safely."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ModelFileError(
            f"{path}: not a readable PyTorch checkpoint (truncated, corrupt or not a weights-only "
            f"file: {first_line})"
        ) from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelFileError(f"{path}: expected a state_dict of tensors, got {type(obj).__name__}")
    # Checkpoints saved from nn.DataParallel prefix every key with "module.".
    return {k.removeprefix("module."): v for k, v in obj.items()}


def import_official(
    checkpoint: str | Path, output: str | Path, expected_identities: int | None = None
) -> ModelInfo:
    """Convert a published generator checkpoint into a model file (``model import-official``)."""
    checkpoint, output = Path(checkpoint), Path(output)
    check_output_apart(output, checkpoint, what="checkpoint")
    state = load_official_checkpoint(checkpoint)
    num_identities = check_state_dict(state, spectral_norm=True, source=checkpoint)
    if expected_identities is not None and num_identities != expected_identities:
        raise ModelFileError(
            f"{checkpoint}: the generator has {num_identities} identities but "
            f"{expected_identities} were expected"
        )
    provenance = {
        "source": "official-checkpoint",
        # The authors prepared CelebA with dlib's 68-point predictor (REFERENCE §3).
        "landmarker": "dlib",
        "source_file": checkpoint.name,
        "source_sha256": file_sha256(checkpoint),
        "tool": f"ciagan_core {__version__}",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return save_model_file(output, fold_spectral_norm(state), provenance)

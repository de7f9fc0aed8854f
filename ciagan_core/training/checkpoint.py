"""Training checkpoints: a full one (exact resume) and a compact one (travels in 16 MiB files).

Full: ``checkpoint.pt`` (torch), every weight, buffer and optimizer state in float32, the step,
the random number generators' states: resuming from it continues exactly as if never stopped.

Compact: a folder with ``manifest.json`` and ``part-NNN.bin`` files of at most
``part_mib`` MiB: one safetensors blob, split. Network weights are stored in half precision
(bfloat16 where float16 would lose range, i.e. the optimizer's second moments), optimizer
states only as asked (none, the generator's, all). Resuming from it continues from the same
step and random state with the weights rounded to half precision; without optimizer states
Adam starts its moments afresh. The manifest holds the sha256 of every part and of the blob, so
a missing or damaged part is refused with the part's name.

Both are written atomically: a folder or file appears complete or not at all.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from ciagan_core.atomic_write import atomic_path
from ciagan_core.errors import ModelFileError

COMPACT_FORMAT = "ciagan-train-compact"
COMPACT_VERSION = 1
NETWORKS = ("generator", "critic", "identity")


#: Optimizer settings that say how this process computes, not what was learnt: a checkpoint
#: from another device or version keeps the live optimizer's (Adam is fused on CUDA only).
IMPLEMENTATION_KEYS = ("foreach", "fused", "capturable", "differentiable")


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """``optimizer.load_state_dict(state)``, keeping the live implementation settings."""
    live = optimizer.state_dict()["param_groups"]
    groups = [
        {**saved, **{k: group[k] for k in IMPLEMENTATION_KEYS if k in group}}
        for saved, group in zip(state["param_groups"], live, strict=True)
    ]
    optimizer.load_state_dict({**state, "param_groups": groups})


def _to_half(tensor: torch.Tensor, moment: bool) -> torch.Tensor:
    if not tensor.is_floating_point():
        return tensor.contiguous()
    # Adam's second moments reach 1e-12 and below: float16 would flush them to zero.
    return tensor.to(torch.bfloat16 if moment else torch.float16).contiguous()


def save_full(path: Path, state: dict[str, Any]) -> None:
    """Write the full training state atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_full(path: Path) -> dict[str, Any]:
    """A full checkpoint, loaded without running code (``weights_only``: tensors and plain
    Python values only)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged or foreign files
        raise ModelFileError(f"{path}: not a readable training checkpoint ({exc})") from None
    if (
        not isinstance(state, dict)
        or not isinstance(state.get("meta"), dict)
        or not isinstance(state.get("networks"), dict)
        or not isinstance(state.get("optimizers"), dict)
    ):
        raise ModelFileError(f"{path}: not a ciagan training checkpoint")
    return state


def meta_sha256(manifest: dict[str, Any]) -> str:
    """sha256 of a manifest's content without its own hash (so an edit is noticed)."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _flatten_optimizer(prefix: str, state: dict) -> dict[str, torch.Tensor]:
    out = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                out[f"{prefix}.{index}.{key}"] = (
                    _to_half(value, moment=True)
                    if key.startswith("exp_avg")
                    else value.contiguous()
                )
    return out


def save_compact(
    folder: Path,
    networks: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    keep_optimizers: str,
    meta: dict[str, Any],
    part_mib: int = 16,
) -> list[Path]:
    """Write the compact checkpoint folder atomically; returns its files."""
    tensors: dict[str, torch.Tensor] = {}
    for name, net in networks.items():
        for key, value in net.state_dict().items():
            tensors[f"{name}/{key}"] = _to_half(value.detach().cpu(), moment=False)
    kept = {"none": (), "generator": ("generator",), "all": tuple(optimizers)}[keep_optimizers]
    kept = tuple(name for name in kept if name in networks)  # no state without its weights
    optimizer_groups = {}
    for name in kept:
        state = optimizers[name].state_dict()
        tensors.update(_flatten_optimizer(f"optim/{name}", state))
        # Scalars (step counts) and hyper-parameters go to the manifest.
        optimizer_groups[name] = {
            "param_groups": state["param_groups"],
            "steps": {str(i): float(v["step"]) for i, v in state["state"].items() if "step" in v},
        }
    return _write_compact(folder, tensors, optimizer_groups, list(networks), meta, part_mib)


def _write_compact(
    folder: Path,
    tensors: dict[str, torch.Tensor],
    optimizer_groups: dict[str, Any],
    networks: list[str],
    meta: dict[str, Any],
    part_mib: int,
) -> list[Path]:
    """Write tensors as a compact checkpoint folder (parts of ``part_mib`` MiB), atomically."""
    from safetensors.torch import save

    blob = save({k: v.cpu() for k, v in tensors.items()})
    part = part_mib * 1024 * 1024
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        parts = []
        for number, start in enumerate(range(0, len(blob), part)):
            chunk = blob[start : start + part]
            name = f"part-{number:03d}.bin"
            (tmp / name).write_bytes(chunk)
            parts.append(
                {"file": name, "bytes": len(chunk), "sha256": hashlib.sha256(chunk).hexdigest()}
            )
        manifest = {
            "format": COMPACT_FORMAT,
            "format_version": COMPACT_VERSION,
            "parts": parts,
            "sha256": hashlib.sha256(blob).hexdigest(),
            "optimizers": optimizer_groups,
            "networks": networks,
            **meta,
        }
        manifest["manifest_sha256"] = meta_sha256(manifest)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        os.chmod(tmp, 0o755)
        old = folder.with_name(f".{folder.name}.old")
        if folder.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [folder / p["file"] for p in parts] + [folder / "manifest.json"]


def read_compact(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The manifest and tensors of a compact checkpoint, verified part by part."""
    from safetensors.torch import load

    if not folder.is_dir():
        old = folder.with_name(f".{folder.name}.old")
        if old.is_dir():  # a save was interrupted between its two renames
            folder = old
        else:
            raise ModelFileError(f"{folder}: no compact checkpoint here")
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{folder}/manifest.json: unreadable ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != COMPACT_FORMAT:
        raise ModelFileError(f"{folder}: not a ciagan compact checkpoint")
    if manifest.get("format_version") != COMPACT_VERSION:
        raise ModelFileError(
            f"{folder}: compact checkpoint version {manifest.get('format_version')!r}; this "
            f"ciagan reads version {COMPACT_VERSION}"
        )
    if manifest.get("manifest_sha256") != meta_sha256(manifest):
        raise ModelFileError(f"{folder}/manifest.json: edited or damaged (its sha256 differs)")
    chunks = []
    for part in manifest["parts"]:
        path = folder / part["file"]
        try:
            data = path.read_bytes()
        except OSError:
            raise ModelFileError(f"{path}: part missing from the compact checkpoint") from None
        if hashlib.sha256(data).hexdigest() != part["sha256"]:
            raise ModelFileError(f"{path}: damaged (sha256 differs from the manifest)")
        chunks.append(data)
    blob = b"".join(chunks)
    if hashlib.sha256(blob).hexdigest() != manifest["sha256"]:
        raise ModelFileError(f"{folder}: parts do not add up to the checkpoint")
    return manifest, load(blob)


def subset_compact(source: Path, target: Path, networks: list[str]) -> list[Path]:
    """Copy of a compact checkpoint holding only ``networks`` (and their optimizer states):
    a smaller folder to carry to the GPU machine. Resuming from it starts the others afresh.

    ``target`` is a new folder, or a compact checkpoint it replaces (``source`` itself
    included: it is read whole first); any other existing path is refused, untouched.
    """
    source, target = Path(source), Path(target)
    names = list(dict.fromkeys(n.strip() for n in networks))
    if not names or "" in names:
        raise ModelFileError(f"name the networks to keep from {source} (got {networks!r})")
    if target.exists() and not is_compact_folder(target):
        raise ModelFileError(
            f"{target}: exists and is not a compact checkpoint; choose a new folder"
        )
    manifest, tensors = read_compact(source)
    held = manifest.get("networks")
    if not isinstance(held, list):
        raise ModelFileError(f"{source}/manifest.json: does not say which networks it holds")
    unknown = [n for n in names if n not in held]
    if unknown:
        raise ModelFileError(
            f"{source}: holds {', '.join(held) or 'no network'}; cannot keep {', '.join(unknown)}"
        )
    kept = {k: v for k, v in tensors.items() if k.split("/", 1)[0] in names}
    kept |= {
        k: v
        for k, v in tensors.items()
        if k.startswith("optim/") and k.split("/", 1)[1].split(".", 1)[0] in names
    }
    groups = {k: v for k, v in manifest.get("optimizers", {}).items() if k in names}
    skip = {"format", "format_version", "parts", "sha256", "optimizers", "networks"}
    meta = {k: v for k, v in manifest.items() if k not in skip | {"manifest_sha256"}}
    part_mib = max(1, int(manifest.get("config", {}).get("compact_part_mib", 16)))
    return _write_compact(target, kept, groups, names, meta, part_mib)


def is_compact_folder(path: Path) -> bool:
    """Whether ``path`` holds a compact checkpoint's manifest (its parts are not checked)."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == COMPACT_FORMAT


def restore_compact(
    manifest: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    networks: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
) -> None:
    """Load a compact checkpoint's weights (and kept optimizer states) into live objects;
    networks the checkpoint does not hold keep their fresh weights."""
    for name, net in networks.items():
        if name not in manifest.get("networks", NETWORKS):
            continue
        own = net.state_dict()
        state = {
            key: tensors[f"{name}/{key}"].to(own[key].dtype)
            for key in own
            if f"{name}/{key}" in tensors
        }
        missing = sorted(set(own) - set(state))
        if missing:
            raise ModelFileError(
                f"compact checkpoint lacks {name} weights {', '.join(missing[:3])}; was it made "
                "with another number of identities?"
            )
        for key, value in state.items():
            if value.shape != own[key].shape:
                raise ModelFileError(
                    f"compact checkpoint's {name}/{key} is {tuple(value.shape)}, the network "
                    f"needs {tuple(own[key].shape)} (another number of identities?)"
                )
        net.load_state_dict(state)
    for name, saved in manifest.get("optimizers", {}).items():
        optimizer = optimizers[name]
        live = optimizer.state_dict()
        state: dict[int, dict[str, torch.Tensor]] = {}
        prefix = f"optim/{name}."
        for key, value in tensors.items():
            if key.startswith(prefix):
                index, field = key[len(prefix) :].split(".", 1)
                state.setdefault(int(index), {})[field] = value.float()
        for index, step in saved["steps"].items():
            state.setdefault(int(index), {})["step"] = torch.tensor(step)
        live["state"] = state
        live["param_groups"] = [
            {**group, "params": live_group["params"]}
            for group, live_group in zip(saved["param_groups"], live["param_groups"], strict=True)
        ]
        load_optimizer_state(optimizer, live)


def encode_bytes(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_bytes(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"))

"""``ciagan train``: CIAGAN's training loop (REFERENCE §4) with checkpoints, logs and a deadline.

Per step, on one batch: ``identity_updates`` siamese updates (contrastive loss on real pairs,
half the same person), ``critic_updates`` critic updates (LSGAN: real 1, generated 0, the
critic sees the image with its landmark drawing), ``generator_updates`` generator updates
(LSGAN towards 1 plus the contrastive "same" loss between the generated face and a real photo
of the target identity). Adam for all three.

A run folder holds::

    config.yaml            the settings used (and their hash in train.json)
    checkpoint.pt          full state, exact resume
    compact/               compact state in <= 16 MiB files (``checkpoint.py``)
    losses.csv             step, seconds, samples/s, every loss (and eval rows' figures)
    samples/step_NNNNNN.png
    model.safetensors      the generator as a model file, with provenance (at the end)
    train.json             summary: steps, time, device, data, why it stopped
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import logging
import random
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import yaml
from torch.nn import functional as F

from ciagan_core import __version__
from ciagan_core.atomic_write import write_bytes_atomic
from ciagan_core.errors import CiaganError, ConfigError, InputError, ModelFileError
from ciagan_core.model_file import ModelInfo, save_model_file
from ciagan_core.models.discriminator import Discriminator
from ciagan_core.models.folding import fold_spectral_norm
from ciagan_core.models.generator import Generator, xavier_init_
from ciagan_core.models.identity import IdentityNet
from ciagan_core.training import checkpoint as ckpt
from ciagan_core.training.checkpoint import NETWORKS
from ciagan_core.training.config import TrainConfig
from ciagan_core.training.data import Batch, TrainingSet

log = logging.getLogger(__name__)

LOSS_COLUMNS = ("loss_identity", "loss_critic", "loss_generator_adv", "loss_generator_identity")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but torch sees no CUDA device")
    return torch.device(name)


def contrastive(a: torch.Tensor, b: torch.Tensor, same: torch.Tensor, margin: float):
    """Hadsell et al.: same pairs pulled together, others pushed beyond ``margin``."""
    distance = F.pairwise_distance(a.float(), b.float())
    return (same * distance.pow(2) + (1 - same) * F.relu(margin - distance).pow(2)).mean()


@dataclass
class StopReason:
    text: str = "finished"


class Trainer:
    """Networks, optimizers, data and the step counter of one training run."""

    def __init__(self, config: TrainConfig, data: str | Path, out: str | Path):
        config.validate()
        self.config = config
        self.out = Path(out)
        self.data_folder = Path(data)
        self.device = resolve_device(config.device)
        self.precision = self._precision()
        _seed_everything(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.data = TrainingSet(data, "train", self.device, config.workers)
        self.prepared = _prepared_info(self.data_folder)
        count = self.data.num_identities
        self.generator = Generator(count, spectral_norm=True)
        xavier_init_(self.generator)
        self.critic = Discriminator(6)
        self.identity_net = IdentityNet(config.embedding_size or count)
        self.networks = {
            "generator": self.generator,
            "critic": self.critic,
            "identity": self.identity_net,
        }
        channels_last = config.channels_last and self.device.type == "cuda"
        if self.device.type == "cuda":
            # Every batch has the same shape, so cuDNN's per-shape search pays for itself at once.
            torch.backends.cudnn.benchmark = True
        for net in self.networks.values():
            net.to(self.device)
            if channels_last:
                net.to(memory_format=torch.channels_last)
        self.channels_last = channels_last
        # A step runs about 16,000 operator calls (profiled on the CPU), many of them small: on
        # an H200 it took 0.36 s at batch 16, far more than its arithmetic needs. The fused
        # Adam updates each network in a few kernels instead of several per parameter tensor.
        fused = {"fused": True} if self.device.type == "cuda" else {}
        self.optimizers = {
            name: torch.optim.Adam(
                net.parameters(), lr=config.lr, betas=tuple(config.betas), **fused
            )
            for name, net in self.networks.items()
        }
        self.step = 0
        self.seconds = 0.0

    # -- set-up -------------------------------------------------------------------------------

    def _precision(self) -> str:
        wanted = self.config.precision
        if wanted == "auto":
            if self.device.type == "cuda" and torch.cuda.is_bf16_supported():
                return "bf16"
            return "fp32"
        if wanted == "bf16" and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("precision bf16 asked for, but this GPU does not support bfloat16")
        return wanted

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    # -- one step -----------------------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        """One step: identity, critic and generator updates on one batch."""
        cfg = self.config
        batch = self.data.batch(self.rng, cfg.batch_size, cfg.jitter, cfg.flip)
        g_input = self._layout(batch.generator_input())
        losses: dict[str, float] = {}

        self.identity_net.train()
        for _ in range(cfg.identity_updates):
            with self._autocast():
                loss = contrastive(
                    self.identity_net(self._layout(batch.pair_a)),
                    self.identity_net(self._layout(batch.pair_b)),
                    batch.same,
                    cfg.contrastive_margin,
                )
            self._update("identity", loss)
            losses["loss_identity"] = loss.item()

        for _ in range(cfg.critic_updates):
            with torch.no_grad(), self._autocast():
                fake = self._blend(self.generator(g_input, batch.target), batch)
            with self._autocast():
                real_score = self.critic(self._critic_input(batch.face, batch))
                fake_score = self.critic(self._critic_input(fake, batch))
                loss = 0.5 * (
                    F.mse_loss(real_score.float(), torch.ones_like(real_score, dtype=torch.float))
                    + F.mse_loss(
                        fake_score.float(), torch.zeros_like(fake_score, dtype=torch.float)
                    )
                )
            self._update("critic", loss)
            losses["loss_critic"] = loss.item()

        self.identity_net.eval()  # generated faces must not move its batch statistics
        for net in (self.critic, self.identity_net):
            net.requires_grad_(False)
        try:
            for _ in range(cfg.generator_updates):
                with self._autocast():
                    fake = self._blend(self.generator(g_input, batch.target), batch)
                    score = self.critic(self._critic_input(fake, batch))
                    adv = F.mse_loss(score.float(), torch.ones_like(score, dtype=torch.float))
                    ident = contrastive(
                        self.identity_net(self._layout(fake)),
                        self.identity_net(self._layout(batch.target_face)),
                        torch.ones(fake.shape[0], device=self.device),
                        cfg.contrastive_margin,
                    )
                    loss = adv + cfg.identity_weight * ident
                self._update("generator", loss)
                losses["loss_generator_adv"] = adv.item()
                losses["loss_generator_identity"] = ident.item()
        finally:
            for net in (self.critic, self.identity_net):
                net.requires_grad_(True)
        self.step += 1
        bad = [k for k, v in losses.items() if not np.isfinite(v)]
        if bad:
            raise FloatingPointError(
                f"step {self.step}: {', '.join(bad)} not finite; lower lr or use precision fp32"
            )
        return losses

    @staticmethod
    def _blend(output: torch.Tensor, batch: Batch) -> torch.Tensor:
        return output * batch.mask + batch.face * (1 - batch.mask)

    def _critic_input(self, image: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self._layout(torch.cat([image, batch.landmarks], dim=1))

    def _update(self, name: str, loss: torch.Tensor) -> None:
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    # -- state --------------------------------------------------------------------------------

    def _meta(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "seconds": round(self.seconds, 1),
            "config": self.config.as_dict(),
            "config_sha256": self.config.digest(),
            "identities": self.data.identities,
            "numpy_rng": self.rng.bit_generator.state,
            "torch_rng": ckpt.encode_bytes(torch.get_rng_state().numpy().tobytes()),
            "version": __version__,
            "data_sha256": self.data.digest,
            "provenance": self.provenance(),
        }

    def save_full(self) -> Path:
        path = self.out / "checkpoint.pt"
        state = {
            "meta": self._meta(),
            "networks": {k: v.state_dict() for k, v in self.networks.items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
        }
        ckpt.save_full(path, state)
        return path

    def save_compact(self) -> list[Path]:
        kept = self.config.compact_network_names()
        return ckpt.save_compact(
            self.out / "compact",
            {name: net for name, net in self.networks.items() if name in kept},
            self.optimizers,
            self.config.compact_optimizer,
            self._meta(),
            self.config.compact_part_mib,
        )

    def _check_data(self, meta: dict[str, Any], source: Path) -> None:
        """Resume only on the training photos (and landmarker) the checkpoint learnt from."""
        if meta.get("identities") != self.data.identities:
            raise ModelFileError(
                f"{source}: trained on {len(meta.get('identities') or [])} identities that "
                f"differ from the {self.data.num_identities} of {self.data_folder}; resume "
                "with the same prepared set"
            )
        landmarker = (meta.get("provenance") or {}).get("landmarker")
        if landmarker and landmarker != self.prepared.get("landmarker"):
            raise ModelFileError(
                f"{source}: trained on {landmarker} landmarks, but {self.data_folder} was "
                f"prepared with {self.prepared.get('landmarker')}; resume with the same "
                "prepared set"
            )
        if meta.get("data_sha256") not in (None, self.data.digest):
            raise ModelFileError(
                f"{source}: trained on other photos or landmarks than the training split of "
                f"{self.data_folder}; resume with the same prepared set"
            )

    def _restore_meta(self, meta: dict[str, Any], source: Path) -> None:
        try:
            step, seconds = int(meta["step"]), float(meta.get("seconds", 0.0))
            rng_state = meta["numpy_rng"]
            torch_rng = np.frombuffer(ckpt.decode_bytes(meta["torch_rng"]), np.uint8).copy()
            self.rng.bit_generator.state = rng_state
            torch.set_rng_state(torch.from_numpy(torch_rng))
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ModelFileError(f"{source}: checkpoint state is damaged ({exc!r})") from None
        if step < 0:
            raise ModelFileError(f"{source}: checkpoint state is damaged (step {step})")
        self.step, self.seconds = step, seconds
        if meta.get("config_sha256") != self.config.digest():
            log.warning("%s: resuming with settings that differ from the checkpoint's", source)
        # The settings of this run apply from here on, also those an optimizer state holds.
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"], group["betas"] = self.config.lr, tuple(self.config.betas)

    def resume(self, path: Path) -> str:
        """Continue from a full checkpoint file, a compact checkpoint folder, or a run folder
        (its checkpoint.pt, else its compact/)."""
        path = checkpoint_path(path)
        if path.is_dir() or path.name == "compact":
            manifest, tensors = ckpt.read_compact(path)
            self._check_data(manifest, path)
            try:
                ckpt.restore_compact(manifest, tensors, self.networks, self.optimizers)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ModelFileError(f"{path}: compact checkpoint is damaged ({exc!r})") from None
            self._restore_meta(manifest, path)
            kept = ", ".join(manifest.get("optimizers", {})) or "none"
            fresh = [n for n in self.networks if n not in manifest.get("networks", NETWORKS)]
            note = f"; starting afresh: {', '.join(fresh)}" if fresh else ""
            return f"compact checkpoint at step {self.step} (optimizer states kept: {kept}{note})"
        if not path.is_file():
            raise ModelFileError(f"{path}: no checkpoint there")
        state = ckpt.load_full(path)
        self._check_data(state["meta"], path)
        try:
            for name, net in self.networks.items():
                net.load_state_dict(state["networks"][name])
            for name, optimizer in self.optimizers.items():
                ckpt.load_optimizer_state(optimizer, state["optimizers"][name])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise ModelFileError(f"{path}: does not fit these networks ({exc})") from None
        self._restore_meta(state["meta"], path)
        return f"full checkpoint at step {self.step}"

    def provenance(self) -> dict[str, Any]:
        """What a model file made from this run says about it."""
        return {
            "source": "ciagan train",
            "tool": f"ciagan_core {__version__}",
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "data": self.prepared.get("source", str(self.data_folder)),
            "data_photos": len(self.data),
            "identities": self.data.identities,
            "landmarker": self.prepared.get("landmarker"),
            "detector": self.prepared.get("detector"),
            "steps": self.step,
            "batch_size": self.config.batch_size,
            "training_seconds": round(self.seconds, 1),
            "device": _device_name(self.device),
            "precision": self.precision,
            "config_sha256": self.config.digest(),
        }

    def write_model(self, path: Path | None = None, half: bool = False) -> ModelInfo:
        """The generator as the project's model file, with provenance."""
        path = path or self.out / "model.safetensors"
        state = {k: v.detach().float().cpu() for k, v in self.generator.state_dict().items()}
        return save_model_file(path, fold_spectral_norm(state), self.provenance(), half)

    # -- monitoring ---------------------------------------------------------------------------

    def sample_grid(self) -> np.ndarray:
        """Rows: probe faces; columns: real, generator input, then one output per identity."""
        cfg = self.config
        probe = self.data.probe(cfg.sample_faces)
        ids = np.linspace(0, self.data.num_identities - 1, cfg.sample_identities).round()
        columns = [probe.face, probe.face * (1 - probe.mask) + probe.landmarks * probe.mask]
        self.generator.eval()  # stored spectral-norm vectors: sampling changes no state
        try:
            with torch.no_grad():
                g_input = self._layout(probe.generator_input())
                for identity in ids.astype(int):
                    target = torch.full((len(probe.face),), identity, device=self.device)
                    out = self.generator(g_input, target).float().clamp(0, 1)
                    columns.append(self._blend(out, probe))
        finally:
            self.generator.train()
        tiles = torch.stack(columns, dim=1)  # [rows, cols, 3, H, W]
        rows, cols = tiles.shape[:2]
        grid = tiles.permute(0, 3, 1, 4, 2).reshape(rows * 128, cols * 128, 3)
        return (grid.cpu().numpy() * 255).round().astype(np.uint8)

    def write_samples(self) -> Path:
        path = self.out / "samples" / f"step_{self.step:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(self.sample_grid(), cv2.COLOR_RGB2BGR))
        return path

    def evaluate(self) -> dict[str, float]:
        """Identification and detection rates and FID of ``ciagan eval`` on held-out faces."""
        from ciagan_core.training.monitor import evaluate_generator

        with tempfile.TemporaryDirectory() as tmp:
            model = self.write_model(Path(tmp) / "model.safetensors")
            return evaluate_generator(
                model.path,
                self.data_folder,
                self.config.eval_faces,
                str(self.device),
                self.prepared.get("landmarker", "dlib"),
            )


def checkpoint_path(path: Path) -> Path:
    """The checkpoint a path means: a run folder's checkpoint.pt, else its compact/ (also
    while a save of it was interrupted); a checkpoint file or compact folder as given."""
    if path.is_dir() and not (path / "manifest.json").exists():
        if (path / "checkpoint.pt").is_file():
            return path / "checkpoint.pt"
        if (path / "compact").exists() or (path / ".compact.old").exists():
            return path / "compact"
    return path


def model_from_checkpoint(source: Path, output: Path, half: bool = False) -> ModelInfo:
    """The model file of a checkpoint's generator: a run folder, its checkpoint.pt or its
    compact folder (what a GPU run sends back)."""
    source = checkpoint_path(source)
    if source.is_dir() or source.name == "compact":
        manifest, tensors = ckpt.read_compact(source)
        weights = {
            key.removeprefix("generator/"): value.float()
            for key, value in tensors.items()
            if key.startswith("generator/")
        }
        if not weights:
            raise ModelFileError(f"{source}: the compact checkpoint holds no generator")
        meta, extra = manifest, {"checkpoint": "compact (float16 weights)"}
    else:
        state = ckpt.load_full(source)
        try:
            weights = {k: v.float() for k, v in state["networks"]["generator"].items()}
        except (KeyError, TypeError, AttributeError):
            raise ModelFileError(f"{source}: not a ciagan training checkpoint") from None
        meta, extra = state["meta"], {}
    provenance = dict(meta.get("provenance") or {"source": "ciagan train"})
    provenance.update(
        steps=meta["step"],
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    )
    return save_model_file(output, fold_spectral_norm(weights), provenance, half)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def _prepared_info(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "prepared.json").read_text())
    except (OSError, ValueError):
        return {}


class LossLog:
    """losses.csv, appended (a resumed run continues the same file), and TensorBoard."""

    def __init__(self, path: Path, columns: tuple[str, ...]):
        self.path = path
        self.columns = ("step", "seconds", "samples_per_s", *columns)
        new = not path.exists() or path.stat().st_size == 0
        self.handle = path.open("a", newline="")
        self.writer = csv.DictWriter(self.handle, self.columns, extrasaction="ignore")
        if new:
            self.writer.writeheader()
        self.board = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(str(path.parent / "tensorboard"))
        except Exception:  # TensorBoard is optional
            self.board = None

    def write(self, row: dict[str, float]) -> None:
        self.writer.writerow(row)
        self.handle.flush()
        if self.board is not None:
            for key, value in row.items():
                if key not in ("step", "seconds") and value is not None:
                    self.board.add_scalar(key, value, int(row["step"]))

    def close(self) -> None:
        self.handle.close()
        if self.board is not None:
            self.board.close()


def run_training(
    trainer: Trainer,
    time_limit: float | None = None,
    progress: Callable[[int, dict[str, float]], None] | None = None,
    started: float | None = None,
) -> dict[str, Any]:
    """Train to ``config.steps`` or until ``time_limit`` seconds (counted from ``started``, a
    ``time.monotonic()`` reading, default now; minus the save margin) have passed, or Ctrl-C /
    SIGTERM; then save everything. Returns the summary (train.json).

    A failure during training (a disk error at a periodic checkpoint, say) stops the loop and
    the final saves still run; each final save is tried even if another fails. Non-finite
    losses are the exception: the weights are then damaged, so only the earlier checkpoint
    stays. Errors are raised after the saves, naming what was and was not saved.
    """
    cfg = trainer.config
    out = trainer.out
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    write_bytes_atomic(
        out / "config.yaml", yaml.safe_dump(cfg.as_dict(), sort_keys=False).encode()
    )
    eval_columns = (
        "identification_rate",
        "detection_rate_hog",
        "detection_rate_centerface",
        "fallbacks",
        "fid",
    )
    log_file = LossLog(out / "losses.csv", LOSS_COLUMNS + eval_columns)
    started = time.monotonic() if started is None else started
    deadline = None if time_limit is None else started + max(time_limit - cfg.save_margin_s, 0)
    stop = StopReason()
    stop_requested = {"signal": None}
    failure: BaseException | None = None

    def on_signal(signum, frame):
        stop_requested["signal"] = signal.Signals(signum).name

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread
            previous[sig] = signal.signal(sig, on_signal)
    window_start, window_steps = time.monotonic(), 0
    step_seconds: list[float] = []
    try:
        while trainer.step < cfg.steps:
            if stop_requested["signal"]:
                stop.text = f"stopped by {stop_requested['signal']}"
                break
            # Stop when the next step would cross the deadline (the first step is guessed at
            # 0 s: nothing is known about it yet).
            next_step = float(np.median(step_seconds[-20:])) if step_seconds else 0.0
            if deadline is not None and time.monotonic() + next_step > deadline:
                stop.text = f"time limit ({time_limit:.0f} s)"
                break
            tick = time.monotonic()
            losses = trainer.train_step()
            elapsed = time.monotonic() - tick
            trainer.seconds += elapsed
            step_seconds.append(elapsed)
            window_steps += 1
            if progress:
                progress(trainer.step, losses)
            row: dict[str, Any] = {}
            if (cfg.log_every and trainer.step % cfg.log_every == 0) or trainer.step == cfg.steps:
                span = time.monotonic() - window_start
                row = {
                    "step": trainer.step,
                    "seconds": round(trainer.seconds, 2),
                    "samples_per_s": round(window_steps * cfg.batch_size / max(span, 1e-9), 2),
                    **{k: round(v, 6) for k, v in losses.items()},
                }
                window_start, window_steps = time.monotonic(), 0
            if cfg.eval_every and trainer.step % cfg.eval_every == 0:
                try:
                    figures = trainer.evaluate()
                except CiaganError as exc:  # monitoring must not end the run
                    log.error("evaluation at step %d failed: %s", trainer.step, exc)
                    figures = {}
                row = {
                    **(row or {"step": trainer.step, "seconds": round(trainer.seconds, 2)}),
                    **figures,
                }
            if row:
                log_file.write(row)
            if cfg.sample_every and trainer.step % cfg.sample_every == 0:
                trainer.write_samples()
            if cfg.checkpoint_every and trainer.step % cfg.checkpoint_every == 0:
                trainer.save_full()
                trainer.save_compact()  # what a GPU machine's caller fetches while it runs
        else:
            stop.text = "finished"
    except FloatingPointError as exc:  # damaged weights: the last good checkpoint stays
        raise CiaganError(
            f"{exc}; nothing saved for this step (an earlier checkpoint, if any, is unchanged)"
        ) from None
    except Exception as exc:  # saved below, then raised
        failure = exc
        stop.text = f"failed at step {trainer.step}: {exc}"
        log.error("training stopped: %s", exc)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log_file.close()
    saved, errors = [], []
    # The compact checkpoint first: it is what travels back from a GPU machine.
    for name, save in (
        ("compact/", trainer.save_compact),
        ("model.safetensors", trainer.write_model),
        ("checkpoint.pt", trainer.save_full),
        ("samples", trainer.write_samples),
    ):
        try:
            save()
            saved.append(name)
        except Exception as exc:  # every save is tried
            errors.append(f"{name}: {exc}")
            log.error("could not save %s: %s", name, exc)
    summary = {
        "stopped": stop.text,
        "step": trainer.step,
        "steps": cfg.steps,
        "training_seconds": round(trainer.seconds, 1),
        "wall_seconds": round(time.monotonic() - started, 1),
        "samples_per_s": round(
            cfg.batch_size * len(step_seconds) / max(sum(step_seconds), 1e-9), 2
        ),
        "device": _device_name(trainer.device),
        "precision": trainer.precision,
        "identities": trainer.data.num_identities,
        "photos": len(trainer.data),
        "config_sha256": cfg.digest(),
        "model": str(out / "model.safetensors") if "model.safetensors" in saved else None,
        "saved": saved,
        "save_errors": errors,
    }
    with contextlib.suppress(OSError):
        write_bytes_atomic(out / "train.json", (json.dumps(summary, indent=2) + "\n").encode())
    if errors or failure is not None:
        what = f"saved {', '.join(saved) or 'nothing'}"
        problems = "; ".join(([str(failure)] if failure else []) + errors)
        raise CiaganError(f"training stopped at step {trainer.step} ({what}): {problems}")
    return summary


def is_run_folder(out: Path) -> bool:
    """A folder ``ciagan train`` made and saved state in."""
    return (
        (out / "checkpoint.pt").is_file()
        or (out / "compact" / "manifest.json").is_file()
        or (out / ".compact.old" / "manifest.json").is_file()
    )


def check_output_folder(out: Path, data: Path, resume: bool) -> None:
    """Never write into a folder holding something else: a new run needs a new or empty
    folder, a resumed one a run folder (or a new or empty one for a checkpoint from
    elsewhere); never the prepared set, a folder inside it, or one holding it."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    run, source = out.resolve(), data.resolve()
    if run == source or source in run.parents or run in source.parents:
        raise InputError(f"{out}: the run folder must lie apart from the prepared set {data}")
    if out.is_dir() and any(out.iterdir()):
        if not resume:
            raise InputError(
                f"{out}: not empty; use --resume to continue the run there, or another folder"
            )
        if not is_run_folder(out):
            raise InputError(
                f"{out}: not empty and not a ciagan train run folder; resume into the run's "
                "own folder, or a new one"
            )
    parent = out if out.is_dir() else out.parent
    if not parent.is_dir():
        raise InputError(f"{parent}: no such folder")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise InputError(f"{parent}: cannot write there ({exc.strerror})") from None


def remove_stale_temporaries(out: Path) -> None:
    """Temporary files of saves that were killed (never the previous good state)."""
    for path in out.glob(".checkpoint.pt.*.tmp"):
        path.unlink(missing_ok=True)
    for path in out.glob(".model.safetensors.*.tmp"):
        path.unlink(missing_ok=True)
    for path in out.glob(".compact.*"):
        if path.name != ".compact.old" and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)

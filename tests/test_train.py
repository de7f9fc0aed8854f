"""``ciagan train``: CIAGAN training that is reproducible, resumable, and ends in a model file."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ciagan_core.cli import main
from ciagan_core.errors import ModelFileError
from ciagan_core.model_file import load_model_file
from ciagan_core.training.checkpoint import read_compact
from ciagan_core.training.config import TrainConfig, render_config_yaml
from ciagan_core.training.trainer import Trainer, run_training
from tests.conftest import celeba_image

ROOT = Path(__file__).resolve().parents[1]
#: The smallest honest step: 2 faces, one update of each network.
TINY = TrainConfig(
    steps=2,
    batch_size=2,
    generator_updates=1,
    sample_every=0,
    checkpoint_every=0,
    log_every=1,
    save_margin_s=0.0,
    sample_faces=2,
    sample_identities=2,
    workers=2,
)


@pytest.fixture(scope="module")
def prepared(shared_dir, tmp_path_factory) -> Path:
    """The authors' sample (5 identities), prepared for training on every identity."""
    out = tmp_path_factory.mktemp("prep") / "sample"
    sample = shared_dir / "data" / "ciagan_sample" / "clr"
    assert main(["prepare", str(sample), "-o", str(out), "--split", "none", "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def cli_run(prepared, tmp_path_factory) -> Path:
    """Three steps through the command line, with samples and a checkpoint on the way."""
    config = tmp_path_factory.mktemp("cfg") / "train.yaml"
    config.write_text(
        "batch_size: 2\ngenerator_updates: 1\nsample_every: 2\ncheckpoint_every: 2\n"
        "log_every: 1\nsample_faces: 2\nsample_identities: 3\nseed: 7\n"
    )
    out = tmp_path_factory.mktemp("runs") / "run"
    args = ["train", str(prepared), "-o", str(out), "--config", str(config), "--steps", "3"]
    assert main([*args, "--no-progress"]) == 0
    return out


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {
        f"{name}/{key}": value.detach().clone()
        for name, net in trainer.networks.items()
        for key, value in net.state_dict().items()
    }


def test_a_few_steps_give_finite_losses_samples_and_checkpoints(cli_run):
    with (cli_run / "losses.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    for row in rows:
        for key in ("loss_identity", "loss_critic", "loss_generator_adv"):
            assert np.isfinite(float(row[key])), (key, row)
        assert float(row["samples_per_s"]) > 0
    grid = cv2.imread(str(cli_run / "samples" / "step_000002.png"))
    assert grid.shape == (2 * 128, (2 + 3) * 128, 3)  # 2 probes x (real, input, 3 identities)
    assert (cli_run / "samples" / "step_000003.png").is_file()
    summary = json.loads((cli_run / "train.json").read_text())
    assert summary["stopped"] == "finished" and summary["step"] == 3
    assert (cli_run / "checkpoint.pt").is_file()
    manifest, _ = read_compact(cli_run / "compact")
    assert manifest["step"] == 3
    for part in manifest["parts"]:
        assert (cli_run / "compact" / part["file"]).stat().st_size <= 16 * 1024 * 1024


def test_the_model_file_records_its_training_and_runs_in_the_pipeline(cli_run, shared_dir):
    loaded = load_model_file(cli_run / "model.safetensors")
    prov = loaded.info.provenance
    assert loaded.info.num_identities == 5
    assert prov["source"] == "ciagan train" and prov["steps"] == 3
    assert prov["identities"] == ["0", "1", "2", "3", "4"]
    assert prov["landmarker"] == "dlib" and len(prov["config_sha256"]) == 64
    assert prov["data_photos"] > 100

    from ciagan_core.pipeline import Anonymizer, AnonymizerConfig

    photo = sorted((shared_dir / "data" / "ciagan_sample" / "clr" / "0").glob("*.jpg"))[0]
    image = cv2.imread(str(photo))
    image = cv2.copyMakeBorder(image, 120, 120, 120, 120, cv2.BORDER_REPLICATE)
    for engine in ("torch", "onnxruntime"):
        anonymizer = Anonymizer(
            AnonymizerConfig(
                method="ciagan", model=str(cli_run / "model.safetensors"), engine=engine
            )
        )
        result = anonymizer.process(image)
        assert [f.method for f in result.faces] == ["ciagan"], engine
        assert np.abs(result.image.astype(int) - image).mean() > 1.0


def test_model_info_shows_the_training_provenance(cli_run, capsys):
    assert main(["model", "info", str(cli_run / "model.safetensors")]) == 0
    text = capsys.readouterr().out
    assert "ciagan train" in text and "steps=3" in text


def test_the_same_seed_gives_the_same_weights_on_cpu(prepared, tmp_path):
    config = replace(TINY, seed=3)
    first, second = (
        Trainer(config, prepared, tmp_path / "a"),
        Trainer(config, prepared, tmp_path / "b"),
    )
    for _ in range(2):
        assert first.train_step() == second.train_step()
    a, b = _weights(first), _weights(second)
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = Trainer(replace(TINY, seed=4), prepared, tmp_path / "c")
    other.train_step()
    assert not torch.equal(
        _weights(other)["generator/conv_end.0.weight"], a["generator/conv_end.0.weight"]
    )


def test_resuming_the_full_checkpoint_continues_exactly(prepared, tmp_path):
    config = replace(TINY, steps=3)
    straight = Trainer(config, prepared, tmp_path / "straight")
    for _ in range(3):
        straight.train_step()
    stopped = Trainer(config, prepared, tmp_path / "stopped")
    stopped.train_step()
    stopped.train_step()
    stopped.save_full()
    resumed = Trainer(config, prepared, tmp_path / "stopped")
    assert "step 2" in resumed.resume(tmp_path / "stopped" / "checkpoint.pt")
    resumed.train_step()
    assert resumed.step == 3
    a, b = _weights(straight), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_time_limit_stops_cleanly_and_the_compact_checkpoint_resumes(prepared, tmp_path):
    out = tmp_path / "run"
    trainer = Trainer(replace(TINY, steps=1000), prepared, out)
    summary = run_training(trainer, time_limit=6.0)
    assert summary["stopped"].startswith("time limit")
    assert 1 <= summary["step"] < 1000
    assert load_model_file(out / "model.safetensors").info.provenance["steps"] == summary["step"]
    saved = _weights(trainer)
    rng_state = trainer.rng.bit_generator.state
    (out / "checkpoint.pt").unlink()  # only the compact form travels back from a GPU machine

    resumed = Trainer(replace(TINY, steps=1000), prepared, out)
    assert "compact checkpoint at step" in resumed.resume(out / "compact")
    assert resumed.step == summary["step"]
    assert resumed.rng.bit_generator.state == rng_state
    restored = _weights(resumed)
    for key, value in saved.items():
        if value.is_floating_point():
            assert torch.equal(restored[key], value.half().float()), key
        else:
            assert torch.equal(restored[key], value), key
    losses = resumed.train_step()
    assert resumed.step == summary["step"] + 1 and all(np.isfinite(list(losses.values())))


def test_a_damaged_compact_part_is_named(cli_run, tmp_path, prepared):
    copy = tmp_path / "compact"
    shutil.copytree(cli_run / "compact", copy)
    part = copy / "part-001.bin"
    data = bytearray(part.read_bytes())
    data[1000] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"part-001\.bin: damaged"):
        read_compact(copy)
    part.unlink()
    with pytest.raises(ModelFileError, match=r"part-001\.bin: part missing"):
        read_compact(copy)


def test_resume_refuses_a_checkpoint_of_other_identities(cli_run, shared_dir, tmp_path, capsys):
    other = tmp_path / "other"
    people = tmp_path / "people"
    for identity in ("0", "1"):
        shutil.copytree(
            shared_dir / "data" / "ciagan_sample" / "clr" / identity, people / identity
        )
    assert (
        main(["prepare", str(people), "-o", str(other), "--split", "none", "--no-progress"]) == 0
    )
    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    before = sorted(p.name for p in run.iterdir())
    assert main(["train", str(other), "-o", str(run), "--resume", "--no-progress"]) == 1
    assert "identities" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == before


@pytest.mark.parametrize(
    "case",
    ["empty folder", "one identity", "corrupt crop", "unknown config key", "bad config value"],
)
def test_bad_inputs_are_clear_errors_and_write_nothing(case, prepared, tmp_path, capsys):
    data = tmp_path / "data"
    args: list[str] = []
    if case == "empty folder":
        data.mkdir()
        expected = "not a prepared training set"
    else:
        shutil.copytree(prepared, data)
    if case == "one identity":
        index = (data / "index.csv").read_text().splitlines()
        keep = [index[0]] + [line for line in index[1:] if line.split(",")[1] == "0"]
        (data / "index.csv").write_text("\n".join(keep) + "\n")
        points = np.load(data / "landmarks.npy")[: len(keep) - 1]
        np.save(data / "landmarks.npy", points)
        expected = "at least 2 identities"
    if case == "corrupt crop":
        first = next((data / "crops").rglob("*.jpg"))
        first.write_bytes(b"\xff\xd8 truncated")
        expected = f"{first.name}: unreadable crop"
    if case == "unknown config key":
        (tmp_path / "c.yaml").write_text("batch_size: 2\nlearning_rate: 0.1\n")
        args = ["--config", str(tmp_path / "c.yaml")]
        expected = "unknown setting 'learning_rate'"
    if case == "bad config value":
        (tmp_path / "c.yaml").write_text("batch_size: two\n")
        args = ["--config", str(tmp_path / "c.yaml")]
        expected = "batch_size must be int"
    out = tmp_path / "run"
    assert main(["train", str(data), "-o", str(out), "--steps", "1", *args, "--no-progress"]) == 1
    assert expected in capsys.readouterr().err
    assert not out.exists()


def test_a_new_run_never_writes_into_an_existing_folder(cli_run, prepared, capsys):
    before = (cli_run / "losses.csv").read_bytes()
    assert main(["train", str(prepared), "-o", str(cli_run), "--steps", "1", "--no-progress"]) == 1
    assert "not empty; use --resume" in capsys.readouterr().err
    assert (cli_run / "losses.csv").read_bytes() == before


def test_config_file_lists_every_setting_with_its_default():
    path = ROOT / "config" / "train.yaml"
    assert path.read_text() == render_config_yaml()
    from ciagan_core.training.config import load_config

    assert load_config(path) == TrainConfig()


def test_evaluation_during_training_measures_held_out_identities(
    shared_dir, celeba_rows, tmp_path
):
    # A slice of celeba_faces with held-out identities, prepared with the holdout split.
    by_identity: dict[str, list] = {}
    for row in celeba_rows:
        by_identity.setdefault(row["celeba_identity"], []).append(row)
    chosen = [rows[:6] for rows in list(by_identity.values())[:8]]
    photos = tmp_path / "photos"
    for rows in chosen:
        for row in rows:
            path = photos / row["celeba_identity"] / row["file"]
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), celeba_image(shared_dir, row))
    data = tmp_path / "prep"
    assert main(["prepare", str(photos), "-o", str(data), "--no-progress"]) == 0
    trainer = Trainer(replace(TINY, eval_faces=8), data, tmp_path / "run")
    figures = trainer.evaluate()
    assert figures["eval_probes"] == 8
    assert 0.0 <= figures["identification_rate"] <= 1.0
    assert 0.0 <= figures["detection_rate_centerface"] <= 1.0
    # The figures must be the generator's: the pipeline generated (not fell back on) the faces.
    assert figures["fallbacks"] <= 2
    assert figures["fid"] is None or figures["fid"] > 0


def test_a_compact_checkpoint_without_the_critic_resumes_with_a_fresh_one(prepared, tmp_path):
    config = replace(TINY, steps=1, compact_networks="generator,identity")
    trainer = Trainer(config, prepared, tmp_path / "run")
    trainer.train_step()
    files = trainer.save_compact()
    total = sum(f.stat().st_size for f in files)
    assert total < 50 * 2**20  # generator + identity net in half precision, no critic
    resumed = Trainer(replace(config, seed=99), prepared, tmp_path / "run")
    assert "starting afresh: critic" in resumed.resume(tmp_path / "run" / "compact")
    before, after = _weights(trainer), _weights(resumed)
    key = "generator/conv_end.0.weight"
    assert torch.equal(after[key], before[key].half().float())
    key = "critic/dense1.weight"
    assert not torch.equal(after[key], before[key])


def test_a_model_file_is_made_from_a_run_or_its_compact_checkpoint(cli_run, tmp_path, capsys):
    trained = load_model_file(cli_run / "model.safetensors")
    out = tmp_path / "from_run.safetensors"
    assert main(["model", "from-checkpoint", str(cli_run), "-o", str(out)]) == 0
    assert load_model_file(out).info.weights_sha256 == trained.info.weights_sha256
    compact = tmp_path / "from_compact.safetensors"
    args = ["model", "from-checkpoint", str(cli_run / "compact"), "-o", str(compact), "--half"]
    assert main(args) == 0
    half = load_model_file(compact)
    assert half.info.format_version == 2
    assert half.info.provenance["identities"] == trained.info.provenance["identities"]
    assert half.info.provenance["steps"] == 3
    for key, value in trained.state_dict.items():
        assert torch.allclose(half.state_dict[key], value, rtol=2e-2, atol=2e-3), key
    assert "step 3" in capsys.readouterr().out


def test_resume_never_writes_into_a_folder_that_is_not_a_run(cli_run, prepared, tmp_path, capsys):
    user = tmp_path / "user"
    (user / "compact").mkdir(parents=True)
    (user / "compact" / "notes.txt").write_text("mine")
    (user / "config.yaml").write_text("mine")
    args = ["train", str(prepared), "-o", str(user), "--resume", str(cli_run / "checkpoint.pt")]
    assert main([*args, "--no-progress"]) == 1
    assert "not a ciagan train run folder" in capsys.readouterr().err
    assert (user / "compact" / "notes.txt").read_text() == "mine"
    assert (user / "config.yaml").read_text() == "mine"
    inside = prepared / "run"
    assert main(["train", str(prepared), "-o", str(inside), "--no-progress"]) == 1
    assert "apart from the prepared set" in capsys.readouterr().err
    assert not inside.exists()


def test_a_failed_save_does_not_cost_the_other_saves(prepared, tmp_path, monkeypatch):
    from ciagan_core.errors import CiaganError

    trainer = Trainer(replace(TINY, steps=1), prepared, tmp_path / "run")

    def full_disk():
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(trainer, "save_full", full_disk)
    with pytest.raises(CiaganError, match=r"checkpoint\.pt: .*No space left"):
        run_training(trainer)
    assert read_compact(tmp_path / "run" / "compact")[0]["step"] == 1
    assert load_model_file(tmp_path / "run" / "model.safetensors").info.provenance["steps"] == 1
    summary = json.loads((tmp_path / "run" / "train.json").read_text())
    assert summary["saved"] == ["compact/", "model.safetensors", "samples"]


def test_a_checkpoint_cannot_run_code_when_loaded(prepared, tmp_path):
    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "PWNED",))

    torch.save({"meta": Payload(), "networks": {}, "optimizers": {}}, tmp_path / "evil.pt")
    trainer = Trainer(TINY, prepared, tmp_path / "run")
    with pytest.raises(ModelFileError, match="not a readable training checkpoint"):
        trainer.resume(tmp_path / "evil.pt")
    assert not (tmp_path / "PWNED").exists()


def test_resume_applies_the_new_learning_rate_and_checks_the_landmarker(
    cli_run, prepared, tmp_path
):
    trainer = Trainer(replace(TINY, lr=1e-3), prepared, tmp_path / "run")
    trainer.resume(cli_run / "checkpoint.pt")
    assert all(
        group["lr"] == 1e-3 for opt in trainer.optimizers.values() for group in opt.param_groups
    )
    other = tmp_path / "mesh_prepared"
    shutil.copytree(prepared, other)
    info = json.loads((other / "prepared.json").read_text())
    (other / "prepared.json").write_text(json.dumps({**info, "landmarker": "mesh"}))
    with pytest.raises(ModelFileError, match="trained on dlib landmarks"):
        Trainer(TINY, other, tmp_path / "run2").resume(cli_run)  # the run folder itself


def test_an_edited_compact_manifest_is_refused(cli_run, tmp_path):
    copy = tmp_path / "compact"
    shutil.copytree(cli_run / "compact", copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "step": 999}))
    with pytest.raises(ModelFileError, match="edited or damaged"):
        read_compact(copy)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sample_faces: 0", "sample_faces must be at least 1"),
        ("seed: -1", "seed must be in"),
        ("device: cudaX", "device must be"),
        ("save_margin_s: -100", "save_margin_s must not be negative"),
        ("eval_every: 10\neval_faces: 0", "eval_faces must be at least 2"),
    ],
)
def test_config_values_out_of_range_are_refused(text, message, tmp_path):
    from ciagan_core.errors import ConfigError
    from ciagan_core.training.config import load_config

    (tmp_path / "c.yaml").write_text(text + "\n")
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "c.yaml")


def test_exponents_written_without_a_dot_are_numbers(tmp_path):
    from ciagan_core.training.config import load_config

    (tmp_path / "c.yaml").write_text("lr: 1e-4\n")  # YAML 1.1 reads this as a string
    assert load_config(tmp_path / "c.yaml").lr == 1e-4


def test_a_run_that_fails_before_saving_leaves_no_folder(prepared, tmp_path, capsys):
    (tmp_path / "c.yaml").write_text(
        "batch_size: 2\ngenerator_updates: 1\nsample_faces: 2\nsample_identities: 2\n"
        "contrastive_margin: 1.0e+30\nsave_margin_s: 0\n"
    )
    out = tmp_path / "run"
    args = ["train", str(prepared), "-o", str(out), "--config", str(tmp_path / "c.yaml")]
    assert main([*args, "--steps", "1", "--no-progress"]) == 1
    assert "not finite" in capsys.readouterr().err
    assert not out.exists()


def test_sigterm_stops_training_and_saves(prepared, tmp_path):
    """How a batch scheduler or `timeout` ends a run: SIGTERM stops before the next step and
    saves the model file and both checkpoints, exit status 0."""
    import signal
    import subprocess
    import sys
    import time

    config = tmp_path / "train.yaml"
    config.write_text(
        "batch_size: 2\ngenerator_updates: 1\nsample_every: 0\ncheckpoint_every: 0\n"
        "log_every: 1\nsample_faces: 2\nsample_identities: 2\nsave_margin_s: 0.0\n"
    )
    out = tmp_path / "run"
    args = ["train", str(prepared), "-o", str(out), "--config", str(config), "--steps", "100000"]
    process = subprocess.Popen(
        [sys.executable, "-m", "ciagan_core", *args, "--no-progress"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        losses = out / "losses.csv"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:  # a step or two done
            if losses.is_file() and len(losses.read_text().splitlines()) >= 2:
                break
            time.sleep(0.5)
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    steps = load_model_file(out / "model.safetensors").info.provenance["steps"]
    assert 1 <= steps < 100000
    assert (out / "checkpoint.pt").is_file() and (out / "compact" / "manifest.json").is_file()


def test_a_compact_checkpoint_cut_to_the_generator_fits_beside_the_data_and_resumes(
    prepared, tmp_path
):
    # A GPU slice carries 64 MiB in all: generator and critic (59 MiB in half precision) do not
    # fit beside the training split, so scripts/gpu_pack.py carries the generator alone.
    from ciagan_core.training.checkpoint import subset_compact

    config = replace(TINY, steps=1, compact_networks="generator,critic", compact_optimizer="all")
    trainer = Trainer(config, prepared, tmp_path / "run")
    trainer.train_step()
    trainer.save_compact()
    full, _ = read_compact(tmp_path / "run" / "compact")
    files = subset_compact(tmp_path / "run" / "compact", tmp_path / "cut", ["generator"])
    manifest, tensors = read_compact(tmp_path / "cut")  # verified part by part
    assert manifest["networks"] == ["generator"] and list(manifest["optimizers"]) == ["generator"]
    assert {k.split("/")[0] for k in tensors} == {"generator", "optim"}
    assert all(k.startswith("optim/generator.") for k in tensors if k.startswith("optim/"))
    assert manifest["step"] == full["step"] == 1 and manifest["identities"] == full["identities"]
    # The generator's weights and Adam's two moments, each in 16 bits (23 MiB apiece).
    assert sum(f.stat().st_size for f in files) < 3 * 24 * 2**20
    resumed = Trainer(replace(config, seed=99), prepared, tmp_path / "run2")
    said = resumed.resume(tmp_path / "cut")
    assert "starting afresh: critic, identity" in said and "step 1" in said
    before, after = _weights(trainer), _weights(resumed)
    key = "generator/conv_end.0.weight"
    assert torch.equal(after[key], before[key].half().float())
    assert not torch.equal(after["critic/dense1.weight"], before["critic/dense1.weight"])
    resumed.train_step()  # the generator's kept Adam state fits its parameters
    with pytest.raises(ModelFileError, match="cannot keep critic"):
        subset_compact(tmp_path / "cut", tmp_path / "again", ["critic"])
    assert not (tmp_path / "again").exists()
    # Names are trimmed and counted once; cutting in place replaces the folder.
    subset_compact(tmp_path / "cut", tmp_path / "cut", [" generator", "generator "])
    assert read_compact(tmp_path / "cut")[0]["networks"] == ["generator"]
    # Anything else at the target is refused and left as it was: a folder of the user's, a
    # file, the run folder that holds the source.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "photo.png").write_bytes(b"png")
    (tmp_path / "notes.txt").write_text("mine")
    for target in (tmp_path / "mine", tmp_path / "notes.txt", tmp_path / "run"):
        with pytest.raises(ModelFileError, match="not a compact checkpoint"):
            subset_compact(tmp_path / "run" / "compact", target, ["generator"])
    assert (tmp_path / "mine" / "photo.png").read_bytes() == b"png"
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert read_compact(tmp_path / "run" / "compact")[0] == full
    with pytest.raises(ModelFileError, match="name the networks"):
        subset_compact(tmp_path / "cut", tmp_path / "new", ["", "generator"])


def test_a_run_killed_outright_leaves_its_last_periodic_compact_checkpoint(prepared, tmp_path):
    # A GPU machine's command can be killed at its time limit with no chance to save: the
    # compact checkpoint written every checkpoint_every steps is what comes back then.
    config = tmp_path / "train.yaml"
    config.write_text(
        "batch_size: 2\ngenerator_updates: 1\nsample_every: 0\ncheckpoint_every: 1\n"
        "log_every: 1\ncompact_networks: generator\n"
    )
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "ciagan_core", "train", str(prepared), "-o", str(out),
         "--config", str(config), "--steps", "1000", "--no-progress"],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not (out / "compact" / "manifest.json").is_file():
            assert process.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline, "no compact checkpoint while training ran"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    manifest, tensors = read_compact(out / "compact")  # whole: every part matches its sha256
    assert 1 <= manifest["step"] < 1000 and manifest["networks"] == ["generator"]
    assert any(key.startswith("generator/") for key in tensors)


def test_a_resumed_optimizer_keeps_this_device_s_fused_adam():
    # A checkpoint made on the CPU (or before Adam was fused on CUDA) stores fused=None; loading
    # it whole would switch the fused kernels off for the rest of the run.
    from ciagan_core.training.checkpoint import load_optimizer_state

    weights = torch.nn.Parameter(torch.ones(4))
    plain = torch.optim.Adam([weights], lr=1e-4)
    weights.grad = torch.full((4,), 0.5)
    plain.step()
    fused = torch.optim.Adam([torch.nn.Parameter(torch.ones(4))], lr=1e-3, fused=True)
    load_optimizer_state(fused, plain.state_dict())
    group = fused.param_groups[0]
    assert group["fused"] is True and group["foreach"] is None
    assert group["lr"] == 1e-4  # what was learnt and set comes from the checkpoint
    assert torch.equal(fused.state_dict()["state"][0]["exp_avg"], plain.state[weights]["exp_avg"])

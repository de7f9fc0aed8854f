#!/usr/bin/env python3
"""Copy a training run's compact checkpoint into the GPU machine's ``$OUT``, whole or not at all.

    python3 scripts/gpu_bring_back.py RUN/compact OUT --after-step N --state FILE

``scripts/gpu_starter.sh`` calls it every few seconds while training runs, and once more at the
end: ``$OUT`` is what comes back even when the device kills the command at its limit, so it
always holds the newest checkpoint this run saved, never a mix of two saves, and never the
one the run resumed from:

- nothing is done until the run has a compact checkpoint newer than step N (the step it resumed
  from; 0 for a fresh run) that was not copied before (``--state`` remembers the last one);
- the parts and manifest are copied into a staging folder beside ``OUT`` (the same filesystem,
  so the final moves are renames) and verified there as ``read_compact`` verifies them (every
  part's and the whole blob's sha256), and they must still be the run's current checkpoint
  once copied: a copy that straddled a save is dropped and made again next round;
- only then are the previous copy's files in ``OUT`` replaced, file by file.

It warns when the checkpoint would not come back whole (more than 7 files, or a file over
16 MiB, beside ``results.tgz``). Exit status 0 in every case but bad arguments: a round that
copies nothing is retried by the next.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: What the device tool brings back from $OUT: files, and bytes per file.
MAX_FILES, MAX_FILE_BYTES = 8, 16 * 2**20


def _manifest(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def bring_back(source: Path, out: Path, after_step: int, state: Path) -> str:
    """One round; returns what it did, in a few words."""
    manifest = _manifest(source)
    if manifest is None or not isinstance(manifest.get("step"), int):
        return "no checkpoint yet"
    if manifest["step"] <= after_step:
        return f"checkpoint at step {manifest['step']} is not newer than step {after_step}"
    digest = manifest.get("manifest_sha256")
    if state.is_file() and state.read_text().strip() == digest:
        return "already copied"
    from ciagan_core.errors import CiaganError
    from ciagan_core.training.checkpoint import read_compact

    names = [p["file"] for p in manifest.get("parts", [])] + ["manifest.json"]
    stage = Path(tempfile.mkdtemp(prefix=".ciagan-stage-", dir=_stage_parent(out)))
    try:
        try:
            for name in names:
                shutil.copyfile(source / name, stage / name)
            read_compact(stage)
        except (OSError, CiaganError) as exc:
            return f"copy not whole ({exc}); next round"
        staged = (_manifest(stage) or {}).get("manifest_sha256")
        if staged != digest or (_manifest(source) or {}).get("manifest_sha256") != digest:
            return "a save came in during the copy; next round"
        sizes = [(stage / name).stat().st_size for name in names]
        if len(names) + 1 > MAX_FILES or max(sizes) > MAX_FILE_BYTES:
            print(
                f"gpu_bring_back: WARNING: {len(names)} files and results.tgz, the largest "
                f"{max(sizes)} bytes: "
                f"the device brings back {MAX_FILES} files of {MAX_FILE_BYTES} bytes at most",
                file=sys.stderr,
            )
        for old in [*out.glob("part-*.bin"), out / "manifest.json"]:
            old.unlink(missing_ok=True)
        for name in names:
            os.replace(stage / name, out / name)
        state.write_text(digest)
        return f"copied the compact checkpoint at step {manifest['step']}"
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _stage_parent(out: Path) -> Path:
    """Beside ``out`` when writable (renames into it), else the temporary folder."""
    parent = out.resolve().parent
    return parent if os.access(parent, os.W_OK) else Path(tempfile.gettempdir())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the run's compact checkpoint folder")
    parser.add_argument("out", type=Path, help="the folder that comes back ($OUT)")
    parser.add_argument("--after-step", type=int, default=0, help="the step the run resumed at")
    parser.add_argument("--state", type=Path, required=True, help="remembers the last copy")
    parser.add_argument("--quiet", action="store_true", help="say only what was copied")
    args = parser.parse_args()
    said = bring_back(args.source, args.out, args.after_step, args.state)
    if not args.quiet or said.startswith("copied"):
        print(f"gpu_bring_back: {said}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``ciagan model``: import published checkpoints and inspect model files."""

from __future__ import annotations

import argparse
from pathlib import Path

from ciagan_core.model_file import check_output_apart, import_official, read_model_info


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("model", help="import and inspect generator model files")
    actions = parser.add_subparsers(dest="model_command", required=True, metavar="ACTION")

    imp = actions.add_parser(
        "import-official", help="convert a published CIAGAN generator .pth into a model file"
    )
    imp.add_argument("checkpoint", type=Path, help="published generator state_dict (modelG.pth)")
    imp.add_argument("-o", "--output", type=Path, required=True, help="model file to write")
    imp.add_argument(
        "--identities",
        type=int,
        default=None,
        help="refuse the checkpoint unless it has this many identities",
    )
    imp.set_defaults(func=_import_official)

    run = actions.add_parser(
        "from-checkpoint",
        help="the model file of a training checkpoint's generator (a ciagan train run folder, "
        "its compact/ folder or checkpoint.pt)",
    )
    run.add_argument("checkpoint", type=Path)
    run.add_argument("-o", "--output", type=Path, required=True, help="model file to write")
    run.add_argument("--half", action="store_true", help="store the weights in float16")
    run.set_defaults(func=_from_checkpoint)

    info = actions.add_parser("info", help="print a model file's identities, size and provenance")
    info.add_argument("model", type=Path)
    info.set_defaults(func=_info)


def _import_official(args: argparse.Namespace) -> int:
    info = import_official(args.checkpoint, args.output, args.identities)
    print(
        f"wrote {info.path}: {info.num_identities} identities, {info.image_size} px, "
        f"sha256 {info.weights_sha256[:16]}"
    )
    return 0


def _from_checkpoint(args: argparse.Namespace) -> int:
    from ciagan_core.training.trainer import checkpoint_path, model_from_checkpoint

    source = checkpoint_path(args.checkpoint)  # a checkpoint file or a compact folder
    check_output_apart(args.output, source, what="checkpoint")
    info = model_from_checkpoint(source, args.output, args.half)
    print(
        f"wrote {info.path}: {info.num_identities} identities, step "
        f"{info.provenance.get('steps')}, sha256 {info.weights_sha256[:16]}"
    )
    return 0


def _info(args: argparse.Namespace) -> int:
    print(read_model_info(args.model).describe())
    return 0

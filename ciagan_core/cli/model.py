"""``ciagan model``: import published checkpoints and inspect model files."""

from __future__ import annotations

import argparse
from pathlib import Path

from ciagan_core.model_file import import_official, read_model_info


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


def _info(args: argparse.Namespace) -> int:
    print(read_model_info(args.model).describe())
    return 0

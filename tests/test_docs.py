"""The README and docs/ stay true: every ``ciagan ...`` command they show parses with the CLI's
own parser (without running), every node parameter and launch argument they name exists, every
relative link and picture resolves (anchors included), and the generated parts (the node's
parameter table, the before/after picture) are current."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ciagan_core.cli import build_parser
from ciagan_ros.parameters import BY_NAME

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SUBCOMMAND_PARSERS = build_parser()._subparsers._group_actions[0].choices
SUBCOMMANDS = set(SUBCOMMAND_PARSERS)


def _page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _code_blocks(text: str) -> list[str]:
    """Lines of fenced code blocks, continuation lines joined."""
    lines: list[str] = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        lines += block.replace("\\\n", " ").splitlines()
    return lines


def _commands(text: str, program: str, inline: bool = True) -> list[str]:
    """Every command line of ``program`` in the page: in code blocks (after ``&&`` or ``;``
    too), and (``inline``) in inline code spans."""
    found = []
    for line in _code_blocks(text):
        for part in re.split(r"&&|;", line.split(" #")[0]):
            part = part.strip()
            if part.startswith(program + " "):
                found.append(part)
    if inline:
        found += _inline(text, program)
    return found


def _inline(text: str, program: str) -> list[str]:
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    return [
        s
        for s in re.findall(r"`([^`]+)`", prose.replace("\n", " "))
        if s.startswith(program + " ")
    ]


def _argv(command: str) -> list[str]:
    """The arguments of a documented command; ``[--opt X]`` (an optional part) kept."""
    command = re.sub(r"\[(-[^\]]+)\]", r"\1", command)
    return shlex.split(command)[1:]


def _documented_ciagan_commands() -> list[tuple[str, str]]:
    """Whole command lines: those in code blocks."""
    found = []
    for page in PAGES:
        for command in _commands(page.read_text(), "ciagan", inline=False):
            found.append((_page_id(page), command))
    return found


def _ciagan_mentions() -> list[tuple[str, str]]:
    """Commands in prose (often a subcommand and the option being explained)."""
    return [(_page_id(p), c) for p in PAGES for c in _inline(p.read_text(), "ciagan")]


def test_the_docs_show_commands_of_every_main_subcommand():
    shown = {_argv(c)[0] for _, c in _documented_ciagan_commands() if len(_argv(c)) > 0}
    assert {"anonymize", "bag", "fleet", "prepare", "train", "eval", "model", "export"} <= shown


@pytest.mark.parametrize(("page", "command"), _documented_ciagan_commands())
def test_every_documented_ciagan_command_parses(page, command):
    argv = _argv(command)
    assert argv and argv[0] in SUBCOMMANDS, f"{page}: unknown subcommand in {command!r}"
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"{page}: {command!r} does not parse ({exc.code}): {errors.getvalue()}")


@pytest.mark.parametrize(("page", "command"), _ciagan_mentions())
def test_every_ciagan_option_named_in_prose_exists(page, command):
    """``ciagan eval --split holdout`` in a sentence: the subcommand (and the model action)
    exists and so does every option it names."""
    argv = _argv(command)
    assert argv[0] in SUBCOMMANDS, f"{page}: unknown subcommand in {command!r}"
    parser = SUBCOMMAND_PARSERS[argv[0]]
    if parser._subparsers is not None and len(argv) > 1:
        actions = parser._subparsers._group_actions[0].choices
        assert argv[1] in actions, f"{page}: no 'ciagan {argv[0]} {argv[1]}'"
        parser = actions[argv[1]]
    known = {option for action in parser._actions for option in action.option_strings}
    for token in argv[1:]:
        option = token.split("=")[0]
        if option.startswith("-") and not option.lstrip("-").isdigit():
            assert option in known, f"{page}: {command!r}: no option {option}"


def test_a_renamed_option_would_break_this_test():
    """The check above can fail: an option the CLI does not have is refused."""
    with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit):
        build_parser().parse_args(_argv("ciagan anonymize in.jpg -o out.png --blur-kernal 9"))


def _node_parameters_named() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for line in _commands(text, "anonymizer_node") + _commands(text, "ros2 run"):
            for name in re.findall(r"-p\s+([A-Za-z_.]+):=", line):
                found.append((_page_id(page), name))
        for name in re.findall(r"ros2 param set \S+ ([A-Za-z_]+)", text):
            found.append((_page_id(page), name))
    return found


def test_documented_node_parameters_exist():
    named = _node_parameters_named()
    assert named, "the docs name no parameter: the pattern above broke"
    unknown = [(page, name) for page, name in named if name not in BY_NAME]
    assert not unknown


def test_documented_launch_files_and_arguments_exist():
    declared: dict[str, set[str]] = {}
    for launch in (ROOT / "launch").glob("*.launch.py"):
        declared[launch.name] = set(
            re.findall(r"DeclareLaunchArgument\(\s*\"(\w+)\"", launch.read_text())
        )
    shown = 0
    for page in PAGES:
        for line in _code_blocks(page.read_text()):
            match = re.match(r"\s*ros2 launch ciagan_ros (\S+)(.*)", line)
            if not match:
                continue
            shown += 1
            name, rest = match.groups()
            assert name in declared, f"{_page_id(page)}: no launch file {name}"
            for argument in re.findall(r"(\w+):=", rest):
                assert argument in declared[name], f"{_page_id(page)}: {name} has no {argument}"
    assert shown >= 3


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def _links() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if not re.match(r"[a-z]+:", target):
                found.append((_page_id(page), target))
    return found


@pytest.mark.parametrize(("page", "target"), _links())
def test_every_relative_link_and_picture_resolves(page, target):
    source = ROOT / page
    path, _, anchor = target.partition("#")
    resolved = (source.parent / path).resolve() if path else source
    assert resolved.exists(), f"{page}: {target} does not exist"
    assert ROOT in resolved.parents or resolved == ROOT, f"{page}: {target} leaves the project"
    if anchor:
        assert resolved.suffix == ".md", f"{page}: anchor into a non-markdown file: {target}"
        assert anchor in _anchors(resolved), f"{page}: no heading for #{anchor} in {path or page}"


def test_the_readme_stays_short_and_keeps_its_two_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 220
    assert "bash scripts/demo.sh     # the main job" in text
    assert "bash scripts/test.sh     # the test suite" in text
    assert "![" in text  # the before/after picture


def test_the_node_parameter_table_is_current():
    from ciagan_ros.parameters import main

    assert main(["--check", "--root", str(ROOT)]) == 0, "run: python -m ciagan_ros.parameters"


def test_the_before_after_picture_is_current():
    """Made from the public-domain example through the real pipeline; a change of the default
    method or its strength makes it stale."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_pictures.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr

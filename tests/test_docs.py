"""Every command the README and the docs pages show parses with the CLI (the same parser ``--print_config`` uses)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SUBCOMMANDS = ("fit", "validate", "test", "predict")
SERVING = {  # their own options
    "serve": ("--host", "--port", "--max_batch"),
    "translate": ("--beam_size", "--nbest"),
    "export": ("--format", "--output"),
}


def _without(words: list[str], options: tuple[str, ...]) -> list[str]:
    out, skip = [], False
    for w in words:
        if skip:
            skip = False
        elif w in options:
            skip = True
        elif w.split("=", 1)[0] not in options:
            out.append(w)
    return out


def shown_commands() -> list[tuple[str, str]]:
    """``(page, command)`` for every ``python main.py <subcommand> ...`` / ``rnnlab <subcommand> ...`` line in a code
    block, with backslash continuations joined."""
    out = []
    for page in PAGES:
        for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", page.read_text(encoding="utf-8"), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                if not line.lstrip().startswith(("python main.py ", "rnnlab ")):
                    continue
                words = shlex.split(line, comments=True)
                if words[:2] == ["python", "main.py"]:
                    words = words[2:]
                elif words[:1] == ["rnnlab"]:
                    words = words[1:]
                else:
                    continue
                if words and words[0] in SERVING:  # its config and overrides parse as predict's do
                    words = ["predict", *_without(words[1:], SERVING[words[0]])]
                if words and words[0] in SUBCOMMANDS:
                    out.append((str(page.relative_to(ROOT)), " ".join(shlex.quote(w) for w in words)))
    return out


COMMANDS = shown_commands()


def test_the_pages_show_commands_for_every_subcommand():
    assert any("serving.md" in page for page, _ in COMMANDS), "rnnlab serve/translate commands are parsed too"
    assert len(COMMANDS) >= 20 and {"fit", "test", "predict"} <= {c.split()[0] for _, c in COMMANDS}


@pytest.mark.parametrize("page, command", COMMANDS, ids=[f"{p}:{c[:60]}" for p, c in COMMANDS])
def test_every_command_in_the_docs_parses(page, command, cli_parser, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # configs/... paths are relative to the checkout
    try:
        cli_parser.parse_args(shlex.split(command))
    except SystemExit as exit_:  # --print_config and --help print and exit 0
        assert exit_.code == 0, f"{page}: `{command}` does not parse:\n{capsys.readouterr().err[-800:]}"

"""The one entry point to the benchmarks: every result in ``results/*.json`` knows the command that wrote it.

    python benchmarks/run.py --list                 # every result: its README row, when it ran, how to rerun it
    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/run.py imdb_lstm tagging_sinica_cws_bilstm   # rerun them
    python benchmarks/run.py --tables               # regenerate the README and docs tables from the JSON

A result's ``benchmark`` field is the command (a script of this folder and its arguments) that wrote it;
``common.write`` records it. Its ``readme`` block, if any, is its row of the README's task table. Each rerun runs in
its own process, one after the other (timings on a shared CPU are worthless).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import RESULTS, ROOT  # noqa: E402


def results() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}


def rerun_command(name: str, result: dict) -> list[str]:
    command = result.get("benchmark") or ""
    if not command.startswith("python benchmarks/"):
        raise SystemExit(
            f"results/{name}.json does not record the benchmark that wrote it (it predates benchmarks/run.py; its "
            f"figures came from: {result.get('command', 'unknown')}); run that command, after which it does"
        )
    return [sys.executable, *shlex.split(command)[1:]]


def main(argv: list[str]) -> int:
    everything = results()
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if argv[0] == "--list":
        for name, r in everything.items():
            row = r.get("readme", {}).get("task", "")
            date = r.get("machine", {}).get("date", "?")
            how = r.get("benchmark") or f"(before run.py) {r.get('command', '?')}"
            print(f"{name:45s} {date:10s} {('[' + row + '] ') if row else ''}{how}")
        return 0
    if argv[0] == "--tables":
        return subprocess.call([sys.executable, str(HERE / "readme_tables.py")], cwd=ROOT)
    unknown = [n for n in argv if n not in everything]
    if unknown:
        raise SystemExit(f"no result named {', '.join(unknown)} in {RESULTS}; see --list")
    for name in argv:
        command = rerun_command(name, everything[name])
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        code = subprocess.call(command, cwd=ROOT)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

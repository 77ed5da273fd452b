#!/usr/bin/env bash
# `pip install .` into an environment that already holds another torch 2.x / Lightning 2.x keeps them: rnnlab declares
# ranges, not pins (the pins are constraints.txt, for `make` and CI only). A fresh venv gets torch (the reference CPU
# wheel) and an older Lightning first; then rnnlab is installed without constraints and the two must be unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH="${TORCH:-torch==2.13.0}"
LIGHTNING="${LIGHTNING:-lightning==2.5.5}"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
"$PYTHON" -m venv "$dir/venv"
pip="$dir/venv/bin/pip"
"$pip" install --quiet --disable-pip-version-check "$TORCH" "$LIGHTNING"
before="$("$dir/venv/bin/python" -c 'import torch, lightning; print(torch.__version__, lightning.__version__)')"
"$pip" install --quiet --disable-pip-version-check .
after="$("$dir/venv/bin/python" -c 'import torch, lightning; print(torch.__version__, lightning.__version__)')"
"$dir/venv/bin/rnnlab" fit --config configs/imdb_lstm.yaml --print_config > /dev/null
if [[ "$before" != "$after" ]]; then
    echo "check-install: pip install . replaced torch/lightning: before '$before', after '$after'" >&2
    exit 1
fi
rm -rf build  # setuptools' in-tree build folder
echo "check-install: torch and lightning kept ($after); rnnlab installed and its CLI parses a config"

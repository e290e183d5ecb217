#!/usr/bin/env bash
# Install everything the tests need on a Debian machine, then run the whole suite.
#   - Debian packages: dcmtk (the real peers we test against), prometheus (promtool),
#     python3-venv if missing
#   - a virtual environment in .venv with this package and its test extras
#   - ruff, mypy, then pytest (extra pytest arguments may be passed to this script)
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
command -v storescu >/dev/null 2>&1 || need_apt+=(dcmtk)
# promtool lints the /metrics exposition (tests/test_ops.py)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then need_apt+=(python3-venv); fi
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "== installing Debian packages: ${need_apt[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv"
    python3 -m venv .venv
fi
echo "== installing the package and its test tools"
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

echo "== ruff"
.venv/bin/ruff check dcmrecv tests benchmarks tools
.venv/bin/ruff format --check dcmrecv tests benchmarks tools
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
exec .venv/bin/python -m pytest "$@"

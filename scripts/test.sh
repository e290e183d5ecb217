#!/usr/bin/env bash
# Install everything the tests need on a Debian machine (scripts/dev-setup.sh: Debian's
# dcmtk and prometheus, .venv with the package and its test tools, the test peer
# pynetdicom in .venv/peers), then run ruff, mypy and pytest (extra arguments go to
# pytest).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/dev-setup.sh

echo "== ruff"
.venv/bin/ruff check dcmrecv tests benchmarks tools
.venv/bin/ruff format --check dcmrecv tests benchmarks tools
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
exec .venv/bin/python -m pytest "$@"

#!/usr/bin/env bash
# Install the receiver into .venv (with python3-venv from Debian if missing) and start
# it: port 11112, the bundled storescp.cfg "Default" profile, files into ./data.
# Arguments replace those defaults: bash scripts/run.sh -v -xf storescp.cfg AllDICOM -od /srv/dicom 104
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q .

if [ $# -eq 0 ]; then
    mkdir -p data
    set -- -v -xf storescp.cfg Default -od data 11112
fi
exec .venv/bin/dcmrecv "$@"

#!/usr/bin/env bash
# Make the development environment scripts/test.sh runs in (it calls this first):
#   - Debian packages: dcmtk (the real peers we test against), prometheus (promtool),
#     postgresql (the state store's server, started by the tests in a temporary
#     directory; tests/pgcluster.py), haproxy (the balancer of tests/test_scaleout.py),
#     orthanc (the storage commitment peer, started by the tests in a temporary
#     directory; tests/orthanc.py), python3-venv if missing;
#   - .venv with this package (editable) and its test extras;
#   - the test peer pynetdicom (tests/peers.txt) in .venv/peers, importable by
#     .venv/bin/python through a .pth file but with its console scripts off PATH: its
#     storescp would replace ours in .venv/bin and its storescu would shadow DCMTK's.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
command -v storescu >/dev/null 2>&1 || need_apt+=(dcmtk)
# promtool lints the /metrics exposition (tests/test_ops.py)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
# initdb and pg_ctl (tests/test_state.py, the benchmark's --state postgresql:// row);
# Debian keeps them off PATH, in /usr/lib/postgresql/VERSION/bin
compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || command -v pg_ctl >/dev/null 2>&1 ||
    need_apt+=(postgresql)
# haproxy: the balancer in front of three replicas (tests/test_scaleout.py)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need_apt+=(haproxy)
# Orthanc: the storage commitment requester and C-STORE peer (tests/orthanc.py)
command -v Orthanc >/dev/null 2>&1 || [ -x /usr/sbin/Orthanc ] || need_apt+=(orthanc)
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then need_apt+=(python3-venv); fi
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "== installing Debian packages: ${need_apt[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    # The orthanc package enables and starts a system Orthanc (/etc/orthanc, DICOM 4242
    # and HTTP 8042 on every interface) where systemd runs; the tests start their own.
    # Without an init system (containers, chroots, CI here) invoke-rc.d starts nothing.
    if [[ " ${need_apt[*]} " == *" orthanc "* ]] && [ -d /run/systemd/system ]; then
        as_root systemctl disable --now orthanc.service >/dev/null 2>&1 || true
    fi
fi

if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv"
    python3 -m venv .venv
fi
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
if [ -d "$site/pynetdicom" ]; then
    # A .venv made before the peer moved out: its pynetdicom owns bin/storescp and
    # bin/storescu.  Removing it removes those; installing the package below puts
    # our storescp back.
    echo "== removing pynetdicom from .venv (it moves to .venv/peers)"
    .venv/bin/python -m pip uninstall -q -y pynetdicom
fi
echo "== installing the package and its test tools"
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
echo "== installing the test peer pynetdicom into .venv/peers"
.venv/bin/python -m pip install -q --upgrade --no-deps --target .venv/peers -r tests/peers.txt
echo "$PWD/.venv/peers" >"$site/dcmrecv-test-peers.pth"
.venv/bin/python -c 'import pynetdicom' \
    || { echo "dev-setup.sh: pynetdicom is not importable from .venv/peers" >&2; exit 1; }

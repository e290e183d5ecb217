#!/usr/bin/env bash
# Remove what scripts/install.sh installed, as root:
#
#   sudo bash scripts/uninstall.sh [--root DIR] [--purge]
#
# Removes /opt/dcmrecv, the links /usr/local/bin/dcmrecv and storescp (only where they
# still point into /opt/dcmrecv) and the systemd units (stopped and disabled first
# where systemd runs).  Keeps /etc/dcmrecv, /var/log/dcmrecv, the user dicom and the
# received files in /var/lib/dicom; --purge removes the first three too, and
# /var/lib/dicom only when it is empty: received images are never deleted.
# --root DIR (or DESTDIR=DIR): the staging root install.sh was given.
set -euo pipefail

root=${DESTDIR:-}
purge=false
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root=${2:?--root needs a directory}; shift 2 ;;
        --root=*) root=${1#--root=}; shift ;;
        --purge) purge=true; shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "uninstall.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
root=${root%/}
if [ -n "$root" ]; then
    root=$(cd "$root" && pwd)
    [ "$root" != / ] || root=""
fi
if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
    echo "uninstall.sh: run it as root (sudo bash scripts/uninstall.sh)" >&2
    exit 1
fi

OPT=/opt/dcmrecv
UNITS=/usr/local/lib/systemd/system
UNIT_NAMES=(dcmrecv.socket dcmrecv.service storescp.socket storescp@.service)
say() { printf '== %s\n' "$*"; }

if [ -z "$root" ] && [ -d /run/systemd/system ]; then
    systemctl disable --now dcmrecv.socket storescp.socket dcmrecv.service 2>/dev/null || true
fi
for unit in "${UNIT_NAMES[@]}"; do
    rm -f "$root$UNITS/$unit"
done
if [ -z "$root" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
say "removed the systemd units"

for command in dcmrecv storescp; do
    link=$root/usr/local/bin/$command
    if [ -L "$link" ] && [ "$(readlink "$link")" = "$OPT/bin/$command" ]; then
        rm -f "$link"
    fi
done
rm -rf "$root$OPT"
say "removed $OPT and its commands in /usr/local/bin"

if $purge; then
    rm -rf "$root/etc/dcmrecv" "$root/var/log/dcmrecv"
    rmdir "$root/var/lib/dicom" 2>/dev/null \
        || { [ ! -d "$root/var/lib/dicom" ] || say "kept /var/lib/dicom: it holds received files"; }
    if [ -z "$root" ]; then
        if getent passwd dicom >/dev/null; then userdel dicom; fi
    elif [ -f "$root/etc/passwd" ] && grep -q '^dicom:' "$root/etc/passwd"; then
        userdel --root "$root" dicom
    fi
    say "purged /etc/dcmrecv, /var/log/dcmrecv and the user dicom"
else
    say "kept /etc/dcmrecv, /var/log/dcmrecv, /var/lib/dicom and the user dicom (--purge removes them)"
fi

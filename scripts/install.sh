#!/usr/bin/env bash
# Install the receiver on this host (Debian 12 or later), as root:
#
#   sudo bash scripts/install.sh [--root DIR] [--python PYTHON]
#
#   /opt/dcmrecv                     a virtual environment with dcmrecv (from this checkout)
#   /usr/local/bin/dcmrecv, storescp links to its commands
#   /etc/dcmrecv/storescp.cfg        the association negotiation profiles (profiles/ too)
#   /etc/dcmrecv/logger.cfg          the log of storescp -id (inetd, storescp.socket)
#   /usr/local/lib/systemd/system/   dcmrecv.socket + dcmrecv.service (one receiver),
#                                    storescp.socket + storescp@.service (one per connection)
#   user and group dicom, /var/lib/dicom (received files), /var/log/dcmrecv
#
# Debian refuses a system-wide pip install (PEP 668, "externally managed"), hence the
# venv.  Files in /etc/dcmrecv that you changed are kept (the new one is put beside
# them as FILE.new); everything else is replaced, so running it again upgrades.
# systemctl is not run: the units are installed, and the script says how to enable
# them (where systemd is not running, e.g. in a container or chroot, it says so).
#
# --root DIR (or DESTDIR=DIR) stages everything under DIR instead of /, e.g. to build a
# package or to test: the venv's scripts still name /opt/dcmrecv/bin/python, so the
# tree works once copied to /.  The user is created only where DIR/etc/passwd exists.
# --python: the interpreter of the venv, default Debian's /usr/bin/python3 (3.11 or
# later): the user dicom must be able to run it (a Python under /root cannot be).
# scripts/uninstall.sh reverses this.
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=$PWD
umask 022

root=${DESTDIR:-}
python=/usr/bin/python3
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root=${2:?--root needs a directory}; shift 2 ;;
        --root=*) root=${1#--root=}; shift ;;
        --python) python=${2:?--python needs an interpreter}; shift 2 ;;
        --python=*) python=${1#--python=}; shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
root=${root%/}
if [ -n "$root" ]; then
    mkdir -p "$root"
    root=$(cd "$root" && pwd)
    [ "$root" != / ] || root=""
fi
if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run it as root (sudo bash scripts/install.sh), or stage with --root DIR" >&2
    exit 1
fi

OPT=/opt/dcmrecv
CONF=/etc/dcmrecv
UNITS=/usr/local/lib/systemd/system
BIN=/usr/local/bin
DATA=/var/lib/dicom
LOGS=/var/log/dcmrecv
USER_NAME=dicom
say() { printf '== %s\n' "$*"; }

if [ "$python" = /usr/bin/python3 ] && [ ! -x /usr/bin/python3 ]; then
    say "installing python3"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 >/dev/null
fi
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || {
    echo "install.sh: dcmrecv needs Python 3.11 or later ($python)" >&2
    exit 1
}
if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    say "installing python3-venv"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi

# --- the venv ----------------------------------------------------------------------------
say "virtual environment $root$OPT"
rm -rf "$root$OPT"
"$python" -m venv "$root$OPT"
"$root$OPT/bin/python" -m pip install -q --disable-pip-version-check "$checkout"
# pip and setuptools are not needed to run, and an installation without them offers less.
"$root$OPT/bin/python" -m pip uninstall -q -y pip setuptools 2>/dev/null || true
if [ -n "$root" ]; then
    # The scripts name the interpreter by absolute path: the one they will have in /.
    for file in "$root$OPT"/bin/*; do
        [ -f "$file" ] && [ ! -L "$file" ] || continue
        sed -i -e "1s|^#!$root$OPT/|#!$OPT/|" -e "s|$root$OPT|$OPT|g" "$file"
    done
    sed -i "s|$root$OPT|$OPT|g" "$root$OPT/pyvenv.cfg"
fi
for command in dcmrecv storescp; do
    head -n 5 "$root$OPT/bin/$command" | grep -q "dcmrecv.commands.$command" \
        || { echo "install.sh: $OPT/bin/$command is not dcmrecv's" >&2; exit 1; }
done

# --- commands ----------------------------------------------------------------------------
mkdir -p "$root$BIN"
for command in dcmrecv storescp; do
    ln -sfn "$OPT/bin/$command" "$root$BIN/$command"
done
say "commands: $BIN/dcmrecv, $BIN/storescp (DCMTK's stay in /usr/bin)"

# --- configuration: keep what the administrator changed ------------------------------------
install_config() { # install_config SOURCE TARGET
    local source=$1 target=$root$2
    mkdir -p "$(dirname "$target")"
    if [ -f "$target" ] && ! cmp -s "$source" "$target"; then
        install -m 0644 "$source" "$target.new"
        say "kept your $2; the shipped one is $2.new"
    else
        install -m 0644 "$source" "$target"
    fi
}
install_config storescp.cfg "$CONF/storescp.cfg"
for profile in profiles/*; do
    install_config "$profile" "$CONF/profiles/$(basename "$profile")"
done
install_config deploy/logger.cfg "$CONF/logger.cfg"
say "configuration: $CONF (storescp.cfg, profiles/, logger.cfg)"

# --- systemd units (ours: replaced on upgrade; override with systemctl edit) --------------
mkdir -p "$root$UNITS"
for unit in deploy/systemd/*; do
    install -m 0644 "$unit" "$root$UNITS/$(basename "$unit")"
done
say "systemd units: $UNITS/{dcmrecv.socket,dcmrecv.service,storescp.socket,storescp@.service}"

# --- user and directories ------------------------------------------------------------------
user_exists() {
    if [ -n "$root" ]; then
        grep -q "^$USER_NAME:" "$root/etc/passwd"
    else
        getent passwd "$USER_NAME" >/dev/null
    fi
}
have_user=true
if [ -n "$root" ] && [ ! -f "$root/etc/passwd" ]; then
    have_user=false
    say "no $root/etc/passwd: on the target, create the user: useradd --system --user-group" \
        "--home-dir $DATA --no-create-home --shell /usr/sbin/nologin $USER_NAME"
elif ! user_exists; then
    useradd ${root:+--root "$root"} --system --user-group --home-dir "$DATA" --no-create-home \
        --shell /usr/sbin/nologin --comment "DICOM storage receiver" "$USER_NAME"
    say "created the user $USER_NAME"
fi
mkdir -p "$root$DATA" "$root$LOGS"
chmod 0750 "$root$DATA" "$root$LOGS"
if $have_user; then
    if [ -n "$root" ]; then
        ids=$(awk -F: -v u="$USER_NAME" '$1 == u { print $3 ":" $4 }' "$root/etc/passwd")
    else
        ids="$USER_NAME:$USER_NAME"
    fi
    chown "$ids" "$root$DATA" "$root$LOGS"
fi
say "received files: $DATA; storescp -id log: $LOGS"
if [ -z "$root" ]; then
    # The units and inetd run the commands as dicom: it must be able to.
    setpriv --reuid="$USER_NAME" --regid="$USER_NAME" --init-groups \
        "$BIN/storescp" --version >/dev/null 2>&1 \
        || { echo "install.sh: the user $USER_NAME cannot run $BIN/storescp" >&2; exit 1; }
fi

# --- what is left to do --------------------------------------------------------------------
if [ -z "$root" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    say "start one receiver on port 104:  systemctl enable --now dcmrecv.socket"
    say "or one storescp per connection:  systemctl enable --now storescp.socket"
else
    say "systemd is not running here (or this is a staging root): nothing was enabled."
    say "Where systemd runs: systemctl daemon-reload && systemctl enable --now dcmrecv.socket"
    say "(or storescp.socket for one storescp per connection; inetd: see README)"
fi
say "installed dcmrecv $("$root$OPT/bin/python" -c 'import dcmrecv; print(dcmrecv.__version__)')"

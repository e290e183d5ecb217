#!/usr/bin/env bash
# Follow README.md's deployment instructions as a user types them, with real parts, and
# check that they work.  The commands are read from the README (its blocks marked
# <!-- run: NAME -->, tests/readme.py), so what runs is what the README says; where a
# test must differ (a loopback address or port instead of the public one, podman's
# storage options for a machine without a container service) it says so.  Each check
# prints what it ran.
#
#   quickstart          bash scripts/run.sh in a fresh copy of the checkout; DCMTK's
#                       storescu sends pydicom's CT_small.dcm
#   quickstart-options  the example with other arguments (a profile, +ssd, port 11113)
#   container           podman build --format docker, run, storescu, logs, stop
#   kube-play           deploy/kubernetes.yaml under podman kube play, one replica
#   install             scripts/install.sh in a staging root (systemd-analyze verify of
#                       the units there), then on this machine for real
#   inetd               the inetd.conf line under Debian's openbsd-inetd (inetd -d) on
#                       a loopback port, with what install.sh installed
#   units               dcmrecv.service and storescp@.service's ExecStart, as the user
#                       dicom, under systemd-socket-activate (Accept=no and Accept=yes)
#   scrape-job          the scrape job in a real Prometheus (Debian's), 1 s interval,
#                       queried over its HTTP API for the instances sent
#   uninstall           scripts/uninstall.sh --purge
#
# Needs root: it installs Debian packages (dcmtk openbsd-inetd prometheus systemd podman
# runc curl), and install.sh writes /opt/dcmrecv, /usr/local/bin, /etc/dcmrecv, the
# user dicom; it refuses to run where /opt/dcmrecv exists already.  Uses ports 11112,
# 11113 and 11180 (the README's) and free loopback ports.  PYTHON: a Python with pydicom
# (default .venv/bin/python).  Podman's storage and the cached base image are
# scripts/container-test.sh's (it is run first when the base image is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
PODMAN_ROOT=${PODMAN_ROOT:-/var/lib/dcmrecv-container-test}
PODMAN_RUNROOT=${PODMAN_RUNROOT:-/run/dcmrecv-container-test}
LOCAL_BASE_TAG=${LOCAL_BASE_TAG:-localhost/dcmrecv-base:bookworm}
DEADLINE=120 # seconds to wait for anything that should happen in one or two

say() { printf '== %s\n' "$*"; }
ran() { printf '   $ %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
T0=$(now)

[ "$(id -u)" -eq 0 ] || fail "run it as root (it installs packages and scripts/install.sh)"
"$PYTHON" -c 'import pydicom' 2>/dev/null || fail "$PYTHON has no pydicom (set PYTHON)"

# --- Debian packages -------------------------------------------------------------------------
packages=()
for pair in storescu:dcmtk inetd:openbsd-inetd prometheus:prometheus \
    systemd-socket-activate:systemd systemd-analyze:systemd podman:podman runc:runc \
    curl:curl debootstrap:debootstrap; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || packages+=("${pair#*:}")
done
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || packages+=(python3-venv)
if [ ${#packages[@]} -gt 0 ]; then
    mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)
    say "installing Debian packages: ${packages[*]}"
    # Installing openbsd-inetd or prometheus must not start them as services here.
    policy_made=false
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        policy_made=true
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
    if $policy_made; then rm -f /usr/sbin/policy-rc.d; fi
fi
STORESCU=/usr/bin/storescu
command -v sudo >/dev/null 2>&1 || sudo() { "$@"; } # the README's "sudo" as root
export -f sudo 2>/dev/null || true

# --- state to clean up -----------------------------------------------------------------------
WORK=$(mktemp -d /tmp/dcmrecv-deployment.XXXXXX)
chmod 0755 "$WORK"
PIDS=()
INSTALLED=false
made_data_dir=false
PODMAN=(podman --storage-driver vfs --root "$PODMAN_ROOT/storage" --runroot "$PODMAN_RUNROOT"
    --runtime runc --cgroup-manager cgroupfs)
printf '[containers]\ndefault_ulimits = []\n' >"$WORK/containers.conf"
export CONTAINERS_CONF="$WORK/containers.conf"
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    done
    if command -v podman >/dev/null 2>&1; then
        "${PODMAN[@]}" rm -f dcmrecv >/dev/null 2>&1 || true
        "${PODMAN[@]}" pod rm -f dcmrecv-pod-0 >/dev/null 2>&1 || true
        "${PODMAN[@]}" volume rm -f dicom-data dcmrecv-data >/dev/null 2>&1 || true
        "${PODMAN[@]}" rmi -f dcmrecv dcmrecv:0.1.0 >/dev/null 2>&1 || true
    fi
    if $INSTALLED; then
        if $made_data_dir; then rm -rf /var/lib/dicom; fi
        bash "$ROOT/scripts/uninstall.sh" --purge >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# A process group of its own, so that the cleanup stops what it started too.
start() { # start LOG DIR COMMAND...: run in DIR in the background; its PID is ${PIDS[-1]}
    local log=$1 dir=$2
    shift 2
    (cd "$dir" && exec setsid "$@") >"$log" 2>&1 </dev/null &
    PIDS+=($!)
}
wait_for_line() { # wait_for_line TEXT LOG PID: a line containing TEXT in LOG
    local _
    for _ in $(seq $((DEADLINE * 5))); do
        grep -qF -- "$1" "$2" && return 0
        kill -0 "$3" 2>/dev/null || { cat "$2" >&2; fail "exited before saying: $1"; }
        sleep 0.2
    done
    cat "$2" >&2
    fail "no '$1' after ${DEADLINE} s"
}
stop() { # stop PID: SIGTERM to its process group, wait; its exit code is in $code
    local pid=$1
    kill -TERM -- "-$pid" 2>/dev/null || true
    code=0
    wait "$pid" || code=$?
}
wait_for_port() { # wait_for_port PORT PID LOG
    local _
    for _ in $(seq $((DEADLINE * 5))); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        kill -0 "$2" 2>/dev/null || { cat "$3" >&2; fail "exited before listening on $1"; }
        sleep 0.2
    done
    cat "$3" >&2
    fail "nothing listens on 127.0.0.1:$1 after ${DEADLINE} s"
}
port_is_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
need_port() {
    port_is_free "$1" || fail "port $1 is in use here: the README's instruction needs it"
}
readme_block() { # readme_block NAME: the commands of the README's run block NAME
    "$PYTHON" "$ROOT/tests/readme.py" "$1"
}
commands_of() { # the block's lines without comments and blank lines
    sed -e 's/[[:space:]]\{1,\}# .*$//' -e '/^[[:space:]]*#/d' -e '/^[[:space:]]*$/d'
}
send_ct() { # send_ct PORT [FILE]: DCMTK's storescu sends the CT; fails loudly
    local file=${2:-$CT}
    ran "$STORESCU -aec DCMRECV 127.0.0.1 $1 $(basename "$file")"
    "$STORESCU" -aec DCMRECV 127.0.0.1 "$1" "$file" >"$WORK/storescu.log" 2>&1 \
        || { cat "$WORK/storescu.log" >&2; fail "storescu to port $1 failed"; }
}
wait_for_file() { # wait_for_file PATTERN DIR: a stored file named PATTERN below DIR
    local _ found
    for _ in $(seq $((DEADLINE * 5))); do
        found=$(find "$2" -name "$1" -type f 2>/dev/null | head -n 1)
        if [ -n "$found" ]; then
            echo "$found"
            return 0
        fi
        sleep 0.2
    done
    fail "no file $1 below $2"
}
check() { printf '   ok: %s\n' "$*"; }

CT=$("$PYTHON" -c 'from pydicom.data import get_testdata_file; print(get_testdata_file("CT_small.dcm"))')
UID_CT=$("$PYTHON" -c 'import sys, pydicom; print(pydicom.dcmread(sys.argv[1]).SOPInstanceUID)' "$CT")
NAME_CT="CT.$UID_CT" # DCMTK's name: modality prefix and SOP Instance UID (+fd)

# --- a fresh copy of the checkout, as a user has it after cloning -----------------------------
CLONE=$WORK/clone
mkdir -p "$CLONE"
git -C "$ROOT" ls-files -z | (cd "$ROOT" && xargs -0 tar -cf - --no-recursion) | tar -xf - -C "$CLONE"
cp "$CT" "$CLONE/image.dcm" # the README's image.dcm

# --- quick start -------------------------------------------------------------------------------
started=$(now)
say "quickstart: README 'Quick start', in a copy of the checkout"
mapfile -t QUICK < <(readme_block quickstart | commands_of)
[ "${QUICK[1]:-}" = "bash scripts/test.sh" ] || fail "the quick start's second command changed"
grep -qx 'bash scripts/test.sh' "$ROOT/.ci/run" || fail ".ci/run does not run bash scripts/test.sh"
check "its second command, ${QUICK[1]}, is what .ci/run runs first"
need_port 11112
ran "${QUICK[0]}"
start "$WORK/run.log" "$CLONE" bash -c "${QUICK[0]}"
RUN_PID=${PIDS[-1]}
wait_for_port 11112 "$RUN_PID" "$WORK/run.log"
send_ct 11112 "$CLONE/image.dcm"
wait_for_file "$NAME_CT" "$CLONE/data" >/dev/null
check "data/$NAME_CT stored"
stop "$RUN_PID"
[ "$code" = 0 ] || { cat "$WORK/run.log" >&2; fail "scripts/run.sh exited with $code after SIGTERM"; }
check "exit code 0 after SIGTERM ($(took "$started"))"

started=$(now)
say "quickstart-options: README 'Quick start', other arguments"
mapfile -t OPTIONS < <(readme_block quickstart-options | commands_of)
last=$((${#OPTIONS[@]} - 1))
for index in "${!OPTIONS[@]}"; do
    ran "${OPTIONS[$index]}"
    if [ "$index" -lt "$last" ]; then (cd "$CLONE" && bash -c "${OPTIONS[$index]}"); fi
done
port=${OPTIONS[$last]##* }
need_port "$port"
start "$WORK/run2.log" "$CLONE" bash -c "${OPTIONS[$last]}"
RUN_PID=${PIDS[-1]}
wait_for_port "$port" "$RUN_PID" "$WORK/run2.log"
send_ct "$port" "$CLONE/image.dcm"
stored=$(wait_for_file "$NAME_CT" "$CLONE/incoming")
check "${stored#"$CLONE"/} stored (+ssd: data/YYYY/MM/DD from the Series Date)"
stop "$RUN_PID"
[ "$code" = 0 ] || { cat "$WORK/run2.log" >&2; fail "exit code $code after SIGTERM"; }
check "exit code 0 after SIGTERM ($(took "$started"))"

# --- the container, with podman ---------------------------------------------------------------
# The README's commands, with a shell function "podman" (and "docker") that adds what a
# machine without a container service and registry needs: scripts/container-test.sh's
# storage and base image, the build's chroot isolation, and the host's pip settings.
# A published port is bound to 127.0.0.1 only.
if ! "${PODMAN[@]}" image exists "$LOCAL_BASE_TAG" 2>/dev/null; then
    say "no cached base image: scripts/container-test.sh makes it"
    PYTHON=$PYTHON bash "$ROOT/scripts/container-test.sh"
fi
BUILD_EXTRA=(--isolation chroot --network host --build-arg "BASE_IMAGE=$LOCAL_BASE_TAG")
[ -d /etc/ssl/certs ] && BUILD_EXTRA+=(-v /etc/ssl/certs:/etc/ssl/certs:ro)
[ -f /etc/pip.conf ] && BUILD_EXTRA+=(-v /etc/pip.conf:/etc/pip.conf:ro)
for var in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST PIP_DEFAULT_TIMEOUT; do
    if [ -n "${!var:-}" ]; then BUILD_EXTRA+=(--build-arg "$var=${!var}"); fi
done
cat >"$WORK/podman.sh" <<EOF
podman() {
    local args=() arg publish=false
    for arg in "\$@"; do
        if \$publish && [[ \$arg =~ ^[0-9]+:[0-9]+\$ ]]; then arg=127.0.0.1:\$arg; fi
        publish=false
        [ "\$arg" = -p ] && publish=true
        args+=("\$arg")
    done
    if [ "\${args[0]}" = build ]; then
        args=(build $(printf '%q ' "${BUILD_EXTRA[@]}") "\${args[@]:1}")
    fi
    command $(printf '%q ' "${PODMAN[@]}") "\${args[@]}"
}
docker() { podman "\$@"; }
storescu() { $STORESCU "\$@"; }
EOF
run_lines() { # run_lines LOG: each command line on stdin in the clone, podman as above
    local line
    while IFS= read -r line; do
        ran "$line"
        (cd "$CLONE" && bash -c ". '$WORK/podman.sh'; $line") >>"$1" 2>&1 \
            || { tail -n 30 "$1" >&2; fail "$line"; }
    done
}

started=$(now)
say "container: README 'Running in a container' (podman, as the README's note says)"
mapfile -t CONTAINER < <(readme_block container | commands_of)
# The build line is docker's; podman's is in its comment.
build=$(readme_block container | grep -o 'podman: podman build[^#]*' | sed 's/^podman: //')
[ -n "$build" ] || fail "the README gives no podman build command"
[[ $build == *"--format docker"* ]] || fail "the README's podman build lacks --format docker"
need_port 11112
: >"$WORK/container.log"
printf '%s\n' "$build" | run_lines "$WORK/container.log"
"${PODMAN[@]}" image inspect dcmrecv >"$WORK/image.json"
tr -d ' \n' <"$WORK/image.json" | grep -q '"Healthcheck":{"Test":\["CMD","python","-m","dcmrecv.commands.healthcheck"\]' \
    || fail "the image built as the README says has no HEALTHCHECK"
check "the image has the C-ECHO HEALTHCHECK"
for line in "${CONTAINER[@]:1}"; do
    case "$line" in
        "docker run "*)
            printf '%s\n' "$line" | run_lines "$WORK/container.log"
            for _ in $(seq $((DEADLINE * 5))); do
                "${PODMAN[@]}" logs dcmrecv 2>&1 | grep -q 'listening' && break
                sleep 0.2
            done
            ;;
        "storescu "*)
            printf '%s\n' "$line" | run_lines "$WORK/container.log"
            ;;
        "docker logs "*)
            printf '%s\n' "$line" | run_lines "$WORK/logs.log"
            grep -q 'I: Association summary: .*, 1 stored, 0 failed' "$WORK/logs.log" \
                || { cat "$WORK/logs.log" >&2; fail "no association summary in the log"; }
            check "the log has the association summary"
            ;;
        "docker stop "*)
            printf '%s\n' "$line" | run_lines "$WORK/container.log"
            code=$("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' dcmrecv)
            [ "$code" = 0 ] || fail "exit code $code after docker stop"
            check "exit code 0 after the stop"
            ;;
        *) printf '%s\n' "$line" | run_lines "$WORK/container.log" ;;
    esac
done
volume=$("${PODMAN[@]}" volume inspect --format '{{.Mountpoint}}' dicom-data)
[ -f "$volume/$NAME_CT" ] || fail "$NAME_CT is not in the volume dicom-data"
check "$NAME_CT in the volume dicom-data ($(took "$started"))"
"${PODMAN[@]}" rm -f dcmrecv >/dev/null 2>&1
"${PODMAN[@]}" volume rm -f dicom-data >/dev/null 2>&1

started=$(now)
say "kube-play: README 'Compose and Kubernetes', deploy/kubernetes.yaml under podman kube play"
need_port 11112
need_port 11180
: >"$WORK/kube.log"
while IFS= read -r line; do
    case "$line" in
        "curl "*)
            ran "$line"
            for _ in $(seq $((DEADLINE * 5))); do
                (cd "$CLONE" && bash -c "$line") >"$WORK/metrics.txt" 2>/dev/null || true
                grep -q 'status="success"} 1.0' "$WORK/metrics.txt" && break
                sleep 0.2
            done
            grep -q '^dcmrecv_instances_total{status="success"} 1.0' "$WORK/metrics.txt" \
                || { cat "$WORK/metrics.txt" >&2; fail "/metrics does not count the CT"; }
            check "/metrics on 11180 counts the CT"
            ;;
        "storescu "*)
            for _ in $(seq $((DEADLINE * 5))); do
                curl -sf 127.0.0.1:11180/readyz >/dev/null 2>&1 && break
                sleep 0.2
            done
            printf '%s\n' "$line" | run_lines "$WORK/kube.log"
            ;;
        *"podman pod stop"*)
            printf '%s\n' "$line" | run_lines "$WORK/kube.log"
            code=$("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' dcmrecv-pod-0-dcmrecv)
            [ "$code" = 0 ] || fail "the receiver's exit code is $code after the pod stop"
            check "exit code 0 after the pod stop"
            ;;
        *) printf '%s\n' "$line" | run_lines "$WORK/kube.log" ;;
    esac
done < <(readme_block kube-play | commands_of)
"${PODMAN[@]}" pod exists dcmrecv-pod-0 2>/dev/null && fail "kube down left the pod"
volume=$("${PODMAN[@]}" volume inspect --format '{{.Mountpoint}}' dcmrecv-data)
stored=$(find "$volume" -name "$NAME_CT" -type f | head -n 1)
[ -n "$stored" ] || fail "$NAME_CT is not in the volume dcmrecv-data"
check "${stored#"$volume"/} in the claim's volume ($(took "$started"))"
"${PODMAN[@]}" volume rm -f dcmrecv-data >/dev/null 2>&1
"${PODMAN[@]}" rmi -f dcmrecv dcmrecv:0.1.0 >/dev/null 2>&1 || true

# --- install.sh: staged, then on this machine --------------------------------------------------
started=$(now)
say "install: scripts/install.sh --root (staged), systemd-analyze verify there"
STAGE=$WORK/stage
# systemd-analyze verify --root resolves the units' dependencies (sysinit.target, ...)
# below the root: give the staging root the system's units.
mkdir -p "$STAGE/usr/lib/systemd"
cp -a /usr/lib/systemd/system "$STAGE/usr/lib/systemd/"
ran "bash scripts/install.sh --root $STAGE"
(cd "$CLONE" && bash scripts/install.sh --root "$STAGE") >"$WORK/stage.log" 2>&1 \
    || { cat "$WORK/stage.log" >&2; fail "install.sh --root failed"; }
grep -q 'systemd is not running here (or this is a staging root)' "$WORK/stage.log" \
    || fail "install.sh --root does not say that nothing was enabled"
[ "$(head -n 1 "$STAGE/opt/dcmrecv/bin/storescp")" = "#!/opt/dcmrecv/bin/python" ] \
    || fail "the staged storescp does not name /opt/dcmrecv/bin/python"
[ "$(readlink "$STAGE/usr/local/bin/storescp")" = /opt/dcmrecv/bin/storescp ] \
    || fail "the staged /usr/local/bin/storescp link"
check "staged: the venv's scripts name /opt/dcmrecv/bin/python, links into /opt/dcmrecv"
UNITS=(dcmrecv.socket dcmrecv.service storescp.socket storescp@.service)
units=()
for unit in "${UNITS[@]}"; do units+=("$STAGE/usr/local/lib/systemd/system/$unit"); done
ran "systemd-analyze verify --root=$STAGE ${UNITS[*]}"
systemd-analyze verify --root="$STAGE" "${units[@]}" >"$WORK/verify.log" 2>&1 \
    || { cat "$WORK/verify.log" >&2; fail "systemd-analyze verify refused the units"; }
[ ! -s "$WORK/verify.log" ] || { cat "$WORK/verify.log" >&2; fail "systemd-analyze verify warned"; }
check "systemd-analyze verify accepts ${UNITS[*]}"
echo "# a site's change" >>"$STAGE/etc/dcmrecv/storescp.cfg"
ran "bash scripts/install.sh --root $STAGE   # again, storescp.cfg changed"
(cd "$CLONE" && bash scripts/install.sh --root "$STAGE") >"$WORK/stage.log" 2>&1 \
    || { cat "$WORK/stage.log" >&2; fail "install.sh --root failed the second time"; }
tail -n 1 "$STAGE/etc/dcmrecv/storescp.cfg" | grep -qx "# a site's change" \
    || fail "a second install.sh replaced a changed storescp.cfg"
cmp -s "$CLONE/storescp.cfg" "$STAGE/etc/dcmrecv/storescp.cfg.new" \
    || fail "a second install.sh did not put the shipped storescp.cfg beside it as .new"
check "installed again: the changed storescp.cfg is kept, the shipped one is storescp.cfg.new"
ran "bash scripts/uninstall.sh --root $STAGE --purge"
bash "$ROOT/scripts/uninstall.sh" --root "$STAGE" --purge >/dev/null
for path in opt/dcmrecv usr/local/bin/storescp usr/local/lib/systemd/system/dcmrecv.service etc/dcmrecv; do
    [ ! -e "$STAGE/$path" ] || fail "uninstall.sh --root left $path"
done
check "uninstall.sh --root --purge removed them ($(took "$started"))"

started=$(now)
say "install: README 'Installing on a host', on this machine"
[ ! -e /opt/dcmrecv ] || fail "/opt/dcmrecv exists: not overwriting an installation"
[ -e /var/lib/dicom ] || made_data_dir=true
INSTALLED=true
readme_block install | commands_of | run_lines "$WORK/install.log"
grep -q 'systemd is not running here\|systemctl enable --now dcmrecv.socket' "$WORK/install.log" \
    || fail "install.sh does not say how to enable the units"
/usr/local/bin/storescp --version | grep -q '^\$dcmrecv: storescp' || fail "storescp is not ours"
/usr/local/bin/dcmrecv --version | grep -q '^\$dcmrecv: dcmrecv' || fail "dcmrecv is not ours"
[ "$(stat -c %U /var/lib/dicom)" = dicom ] || fail "/var/lib/dicom does not belong to dicom"
check "/usr/local/bin/dcmrecv and storescp are ours, /var/lib/dicom is dicom's"
ran "systemd-analyze verify ${UNITS[*]}"
units=()
for unit in "${UNITS[@]}"; do units+=("/usr/local/lib/systemd/system/$unit"); done
systemd-analyze verify "${units[@]}" >"$WORK/verify.log" 2>&1 \
    || { cat "$WORK/verify.log" >&2; fail "systemd-analyze verify refused the installed units"; }
check "systemd-analyze verify accepts the installed units ($(took "$started"))"

# --- inetd ---------------------------------------------------------------------------------
started=$(now)
say "inetd: README 'Started by inetd or systemd', under openbsd-inetd -d on a loopback port"
line=$(readme_block inetd | commands_of)
port=$(free_port)
service=${line%% *}
[ "$service" = acr-nema ] || fail "the inetd line's service is $service"
[ "$(getent services acr-nema/tcp | awk '{print $2}')" = 104/tcp ] || fail "acr-nema is not 104/tcp"
check "acr-nema is 104/tcp in /etc/services"
# Started with another service, then given the README's line and SIGHUP, which is what
# "service openbsd-inetd reload" sends.
placeholder=$(free_port)
echo "127.0.0.1:$placeholder stream tcp nowait nobody /bin/true true" >"$WORK/inetd.conf"
ran "inetd -d $WORK/inetd.conf   # serving /bin/true on 127.0.0.1:$placeholder"
start "$WORK/inetd.log" "$WORK" inetd -d "$WORK/inetd.conf"
INETD_PID=${PIDS[-1]}
wait_for_port "$placeholder" "$INETD_PID" "$WORK/inetd.log"
echo "127.0.0.1:$port ${line#* }" >"$WORK/inetd.conf"
ran "kill -HUP $INETD_PID   # inetd.conf now: 127.0.0.1:$port ${line#* }"
kill -HUP "$INETD_PID"
wait_for_port "$port" "$INETD_PID" "$WORK/inetd.log"
rm -f "/var/lib/dicom/$NAME_CT"
send_ct "$port"
send_ct "$port"
stored=/var/lib/dicom/$NAME_CT
[ -f "$stored" ] || fail "no $stored"
[ "$(stat -c %U "$stored")" = dicom ] || fail "$stored does not belong to dicom"
grep -q 'storescp\[[0-9]*\] INFO: Association Received' /var/log/dcmrecv/storescp.log \
    || { cat /var/log/dcmrecv/storescp.log >&2; fail "no log lines in /var/log/dcmrecv/storescp.log"; }
check "$stored stored by the user dicom, twice; /var/log/dcmrecv/storescp.log has the log"
stop "$INETD_PID"
check "inetd stopped ($(took "$started"))"

# --- the systemd units' commands under systemd-socket-activate -------------------------------
unit_value() { # unit_value UNIT KEY
    sed -n "s/^$2=//p" "/usr/local/lib/systemd/system/$1" | tail -n 1
}
as_unit_user() { # the unit's User= and Group=, as systemd would set them
    echo setpriv --reuid="$(unit_value "$1" User)" --regid="$(unit_value "$1" Group)" --init-groups
}
started=$(now)
say "units: dcmrecv.service's ExecStart under systemd-socket-activate (Accept=no)"
exec_start=$(unit_value dcmrecv.service ExecStart)
port=$(free_port)
ran "systemd-socket-activate -l 127.0.0.1:$port $(as_unit_user dcmrecv.service) $exec_start"
# shellcheck disable=SC2046 # the words of the unit's command line
start "$WORK/activated.log" "$WORK" systemd-socket-activate -l "127.0.0.1:$port" \
    $(as_unit_user dcmrecv.service) $exec_start
ACTIVATED=${PIDS[-1]}
wait_for_line "Listening on 127.0.0.1:$port" "$WORK/activated.log" "$ACTIVATED"
rm -f "/var/lib/dicom/$NAME_CT"
send_ct "$port" # the first connection starts the receiver; it waits in the queue
[ -f "/var/lib/dicom/$NAME_CT" ] || fail "no /var/lib/dicom/$NAME_CT"
send_ct "$port"
grep -q 'socket activation: using the listening socket systemd passed' "$WORK/activated.log" \
    || { cat "$WORK/activated.log" >&2; fail "the receiver did not take systemd's socket"; }
stop "$ACTIVATED"
[ "$code" = 0 ] || { cat "$WORK/activated.log" >&2; fail "exit code $code after SIGTERM"; }
check "two associations on systemd's socket, as dicom; exit code 0 after SIGTERM ($(took "$started"))"

started=$(now)
say "units: storescp@.service's ExecStart under systemd-socket-activate --accept --inetd (Accept=yes)"
exec_start=$(unit_value storescp@.service ExecStart)
[ "$(unit_value storescp@.service StandardInput)" = socket ] || fail "StandardInput is not socket"
[ "$(unit_value storescp.socket Accept)" = yes ] || fail "storescp.socket has not Accept=yes"
port=$(free_port)
ran "systemd-socket-activate -l 127.0.0.1:$port --accept --inetd $(as_unit_user storescp@.service) $exec_start"
# shellcheck disable=SC2046
start "$WORK/accept.log" "$WORK" systemd-socket-activate -l "127.0.0.1:$port" --accept --inetd \
    $(as_unit_user storescp@.service) $exec_start
ACCEPTING=${PIDS[-1]}
wait_for_line "Listening on 127.0.0.1:$port" "$WORK/accept.log" "$ACCEPTING"
rm -f "/var/lib/dicom/$NAME_CT"
send_ct "$port"
send_ct "$port"
[ -f "/var/lib/dicom/$NAME_CT" ] || fail "no /var/lib/dicom/$NAME_CT"
stop "$ACCEPTING"
check "two connections, one storescp -id each, as dicom ($(took "$started"))"

# --- Prometheus -----------------------------------------------------------------------------
started=$(now)
say "scrape-job: README 'Operations', the scrape job in Debian's Prometheus"
need_port 11180
dicom_port=$(free_port)
mkdir -p "$WORK/scraped"
ran "dcmrecv -xf /etc/dcmrecv/storescp.cfg Default -od $WORK/scraped --http-port 11180 --http-address 127.0.0.1 $dicom_port"
start "$WORK/scraped.log" "$WORK" /usr/local/bin/dcmrecv -xf /etc/dcmrecv/storescp.cfg Default \
    -od "$WORK/scraped" --http-port 11180 --http-address 127.0.0.1 "$dicom_port"
RECEIVER=${PIDS[-1]}
wait_for_port "$dicom_port" "$RECEIVER" "$WORK/scraped.log"
readme_block scrape-job \
    | sed -e 's/scrape_interval: 30s/scrape_interval: 1s/' \
        -e 's/dicom-gateway\.example\.org:11180/127.0.0.1:11180/' >"$WORK/prometheus.yml"
grep -q '127.0.0.1:11180' "$WORK/prometheus.yml" || fail "the scrape job has no :11180 target"
promtool check config "$WORK/prometheus.yml" >/dev/null || fail "promtool refuses the scrape job"
web=$(free_port)
ran "prometheus --config.file=prometheus.yml (the README's job, scrape_interval 1s, target 127.0.0.1:11180)"
start "$WORK/prometheus.log" "$WORK" prometheus --config.file="$WORK/prometheus.yml" \
    --storage.tsdb.path="$WORK/tsdb" --web.listen-address="127.0.0.1:$web"
PROMETHEUS=${PIDS[-1]}
wait_for_port "$web" "$PROMETHEUS" "$WORK/prometheus.log"
for _ in 1 2 3; do send_ct "$dicom_port"; done
query='dcmrecv_instances_total{job="dcmrecv",status="success"}'
ran "curl 127.0.0.1:$web/api/v1/query --data-urlencode 'query=$query'"
value=""
for _ in $(seq $((DEADLINE * 2))); do
    value=$(curl -s "127.0.0.1:$web/api/v1/query" --data-urlencode "query=$query" \
        | "$PYTHON" -c 'import json, sys; r = json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' \
        2>/dev/null) || true
    [ "$value" = 3 ] && break
    sleep 0.5
done
[ "$value" = 3 ] || { tail -n 20 "$WORK/prometheus.log" >&2; fail "Prometheus has $query = '$value', not 3"; }
check "Prometheus scraped $query = 3 ($(took "$started"))"
stop "$PROMETHEUS"
stop "$RECEIVER"
[ "$code" = 0 ] || fail "the receiver's exit code $code after SIGTERM"

# --- uninstall -----------------------------------------------------------------------------
started=$(now)
say "uninstall: scripts/uninstall.sh --purge"
if $made_data_dir; then rm -f "/var/lib/dicom/$NAME_CT"; fi
ran "bash scripts/uninstall.sh --purge"
bash "$ROOT/scripts/uninstall.sh" --purge >"$WORK/uninstall.log" 2>&1 \
    || { cat "$WORK/uninstall.log" >&2; fail "uninstall.sh failed"; }
INSTALLED=false
for path in /opt/dcmrecv /usr/local/bin/dcmrecv /usr/local/bin/storescp /etc/dcmrecv \
    /usr/local/lib/systemd/system/dcmrecv.service; do
    [ ! -e "$path" ] || fail "uninstall.sh left $path"
done
! getent passwd dicom >/dev/null || fail "uninstall.sh --purge left the user dicom"
if $made_data_dir; then [ ! -e /var/lib/dicom ] || fail "uninstall.sh --purge left an empty /var/lib/dicom"; fi
check "everything install.sh made is gone ($(took "$started"))"

say "deployment test passed in $(took "$T0")"

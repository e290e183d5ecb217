#!/usr/bin/env bash
# Build the container image and exercise it as an operator would:
#   1. build it (Dockerfile at the repository root);
#   2. start it with its default command and a host directory mounted on /data;
#   3. wait until its HEALTHCHECK (a real C-ECHO) reports healthy;
#   4. send a series with DCMTK's storescu and check the files in the mounted directory;
#   5. check the log ("Association summary" line) and that it runs as a non-root user;
#   6. stop it while a second series is being sent: exit code 0, nothing partial in /data.
#
# Engine: Docker when a Docker engine answers, otherwise podman (rootful), set up for
# machines without a container engine service: Debian's podman and runc,
# --storage-driver vfs, builds with --format docker (the OCI format has no HEALTHCHECK)
# and --isolation chroot, runs with --runtime runc --cgroup-manager cgroupfs and the host
# network, and a containers.conf with default_ulimits = [].
#
# Base image: $BASE_IMAGE if set.  With Docker, otherwise the Dockerfile's default.
# With podman, otherwise a local Debian bookworm image made with debootstrap from the
# Debian mirror that apt is configured with; it is kept under $LOCAL_BASE_TAG and reused.
#
# Environment: IMAGE (tag to build, default localhost/dcmrecv:test), BASE_IMAGE,
# LOCAL_BASE_TAG, PODMAN_ROOT (podman's storage for this script, where the base image
# is cached; default /var/lib/dcmrecv-container-test; delete it to start cold),
# PYTHON (a Python with pydicom, which makes the test series; default python3),
# SERIES_SIZE (instances in the series, default 20).
# Needs root (or sudo) for apt-get and podman.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

IMAGE=${IMAGE:-localhost/dcmrecv:test}
LOCAL_BASE_TAG=${LOCAL_BASE_TAG:-localhost/dcmrecv-base:bookworm}
PYTHON=${PYTHON:-python3}
SERIES_SIZE=${SERIES_SIZE:-20}
STOP_TIMEOUT=60
PODMAN_ROOT=${PODMAN_ROOT:-/var/lib/dcmrecv-container-test}
PODMAN_RUNROOT=${PODMAN_RUNROOT:-/run/dcmrecv-container-test}

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
say() { printf '== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
T0=$(now)

apt_install() {
    say "installing Debian packages: $*"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# DCMTK's storescu, not pynetdicom's look-alike script that may come first on PATH.
STORESCU=/usr/bin/storescu
[ -x "$STORESCU" ] || apt_install dcmtk
"$PYTHON" -c 'import pydicom' 2>/dev/null \
    || fail "$PYTHON has no pydicom: set PYTHON to the project's virtual environment's python"

# --- the engine ---------------------------------------------------------------------------
WORK=$(mktemp -d)
CONTAINER=""
KIND=""
ENGINE=()
cleanup() {
    if [ -n "$CONTAINER" ] && [ ${#ENGINE[@]} -gt 0 ]; then
        "${ENGINE[@]}" rm -f "$CONTAINER" >/dev/null 2>&1 || true
    fi
    if [ -n "${SENDER_PID:-}" ]; then kill "$SENDER_PID" 2>/dev/null || true; fi
    if [ "$KIND" = podman ] && [ ${#ENGINE[@]} -gt 0 ]; then
        # vfs keeps a full copy per layer: drop the build stage and earlier test images
        # (untagged now), keep the tagged base image and the image just built.
        "${ENGINE[@]}" image prune -f >/dev/null 2>&1 || true
    fi
    as_root rm -rf "$WORK"
}
trap cleanup EXIT

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    KIND=docker
    ENGINE=(docker)
    BUILD=(docker build)
else
    KIND=podman
    missing=()
    command -v podman >/dev/null 2>&1 || missing+=(podman)
    command -v runc >/dev/null 2>&1 || missing+=(runc)
    if [ -z "${BASE_IMAGE:-}" ] && ! command -v debootstrap >/dev/null 2>&1; then
        missing+=(debootstrap)
    fi
    [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
    # Without a container engine service or systemd, the ulimits podman sets by default
    # cannot be applied; an empty list leaves the host's.
    printf '[containers]\ndefault_ulimits = []\n' >"$WORK/containers.conf"
    export CONTAINERS_CONF="$WORK/containers.conf"
    # Storage of our own: the cached base image survives between runs, and settings
    # of other podman users on the machine (another graph driver) cannot clash.
    ENGINE=(as_root env CONTAINERS_CONF="$CONTAINERS_CONF" podman --storage-driver vfs
        --root "$PODMAN_ROOT/storage" --runroot "$PODMAN_RUNROOT"
        --runtime runc --cgroup-manager cgroupfs)
    BUILD=("${ENGINE[@]}" build --format docker --isolation chroot --network host)
fi
say "engine: $KIND"

# --- the base image -------------------------------------------------------------------------
debian_mirror() {
    # The first Debian archive apt is configured with (one-line or deb822 sources).
    local files=() file
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$file" ] && files+=("$file")
    done
    [ ${#files[@]} -gt 0 ] || return 1
    awk '
        /^[[:space:]]*deb[[:space:]]/ {
            for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { url = $i; break }
            if (url ~ /debian\/?$/ && url !~ /security/) { print url; exit }
        }
        /^URIs:/ {
            for (i = 2; i <= NF; i++)
                if ($i ~ /debian\/?$/ && $i !~ /security/) { print $i; exit }
        }
    ' "${files[@]}" | head -n 1
}

make_local_base() {
    if "${ENGINE[@]}" image exists "$LOCAL_BASE_TAG" 2>/dev/null; then
        say "base image: $LOCAL_BASE_TAG (cached)"
        return
    fi
    local mirror rootfs started
    mirror=$(debian_mirror) || true
    [ -n "$mirror" ] || fail "no Debian mirror found in /etc/apt/sources.list*; set BASE_IMAGE"
    started=$(now)
    say "base image: debootstrap bookworm from $mirror"
    rootfs="$WORK/rootfs"
    # minbase plus what the Dockerfile uses: python3 with venv, and useradd (passwd).
    as_root debootstrap --variant=minbase --include=python3,python3-venv,passwd \
        bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -n 30 "$WORK/debootstrap.log" >&2; fail "debootstrap failed"; }
    as_root chroot "$rootfs" apt-get clean
    as_root rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
    as_root tar -C "$rootfs" -c . | "${ENGINE[@]}" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' - "$LOCAL_BASE_TAG" >"$WORK/import.log" 2>&1 \
        || { cat "$WORK/import.log" >&2; fail "podman import failed"; }
    as_root rm -rf "$rootfs"
    say "base image made in $(took "$started")"
}

BUILD_ARGS=()
if [ -n "${BASE_IMAGE:-}" ]; then
    say "base image: $BASE_IMAGE"
    BUILD_ARGS+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
elif [ "$KIND" = podman ]; then
    make_local_base
    BUILD_ARGS+=(--build-arg "BASE_IMAGE=$LOCAL_BASE_TAG")
fi

# --- build ---------------------------------------------------------------------------------
# Pass the host's pip settings through (an index mirror, a proxy's CA), nothing more.
for var in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST PIP_CERT PIP_DEFAULT_TIMEOUT; do
    if [ -n "${!var:-}" ]; then BUILD_ARGS+=(--build-arg "$var=${!var}"); fi
done
if [ "$KIND" = podman ]; then
    # The build's RUN steps see the host's CA certificates and pip configuration.
    [ -d /etc/ssl/certs ] && BUILD_ARGS+=(-v /etc/ssl/certs:/etc/ssl/certs:ro)
    [ -f /etc/pip.conf ] && BUILD_ARGS+=(-v /etc/pip.conf:/etc/pip.conf:ro)
    if [ -n "${PIP_CONFIG_FILE:-}" ] && [ -f "$PIP_CONFIG_FILE" ]; then
        BUILD_ARGS+=(-v "$PIP_CONFIG_FILE:/etc/pip.conf:ro")
    fi
fi
started=$(now)
say "building $IMAGE"
"${BUILD[@]}" "${BUILD_ARGS[@]}" -t "$IMAGE" "$ROOT" >"$WORK/build.log" 2>&1 \
    || { tail -n 40 "$WORK/build.log" >&2; fail "image build failed"; }
say "built in $(took "$started")"

"${ENGINE[@]}" image inspect "$IMAGE" >"$WORK/image.json"
tr -d ' \n' <"$WORK/image.json" | grep -q '"Test":\["CMD","python","-m","dcmrecv.commands.healthcheck"\]' \
    || fail "the image has no C-ECHO HEALTHCHECK (see $KIND image inspect $IMAGE)"
user=$("${ENGINE[@]}" image inspect --format '{{.Config.User}}' "$IMAGE")
case "$user" in
    "" | 0 | 0:* | root | root:*) fail "the image runs as root (USER '$user')" ;;
esac
# Replicas share their state in PostgreSQL (--state postgresql://...): the image has
# the driver (dcmrecv[postgresql]).
"${ENGINE[@]}" run --rm --network none --entrypoint python "$IMAGE" -c 'import psycopg' \
    || fail "the image cannot use --state postgresql:// (psycopg is missing)"
say "the image has psycopg for --state postgresql://"

# --- a series of DICOM files ---------------------------------------------------------------
make_series() {  # make_series DIR COUNT: COUNT instances of one CT series; prints their UIDs
    mkdir -p "$1"
    "$PYTHON" - "$1" "$2" <<'PY'
"""pydicom's CT_small with a fresh series and fresh instance UIDs."""
import sys
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

out, count = Path(sys.argv[1]), int(sys.argv[2])
template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
template.SeriesInstanceUID = generate_uid()
for number in range(1, count + 1):
    template.SOPInstanceUID = generate_uid()
    template.file_meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
    template.InstanceNumber = number
    template.save_as(out / f"{number:04d}.dcm", enforce_file_format=True)
    print(template.SOPInstanceUID)
PY
}
SERIES="$WORK/series"
make_series "$SERIES" "$SERIES_SIZE" >"$WORK/uids.txt"
mapfile -t UIDS <"$WORK/uids.txt"
[ ${#UIDS[@]} -eq "$SERIES_SIZE" ] || fail "made ${#UIDS[@]} test files, wanted $SERIES_SIZE"

# --- run ---------------------------------------------------------------------------------------
PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DATA="$WORK/data"
mkdir -p "$DATA"
# The image's user (10001) writes here, as with a volume in production.
as_root chown "$user" "$DATA"
CONTAINER="dcmrecv-test-$$"
RUN=(run -d --name "$CONTAINER" -v "$DATA:/data" -e "DCMRECV_PORT=$PORT")
if [ "$KIND" = podman ]; then
    RUN+=(--network host)
else
    RUN+=(-p "127.0.0.1:$PORT:$PORT" --health-interval 1s --health-start-period 30s)
fi
started=$(now)
say "starting $CONTAINER on 127.0.0.1:$PORT with the image's default command"
# (podman without systemd says it cannot set up health check timers: expected, see below)
"${ENGINE[@]}" "${RUN[@]}" "$IMAGE" >"$WORK/run.log" 2>&1 \
    || { cat "$WORK/run.log" >&2; fail "cannot start the container"; }

healthy() {
    if [ "$KIND" = podman ]; then
        # Podman schedules health checks with systemd timers; without systemd, run the
        # image's HEALTHCHECK command now, as the timer would.
        "${ENGINE[@]}" healthcheck run "$CONTAINER" >/dev/null 2>&1
    else
        [ "$(docker inspect --format '{{.State.Health.Status}}' "$CONTAINER")" = healthy ]
    fi
}
for _ in $(seq 120); do
    healthy && break
    [ "$("${ENGINE[@]}" inspect --format '{{.State.Running}}' "$CONTAINER")" = true ] \
        || { "${ENGINE[@]}" logs "$CONTAINER" >&2; fail "the container exited while starting"; }
    sleep 0.5
done
healthy || { "${ENGINE[@]}" logs "$CONTAINER" >&2; fail "not healthy after 60 s"; }
say "healthy after $(took "$started")"

uid=$("${ENGINE[@]}" exec "$CONTAINER" id -u)
[ "$uid" != 0 ] || fail "the receiver runs as root"

started=$(now)
say "sending ${#UIDS[@]} instances with $STORESCU"
"$STORESCU" -aec DCMRECV 127.0.0.1 "$PORT" "$SERIES"/*.dcm >"$WORK/storescu.log" 2>&1 \
    || { cat "$WORK/storescu.log" >&2; fail "storescu failed"; }
say "sent in $(took "$started")"

# DCMTK's file names: <modality prefix>.<SOP Instance UID> (dcmrecv.man, +fd).
for uid in "${UIDS[@]}"; do
    file="$DATA/CT.$uid"
    [ -f "$file" ] || { ls -la "$DATA" >&2; fail "missing $file"; }
    "$PYTHON" -c 'import sys, pydicom; ds = pydicom.dcmread(sys.argv[1]); assert ds.SOPInstanceUID == sys.argv[2]' \
        "$file" "$uid" || fail "$file is not the instance sent"
done
count=$(find "$DATA" -type f | wc -l)
[ "$count" -eq "${#UIDS[@]}" ] || { ls -la "$DATA" >&2; fail "$count files in /data, wanted ${#UIDS[@]}"; }
say "all ${#UIDS[@]} files in the mounted volume"

healthy || fail "unhealthy after receiving"
"${ENGINE[@]}" logs "$CONTAINER" >"$WORK/container.log" 2>&1
grep -q "I: Association summary: .*, ${#UIDS[@]} stored, 0 failed" "$WORK/container.log" \
    || { cat "$WORK/container.log" >&2; fail "no association summary line in the log"; }
say "log has the association summary"

# --- stop while a second series is arriving ----------------------------------------------------
SECOND="$WORK/second"
make_series "$SECOND" 300 >/dev/null
"$STORESCU" -aec DCMRECV 127.0.0.1 "$PORT" "$SECOND"/*.dcm >"$WORK/second.log" 2>&1 &
SENDER_PID=$!
for _ in $(seq 200); do
    [ "$(find "$DATA" -type f | wc -l)" -gt "${#UIDS[@]}" ] && break
    sleep 0.05
done
started=$(now)
say "docker stop (SIGTERM) during the second series"
"${ENGINE[@]}" stop -t "$STOP_TIMEOUT" "$CONTAINER" >"$WORK/stop.log" 2>&1 \
    || { cat "$WORK/stop.log" >&2; fail "cannot stop the container"; }
wait "$SENDER_PID" || true
SENDER_PID=""
code=$("${ENGINE[@]}" inspect --format '{{.State.ExitCode}}' "$CONTAINER")
say "stopped in $(took "$started"), exit code $code"
"${ENGINE[@]}" logs "$CONTAINER" >"$WORK/container.log" 2>&1
[ "$code" = 0 ] || { tail -n 20 "$WORK/container.log" >&2; fail "exit code $code after SIGTERM"; }
grep -q "received SIGTERM" "$WORK/container.log" || fail "the receiver did not log the SIGTERM"
grep -E "SIGTERM|stopping|summary" "$WORK/container.log" | tail -n 4 | sed 's/^/   log: /'

# Nothing partial: no temporary file left, and every file is a complete DICOM file.
partial=$(find "$DATA" -name '.*' -type f | wc -l)
[ "$partial" -eq 0 ] || { ls -la "$DATA" >&2; fail "$partial temporary file(s) left in /data"; }
"$PYTHON" - "$DATA" <<'PY' || fail "an incomplete file in /data"
import sys
from pathlib import Path

import pydicom

files = sorted(p for p in Path(sys.argv[1]).iterdir() if p.is_file())
for path in files:
    ds = pydicom.dcmread(path)
    ds.PixelData  # the last element: present and complete
    assert len(ds.PixelData) == ds.Rows * ds.Columns * ds.SamplesPerPixel * ds.BitsAllocated // 8
print(f"== {len(files)} complete files in /data after the stop")
PY

say "container test passed in $(took "$T0")"

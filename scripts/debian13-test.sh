#!/usr/bin/env bash
# Run the whole suite (scripts/test.sh: ruff, mypy, pytest) on Debian 13 "trixie"
# (Python 3.13, OpenSSL 3.5, DCMTK 3.6.9) in a debootstrap chroot, as root.
#
#   sudo bash scripts/debian13-test.sh [pytest arguments]
#
# The chroot is built once (debootstrap, a few minutes) and cached under
# $DCMRECV_CI_CACHE (default /var/cache/dcmrecv-ci), keyed by suite, architecture and
# package list; each run works in a throwaway overlay on top of it, so runs never change
# the cache.  The Debian mirror is the one this machine's apt already uses, and pip in the
# chroot gets this machine's pip configuration, both read at run time.
# The whole script is one block, read before it runs: a checkout changing this file
# during a run cannot change what runs.
{
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=$PWD

suite=trixie
# What scripts/test.sh would otherwise install at every run (dcmtk, prometheus for
# promtool, postgresql, haproxy, orthanc, python3-venv), plus openssl for the TLS test
# certificates and the CA bundle.  debootstrap starts no service while it installs
# (policy-rc.d and a stand-in start-stop-daemon), so orthanc's postinst starts nothing.
packages=(dcmtk prometheus postgresql haproxy orthanc python3-venv openssl ca-certificates)
cache=${DCMRECV_CI_CACHE:-/var/cache/dcmrecv-ci}

if [ "$(id -u)" -ne 0 ]; then
    echo "debian13-test.sh: needs root (debootstrap, mount, chroot)" >&2
    exit 2
fi

# The Debian mirror apt uses here: the first archive URI (not -security) in
# /etc/apt/sources.list or /etc/apt/sources.list.d/*.{list,sources}.
debian_mirror() {
    local files=()
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && files+=("$f")
    done
    [ ${#files[@]} -gt 0 ] || return 0
    awk '
        /^[[:space:]]*#/ { next }
        /^deb[[:space:]]/ {                      # one-line format: deb [opts] URI suite ...
            i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
            if ($(i + 1) !~ /-security$/ && $i ~ /\/debian\/?$/) { print $i; exit }
        }
        /^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }
    ' "${files[@]}"
}

key=$(printf '%s\n' "$suite" "$(dpkg --print-architecture)" "${packages[@]}" | sha256sum | cut -c1-12)
rootfs=$cache/debian13-$key

started=$(date +%s)
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9 # one build at a time; runs share the finished chroot read-only
if [ ! -f "$rootfs/.complete" ]; then
    mirror=$(debian_mirror)
    if [ -z "$mirror" ]; then
        echo "debian13-test.sh: no Debian mirror found in /etc/apt/sources.list*" >&2
        exit 2
    fi
    if ! command -v debootstrap >/dev/null 2>&1; then
        echo "== installing debootstrap"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    echo "== building the Debian 13 chroot in $rootfs (once; cached)"
    rm -rf "$rootfs.tmp"
    debootstrap --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" \
        "$suite" "$rootfs.tmp" "$mirror" >"$cache/debootstrap-$key.log" 2>&1 || {
        tail -n 30 "$cache/debootstrap-$key.log" >&2
        exit 1
    }
    chroot "$rootfs.tmp" apt-get clean
    touch "$rootfs.tmp/.complete"
    rm -rf "$rootfs"
    mv "$rootfs.tmp" "$rootfs"
    echo "== chroot built in $(($(date +%s) - started)) s"
    # Chroots and pip caches of other package lists are stale now.
    for old in "$cache"/debian13-* "$cache"/pip-*; do
        case "$old" in *"-$key" | *"-$key".*) ;; *) rm -rf "$old" ;; esac
    done
fi
exec 9>&- # build done: release the lock

# A run: overlay (cached chroot read-only below, a scratch layer on top), the checkout
# copied in, the kernel file systems mounted, pip's cache kept between runs.
run=$(mktemp -d /tmp/dcmrecv-debian13.XXXXXX)
root=$run/root
mounts=()
cleanup() {
    local i
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
        umount -R "${mounts[i]}" 2>/dev/null || umount -R -l "${mounts[i]}" 2>/dev/null || true
    done
    if grep -qF " $run/" /proc/self/mounts; then
        echo "debian13-test.sh: still mounted under $run; left in place" >&2
    else
        rm -rf "$run"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$run/upper" "$run/work" "$root" "$cache/pip-$key"
mount -t overlay overlay -o "lowerdir=$rootfs,upperdir=$run/upper,workdir=$run/work" "$root"
mounts+=("$root")
mount -t proc proc "$root/proc" && mounts+=("$root/proc")
mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys" && mounts+=("$root/sys")
mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev" && mounts+=("$root/dev")
mkdir -p "$root/root/.cache/pip"
mount --bind "$cache/pip-$key" "$root/root/.cache/pip" && mounts+=("$root/root/.cache/pip")
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
cp /etc/hosts "$root/etc/hosts" 2>/dev/null || true

# pip's configuration on this machine: its files, its PIP_* variables, and the local
# files and folders they name (a wheel folder, a file:// index, a CA bundle), read-only.
for f in /etc/pip.conf /etc/xdg/pip; do
    if [ -e "$f" ]; then
        mkdir -p "$root$(dirname "$f")"
        cp -a "$f" "$root$(dirname "$f")/"
    fi
done
pip_env=()
while IFS='=' read -r name value; do
    pip_env+=("$name=$value")
done < <(env | grep '^PIP_' || true)
pip_host=python3
[ -x .venv/bin/python ] && pip_host=.venv/bin/python
{ "$pip_host" -m pip config list 2>/dev/null || true; printf '%s\n' "${pip_env[@]}"; } |
    sed 's/^[^=]*=//; s/^'"'"'//; s/'"'"'$//' | tr ' ' '\n' | sed 's|^file://||' |
    { grep '^/' || true; } | sort -u | while read -r path; do
        case "$path" in /etc/pip.conf | /etc/xdg/pip | /etc/xdg/pip/*) continue ;; esac
        # A local PEP 503 index (.../simple) links to its files beside it: take the parent.
        [ "$(basename "$path")" = simple ] && path=$(dirname "$path")
        [ -e "$path" ] || continue
        grep -qxF "$root$path" "$run/pip-mounts" 2>/dev/null && continue
        if [ -d "$path" ]; then
            mkdir -p "$root$path"
        else
            mkdir -p "$root$(dirname "$path")"
            [ -e "$root$path" ] || touch "$root$path"
        fi
        mount --bind "$path" "$root$path"
        mount -o remount,bind,ro "$root$path" 2>/dev/null || true
        echo "$root$path" >>"$run/pip-mounts"
    done
[ -f "$run/pip-mounts" ] && mapfile -t -O ${#mounts[@]} mounts <"$run/pip-mounts"

# The checkout as the work tree has it (tracked and untracked files, not ignored ones).
mkdir -p "$root/work/dcmrecv"
if git -C "$checkout" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$checkout" ls-files -z --cached --others --exclude-standard |
        tar -C "$checkout" --null -T - --ignore-failed-read -cf - 2>/dev/null |
        tar -xf - -C "$root/work/dcmrecv"
else
    tar -cf - --exclude=.venv --exclude=.git . | tar -xf - -C "$root/work/dcmrecv"
fi

# shared/ beside the checkout (reference data some tests compare with), read-only.
if [ -d "$checkout/../shared" ]; then
    mkdir -p "$root/work/shared"
    mount --bind "$checkout/../shared" "$root/work/shared" && mounts+=("$root/work/shared")
    mount -o remount,bind,ro "$root/work/shared" 2>/dev/null || true
fi

echo "== Debian 13 chroot: $(chroot "$root" sh -c '. /etc/os-release; echo "$PRETTY_NAME"'),"\
    "$(chroot "$root" python3 --version),"\
    "$(chroot "$root" openssl version | cut -d' ' -f1-2),"\
    "DCMTK $(chroot "$root" dpkg-query -W -f='${Version}' dcmtk)"
status=0
chroot "$root" /usr/bin/env -i \
    HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 CI="${CI:-}" "${pip_env[@]}" \
    bash -c 'cd /work/dcmrecv && exec bash scripts/test.sh "$@"' debian13-test "$@" || status=$?
echo "== Debian 13 step: exit $status after $(($(date +%s) - started)) s"
exit "$status"
}

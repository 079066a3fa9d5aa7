#!/usr/bin/env bash
# lean-ipa: the one entry point.
#   ./build.sh [tinyipa|dib|coreos|iso|test|bench|wheel|clean] [options]
# Each target checks the host tools it needs; as root on Debian/Ubuntu it
# installs the missing ones with apt, otherwise it prints the command and stops.
set -euo pipefail

TOP=$(cd "$(dirname "$0")" && pwd)
OUT=${LEAN_IPA_OUT:-$TOP/out}
CACHE=${LEAN_IPA_CACHE:-$TOP/.cache}
PYTHON=${PYTHON:-python3}
export TOP OUT CACHE

say() { printf '[%4ss] %s\n' "$SECONDS" "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

# need_host TARGET... [--package=PKG]...: the host programs and packages the
# targets run (buildlib/host-programs.toml); as root with apt the missing ones
# are installed, otherwise the apt-get command is printed and the build stops.
need_host() {
    need_python
    "$PYTHON" "$TOP/buildlib/host.py" install "$@" || exit 1
}

# need_python: the one host package the installer itself needs (a minimal
# Debian has no python3).
need_python() {
    command -v "$PYTHON" >/dev/null && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        say "installing host packages: python3"
        apt-get -o DPkg::Lock::Timeout=900 update -q >&2
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q \
            --no-install-recommends python3 >&2
    else
        die "$PYTHON not found; run: sudo apt-get install python3"
    fi
}

# make_venv DIR ARGS...: a venv at DIR with `pip install ARGS` done once per change of ARGS
# (and of the files they name: pyproject.toml for -e TOP, requirement files for -r).
make_venv() {
    local dir=$1; shift
    local stamp="$dir/.lean-ipa-stamp" want
    want=$({ printf '%s\n' "$@"; cat "$TOP/pyproject.toml" "$TOP/tests/requirements.txt"; } \
        | sha256sum | cut -c1-16)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
    if ! "$PYTHON" -m venv --help >/dev/null 2>&1; then need_host wheel; fi
    [ -x "$dir/bin/python" ] || "$PYTHON" -m venv "$dir" >&2
    "$dir/bin/python" -m pip install -q --upgrade pip >&2
    "$dir/bin/python" -m pip install -q "$@" >&2
    echo "$want" > "$stamp"
}

# The agent wheel, built from this checkout; every image installs this one.
cmd_wheel() {
    # One at a time (builds run together share the venv and out/dist).
    mkdir -p "$CACHE" && exec 9>"$CACHE/.wheel.lock" && flock 9
    make_venv "$CACHE/venv-build" build
    rm -rf "$OUT/dist" && mkdir -p "$OUT/dist"
    "$CACHE/venv-build/bin/python" -m build --wheel --outdir "$OUT/dist" "$TOP" >"$OUT/dist/build.log" 2>&1 \
        || die "wheel build failed; see $OUT/dist/build.log"
    ls "$OUT"/dist/*.whl
}

# One build of a kind at a time in a checkout: builds of one kind share their work
# and cache directories (tinyipa's .cache/tinyipa/work whatever --name or --arch),
# and the test suite runs two at once. The lock is held until the builder exits.
build_lock() {
    mkdir -p "$CACHE" && exec 8>"$CACHE/.build-$1.lock"
    flock -n 8 || { say "$1: waiting for the other $1 build in this checkout"; flock 8; }
}

cmd_tinyipa() { need_python; build_lock tinyipa; exec "$TOP/tinyipa/build-tinyipa" "$@"; }
cmd_coreos() { need_python; build_lock coreos; exec "$TOP/coreos/build-coreos" "$@"; }

# ISO of a tinyipa image: iso/iso-image-create does the packing.
#   ./build.sh iso [--append "ipa-api-url=... ipa-insecure=1"] [--label L] [--output DIR]
#                  [--name N] [tinyipa's --release/--arch/--ssh-key/--password-hash/
#                   --extra-modules/--rebuild: the image is (re)built with them first]
# writes <output>/<name>.iso (BIOS + UEFI, hybrid) and <output>/<name>-esp.img
# (the ESP alone, for Ironic's [conductor]bootloader) from out/tinyipa/<name>.*
# With --arch arm64: <name>-arm64.iso, UEFI only (GRUB arm64-efi), and
# <name>-arm64-esp.img, from out/tinyipa/<name>-arm64.*
cmd_iso() {
    need_host iso
    build_lock iso
    local name=${LEAN_IPA_NAME:-${TINYIPA_NAME:-tinyipa}} src="$OUT/tinyipa"
    local dest=${LEAN_IPA_OUTPUT:-$OUT/iso} image=() pack=() rebuild=0
    local arch=${LEAN_IPA_ARCH:-${TINYIPA_ARCH:-x86_64}}
    while [ $# -gt 0 ]; do
        case "$1" in
            --name) [ $# -ge 2 ] || die "iso: --name needs a value"; name=$2; shift ;;
            --output|--out) [ $# -ge 2 ] || die "iso: $1 needs a value"; dest=$2; shift ;;
            --arch)
                [ $# -ge 2 ] || die "iso: --arch needs a value"; arch=$2; shift ;;
            --release|--suite|--ssh-key|--password-hash|--extra-modules)
                [ $# -ge 2 ] || die "iso: $1 needs a value"
                image+=("$1" "$2"); rebuild=1; shift ;;
            --rebuild|--force) image+=(--rebuild); rebuild=1 ;;
            *) pack+=("$1") ;;
        esac
        shift
    done
    case "$arch" in
        x86_64|amd64) arch=x86_64 ;;
        arm64|aarch64) arch=arm64; name=${name%-arm64}-arm64; pack+=(--arch arm64)
            image+=(--arch arm64); need_host tinyipa-arm64 ;;
        *) die "iso: --arch $arch: x86_64 or arm64" ;;
    esac
    if [ "$rebuild" = 1 ] || [ ! -f "$src/$name.kernel" ] || [ ! -f "$src/$name.initramfs" ]; then
        say "iso: building the tinyipa image $name first"
        "$TOP/build.sh" tinyipa --name "$name" ${image[@]+"${image[@]}"}
    fi
    mkdir -p "$dest"
    local efi="$CACHE/secure-boot" signed=()
    if [ "$arch" = x86_64 ]; then  # Debian's signed chain; arm64 has none here yet
        fetch_signed_chain "$efi"
        signed=(--secure-boot --efi-root "$efi/root")
    fi
    say "iso: packing $src/$name.{kernel,initramfs}"
    "$TOP/iso/iso-image-create" -o "$dest/$name.iso" -k "$src/$name.kernel" \
        -i "$src/$name.initramfs" --esp "$dest/$name-esp.img" \
        ${signed[@]+"${signed[@]}"} --manifest "$dest/$name.manifest" \
        ${pack[@]+"${pack[@]}"}
    [ ! -f "$dest/$name.manifest" ] || grep '^secure_boot ' "$dest/$name.manifest" >&2 || true
    ls -l "$dest/$name.iso" "$dest/$name-esp.img"
}

# Debian's signed shim, MokManager and GRUB, and Debian's CA (iso/isoimage/signed.py),
# unpacked under DIR/root from the host's apt sources; never installed on the host
# (shim-signed's maintainer scripts run grub-install on EFI machines).
fetch_signed_chain() {
    local dir=$1 want
    want=$(apt-cache policy shim-signed shim-helpers-amd64-signed shim-unsigned \
        grub-efi-amd64-signed | grep -E '^[a-z]|Candidate' | sha256sum | cut -c1-16)
    [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$want" ] && return 0
    rm -rf "$dir" && mkdir -p "$dir/debs" "$dir/root"
    (cd "$dir/debs" && apt-get download -q shim-signed shim-helpers-amd64-signed \
        shim-unsigned grub-efi-amd64-signed 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2) \
        || die "iso: cannot download Debian's signed boot packages (apt-get update?)"
    for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
    echo "$want" > "$dir/.stamp"
}

# diskimage-builder ramdisk from elements/: dib/build-dib (dib/build.py).
cmd_dib() { need_python; build_lock dib; exec "$TOP/dib/build-dib" "$@"; }

# ./build.sh test [pytest arguments]: with none, the whole suite: the unit and
# functional tiers (fast, and some time real processes: alone on the machine),
# then the e2e and boot tiers on two pytest-xdist workers, a test module per
# worker at a time (each QEMU guest is one TCG vCPU: two use both cores).
cmd_test() {
    need_host test
    say "test venv"
    make_venv "$OUT/venv-test" -e "$TOP[test]" -r "$TOP/tests/requirements.txt"
    cd "$TOP"
    local py="$OUT/venv-test/bin/python"
    if [ $# -gt 0 ]; then
        say "running tests: $*"
        exec "$py" -m pytest "$@"
    fi
    say "running the test suite: unit and functional tiers"
    "$py" -m pytest tests/unit tests/functional
    say "running the test suite: e2e and boot tiers, two workers"
    exec "$py" -m pytest -n 2 --dist loadfile tests/e2e tests/boot
}

cmd_bench() {
    need_host test
    make_venv "$OUT/venv-test" -e "$TOP[test]" -r "$TOP/tests/requirements.txt"
    cd "$TOP"
    exec "$OUT/venv-test/bin/python" -m tests.bench "$@"
}

cmd_clean() { rm -rf "$OUT"; }

target=${1:-default}
[ $# -gt 0 ] && shift
case "$target" in
    tinyipa|dib|coreos|iso|test|bench|wheel|clean) "cmd_$target" "$@" ;;
    default) (cmd_tinyipa "$@") && cmd_iso ;;
    -h|--help|help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) die "unknown target '$target' (tinyipa, dib, coreos, iso, test, bench, wheel, clean)" ;;
esac

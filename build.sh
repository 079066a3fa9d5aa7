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

# need_apt PKG...: make sure Debian packages are installed.
need_apt() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        say "installing host packages: ${missing[*]}"
        if [ ! -f "$CACHE/.apt-updated" ] || [ -n "$(find "$CACHE/.apt-updated" -mmin +360 2>/dev/null)" ]; then
            apt-get -o DPkg::Lock::Timeout=900 update -q >&2
            mkdir -p "$CACHE" && touch "$CACHE/.apt-updated"
        fi
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q \
            --no-install-recommends "${missing[@]}" >&2
    else
        die "missing host packages; run: sudo apt-get install ${missing[*]}"
    fi
}

# need_apt_file FILE: the packages listed in FILE (one per line, # comments).
need_apt_file() {
    # shellcheck disable=SC2046
    need_apt $(sed -e 's/#.*//' "$1" | xargs)
}

# make_venv DIR ARGS...: a venv at DIR with `pip install ARGS` done once per change of ARGS.
make_venv() {
    local dir=$1; shift
    local stamp="$dir/.lean-ipa-stamp" want
    want=$(printf '%s\n' "$@" | sha256sum | cut -c1-16)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
    if ! "$PYTHON" -m venv --help >/dev/null 2>&1; then need_apt python3-venv; fi
    [ -x "$dir/bin/python" ] || "$PYTHON" -m venv "$dir" >&2
    "$dir/bin/python" -m pip install -q --upgrade pip >&2
    "$dir/bin/python" -m pip install -q "$@" >&2
    echo "$want" > "$stamp"
}

# The agent wheel, built from this checkout; every image installs this one.
cmd_wheel() {
    make_venv "$CACHE/venv-build" build
    rm -rf "$OUT/dist" && mkdir -p "$OUT/dist"
    "$CACHE/venv-build/bin/python" -m build --wheel --outdir "$OUT/dist" "$TOP" >"$OUT/dist/build.log" 2>&1 \
        || die "wheel build failed; see $OUT/dist/build.log"
    ls "$OUT"/dist/*.whl
}

cmd_tinyipa() { exec "$TOP/tinyipa/build-tinyipa" "$@"; }
cmd_coreos() { exec "$TOP/coreos/build-coreos" "$@"; }

# ISO of the default image (owned by the iso work): iso/iso-image-create does the packing.
#   ./build.sh iso [--append "ipa-api-url=... ipa-insecure=1"] [--label L]
# writes out/iso/<name>.iso (BIOS + UEFI, hybrid) and out/iso/<name>-esp.img
# (the ESP alone, for Ironic's [conductor]bootloader) from out/tinyipa/<name>.*
cmd_iso() {
    need_apt python3-jinja2 xorriso isolinux syslinux-common grub-efi-amd64-bin grub-common \
        dosfstools mtools
    local name=${TINYIPA_NAME:-tinyipa} src="$OUT/tinyipa"
    if [ ! -f "$src/$name.kernel" ] || [ ! -f "$src/$name.initramfs" ]; then
        say "iso: no $src/$name.kernel + .initramfs yet; building the tinyipa image first"
        "$TOP/build.sh" tinyipa
    fi
    mkdir -p "$OUT/iso"
    say "iso: packing $src/$name.{kernel,initramfs}"
    "$TOP/iso/iso-image-create" -o "$OUT/iso/$name.iso" -k "$src/$name.kernel" \
        -i "$src/$name.initramfs" --esp "$OUT/iso/$name-esp.img" "$@"
    ls -l "$OUT/iso/$name.iso" "$OUT/iso/$name-esp.img"
}

# diskimage-builder ramdisk from elements/ (owned by the dib work).
cmd_dib() { die "dib: not built yet"; }

cmd_test() {
    need_apt_file "$TOP/tests/apt-packages.txt"
    say "test venv"
    make_venv "$OUT/venv-test" -e "$TOP[test]" -r "$TOP/tests/requirements.txt"
    say "running the test suite"
    cd "$TOP"
    exec "$OUT/venv-test/bin/python" -m pytest "$@"
}

cmd_bench() {
    need_apt_file "$TOP/tests/apt-packages.txt"
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

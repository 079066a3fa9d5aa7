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
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found; run: sudo apt-get install python3"
    "$PYTHON" "$TOP/buildlib/host.py" install "$@" || exit 1
}

# make_venv DIR ARGS...: a venv at DIR with `pip install ARGS` done once per change of ARGS.
make_venv() {
    local dir=$1; shift
    local stamp="$dir/.lean-ipa-stamp" want
    want=$(printf '%s\n' "$@" | sha256sum | cut -c1-16)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
    if ! "$PYTHON" -m venv --help >/dev/null 2>&1; then need_host wheel; fi
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
    need_host iso
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
# Everything the image needs lives in the elements; this only gathers the
# inputs, runs stock disk-image-create and writes checksums + manifest.
DIB_VERSION=3.43.0

# dib_mirror: the Debian mirror the host's apt uses (deb.debian.org if none).
dib_mirror() {
    local m
    m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | grep -v '^[[:space:]]*#' | grep -o -E 'https?://[^[:space:]]+/debian/?([[:space:]]|$)' \
        | head -n 1 | tr -d '[:space:]' || true)
    echo "${m:-http://deb.debian.org/debian}" | sed 's:/$::'
}

# dib_run_logged LOG CMD...: run CMD with its output in LOG, printing one
# progress line per DIB phase; on failure name the phase and the log.
dib_run_logged() {
    local log=$1 phase=start line rc; shift
    set +e
    "$@" 2>&1 | while IFS= read -r line; do
        printf '%s\n' "$line" >>"$log"
        if [[ $line =~ (Running\ hooks\ from\ [^[:space:]]*/|/tmp/in_target\.d/)([a-z-]+)\.d ]] \
                && [ "${BASH_REMATCH[2]}" != "$phase" ]; then
            phase=${BASH_REMATCH[2]}
            say "dib: $phase"
            echo "$phase" >"$log.phase"
        fi
    done
    rc=${PIPESTATUS[0]}
    set -e
    if [ "$rc" -ne 0 ]; then
        die "dib: disk-image-create failed in phase '$(cat "$log.phase" 2>/dev/null || echo start)'; see $log"
    fi
}

# dib_stage NAME: one progress line; a failure after it names the stage.
dib_stage() {
    DIB_STAGE=$1
    say "dib: $1"
}

cmd_dib() {
    DIB_STAGE=options
    trap 'rc=$?; [ $rc -eq 0 ] || printf "build.sh: dib: stage \"%s\" failed (exit %s); log: %s\n" \
        "$DIB_STAGE" "$rc" "$OUT/dib/build.log" >&2' EXIT
    local release=${DIB_RELEASE:-bookworm} name=${LEAN_IPA_NAME:-lean-ipa}
    local packages=${LEAN_IPA_PACKAGES:-} modules=${LEAN_IPA_MODULES:-}
    local keys=${LEAN_IPA_SSH_KEYS:-} pwhash=${LEAN_IPA_PASSWORD_HASH:-}
    local ca=${LEAN_IPA_CA_BUNDLE:-} elements=${LEAN_IPA_ELEMENTS:-} force=${LEAN_IPA_FORCE:-0}
    while [ $# -gt 0 ]; do
        case "$1" in
            --release) release=$2; shift ;;
            --name|-o) name=$2; shift ;;
            --package|-p) packages="$packages ${2//,/ }"; shift ;;
            --module) modules="$modules ${2//,/ }"; shift ;;
            --ssh-key) keys="$keys"$'\n'"$2"; shift ;;
            --password-hash) pwhash=$2; shift ;;
            --ca-bundle) ca=$2; shift ;;
            --element|-e) elements="$elements $2"; shift ;;
            --login) elements="$elements lean-ipa-login" ;;
            --force) force=1 ;;
            *) die "dib: unknown option '$1' (see README.rst, section 'dib image')" ;;
        esac
        shift
    done
    local dest=$OUT/dib
    local log=$dest/build.log
    mkdir -p "$dest"
    [ -z "$ca" ] || [ -f "$ca" ] || die "dib: --ca-bundle $ca: no such file"
    if [ -n "${keys//[[:space:]]/}" ] || [ -n "$pwhash" ]; then
        [[ " $elements " == *" lean-ipa-login "* ]] || elements="$elements lean-ipa-login"
    fi

    dib_stage "host tools"
    need_host dib
    make_venv "$CACHE/venv-dib" "diskimage-builder==$DIB_VERSION"

    dib_stage "agent wheel"
    (cmd_wheel >/dev/null)
    local wheel
    wheel=$(ls "$OUT"/dist/lean_ipa-*.whl)

    local mirror
    mirror=$(dib_mirror)
    # Everything that decides the image's content; unchanged inputs and
    # present outputs mean there is nothing to do.
    local inputs
    inputs=$(
        echo "diskimage-builder $DIB_VERSION"
        echo "release $release"
        echo "mirror $mirror"
        echo "name $name"
        echo "elements debian-minimal lean-ipa$elements"
        echo "packages $packages"
        echo "modules $modules"
        echo "ssh-keys $(printf '%s' "$keys" | sha256sum | cut -c1-16)"
        echo "password-hash $(printf '%s' "$pwhash" | sha256sum | cut -c1-16)"
        echo "ca-bundle $([ -n "$ca" ] && sha256sum <"$ca" | cut -c1-16)"
        # The wheel's RECORD hashes every file in it (the zip itself has timestamps).
        echo "wheel ${wheel##*/} $("$CACHE/venv-dib/bin/python" -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
sys.stdout.write(z.read(next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))).decode())' "$wheel" \
            | sha256sum | cut -c1-16)"
        echo "elements-tree $(cd "$TOP" && find elements -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
        # (values of secrets are not written into the manifest)
        env | sed -n 's/^DIB_/env DIB_/p' | sort \
            | sed -E 's/^(env DIB_[A-Z0-9_]*(PASSWORD|SECRET|TOKEN)[A-Z0-9_]*=).+/\1***/'
    )
    if [ "$force" != 1 ] && [ -f "$dest/$name.initramfs" ] && [ -f "$dest/$name.kernel" ] \
            && [ -f "$dest/.inputs" ] && [ "$(cat "$dest/.inputs")" = "$inputs" ]; then
        say "dib: up to date ($dest/$name.initramfs); --force rebuilds"
        return 0
    fi

    rm -rf "$dest/$name".* "$dest/sha256sums" "$dest/manifest" "$dest/.inputs" "$log" "$log.phase"
    dib_stage "disk-image-create ($release, log: $log)"
    local keyfile= hashfile=
    if [ -n "${keys//[[:space:]]/}" ]; then
        keyfile=$dest/.ssh-keys
        printf '%s\n' "$keys" | sed '/^[[:space:]]*$/d' >"$keyfile"
    fi
    if [ -n "$pwhash" ]; then  # through a file: DIB traces its environment into the log
        hashfile=$dest/.password-hash
        (umask 077 && printf '%s\n' "$pwhash" >"$hashfile")
    fi
    mkdir -p "$CACHE/image-create"
    # shellcheck disable=SC2086
    (
        export ELEMENTS_PATH=$TOP/elements
        export DIB_RELEASE=$release
        export DIB_IMAGE_CACHE=$CACHE/image-create
        export DIB_DISTRIBUTION_MIRROR=$mirror
        export DIB_DEBIAN_SECURITY_MIRROR=${mirror%/debian}/debian-security
        export DIB_DEBOOTSTRAP_CACHE=1 DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE=1
        export DIB_LEAN_IPA_WHEEL=$wheel
        export DIB_LEAN_IPA_HOST_PYTHON=$CACHE/venv-dib/bin/python
        export DIB_LEAN_IPA_EXTRA_MODULES="${modules# }"
        export DIB_LEAN_IPA_CA_BUNDLE=$ca
        export DIB_LEAN_IPA_SSH_KEYS=$keyfile
        export DIB_LEAN_IPA_ROOT_PASSWORD_HASH=
        export DIB_LEAN_IPA_ROOT_PASSWORD_HASH_FILE=$hashfile
        export PATH=$CACHE/venv-dib/bin:$PATH
        pkgs=$(echo $packages | tr ' ' ',')
        dib_run_logged "$log" disk-image-create -o "$dest/$name" \
            ${pkgs:+-p "$pkgs"} debian-minimal lean-ipa $elements
    ) || { rm -f "$keyfile" "$hashfile"; exit 1; }
    rm -f "$log.phase" "$keyfile" "$hashfile"

    dib_stage "checksums and manifest"
    (cd "$dest" && sha256sum "$name.kernel" "$name.initramfs" >sha256sums)
    {
        echo "$inputs" | sed 's/^/input /'
        cat "$dest/$name.manifest"
    } >"$dest/manifest"
    echo "$inputs" >"$dest/.inputs"
    say "dib: done: $dest/$name.kernel $(du -h "$dest/$name.kernel" | cut -f1)," \
        "$dest/$name.initramfs $(du -h "$dest/$name.initramfs" | cut -f1)"
}

cmd_test() {
    need_host test
    say "test venv"
    make_venv "$OUT/venv-test" -e "$TOP[test]" -r "$TOP/tests/requirements.txt"
    say "running the test suite"
    cd "$TOP"
    exec "$OUT/venv-test/bin/python" -m pytest "$@"
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

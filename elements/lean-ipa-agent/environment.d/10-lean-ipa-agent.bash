# The agent wheel built from the lean-ipa checkout (a file, or a directory
# holding exactly one lean_ipa-*.whl). Required.
export DIB_LEAN_IPA_WHEEL=${DIB_LEAN_IPA_WHEEL:-}
# Host directory of dependency wheels. Empty: they are downloaded on the
# build host with pip into $DIB_IMAGE_CACHE/lean-ipa-wheels (the chroot
# never talks to PyPI).
export DIB_LEAN_IPA_WHEELHOUSE=${DIB_LEAN_IPA_WHEELHOUSE:-}
# Python used on the build host for `pip download`.
export DIB_LEAN_IPA_HOST_PYTHON=${DIB_LEAN_IPA_HOST_PYTHON:-python3}
# The image's Python version (X.Y), for picking binary wheels on the host.
# Default: what the Debian release ships.
case "${DIB_RELEASE:-}" in
    bookworm) _lean_ipa_py=3.11 ;;
    trixie) _lean_ipa_py=3.13 ;;
    *) _lean_ipa_py= ;;
esac
export DIB_LEAN_IPA_PYTHON_VERSION=${DIB_LEAN_IPA_PYTHON_VERSION:-$_lean_ipa_py}
unset _lean_ipa_py
# Where the agent's venv lives in the image.
export DIB_LEAN_IPA_VENV=${DIB_LEAN_IPA_VENV:-/opt/lean-ipa}
# Upper bound (seconds) on waiting for the first routable link before the
# agent starts; the agent retries the lookup itself after that.
export DIB_LEAN_IPA_NETWORK_WAIT=${DIB_LEAN_IPA_NETWORK_WAIT:-20}
# A PEM bundle of extra CAs the agent should trust (e.g. Ironic's CA).
export DIB_LEAN_IPA_CA_BUNDLE=${DIB_LEAN_IPA_CA_BUNDLE:-}
# 1: add python-hardware (PyPI "hardware") and lshw/ethtool for the
# extra-hardware inspection collector.
export DIB_LEAN_IPA_EXTRA_HARDWARE=${DIB_LEAN_IPA_EXTRA_HARDWARE:-0}

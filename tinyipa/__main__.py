# SPDX-License-Identifier: Apache-2.0
"""Command line of the tinyipa builder: ``python3 -m tinyipa [options]``.

Every option also has a ``LEAN_IPA_*`` (or the older ``TINYIPA_*``) environment
variable (flags win); the common options are those of every builder
(buildlib/options.py).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
from pathlib import Path

from buildlib import options
from tinyipa.build import Context, build
from tinyipa.log import BuildError


_words = options.words
_keys = options.ssh_keys


def parse_args(argv: list[str]) -> Context:
    env = os.environ.get
    out = options.out_dir("tinyipa").parent
    cache = options.cache_dir()
    p = argparse.ArgumentParser(prog="build.sh tinyipa", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_common(p, "tinyipa", "tinyipa", old_env="TINYIPA_")
    p.add_argument("--extra-packages", default=env("TINYIPA_EXTRA_PACKAGES", ""),
                   help="more Debian packages, all their files except docs")
    p.add_argument("--extra-python", default=env("TINYIPA_EXTRA_PYTHON", ""),
                   help="more Python requirements from PyPI (e.g. hardware managers)")
    p.add_argument("--ca-bundle", default=env("TINYIPA_CA_BUNDLE") or None,
                   help="PEM file of extra CAs the agent trusts")
    p.add_argument("--compression", default=env("TINYIPA_COMPRESSION", "zstd"),
                   choices=["zstd", "xz", "gzip"])
    p.add_argument("--wheel", default=env("TINYIPA_WHEEL"),
                   help="agent wheel (default: the one in out/dist/)")
    p.add_argument("--pip-python", default=env("TINYIPA_PIP_PYTHON", sys.executable),
                   help="a Python with pip, used to fetch and install wheels")
    p.add_argument("--qemu-img", action="store_true",
                   default=env("TINYIPA_QEMU_IMG", "") not in ("", "0"),
                   help="add qemu-img for vhdx, vpc, vdi, qed and other vmdk images "
                        "(beyond the 30 MB budget)")
    p.add_argument("--burnin", action="store_true",
                   default=env("TINYIPA_BURNIN", "") not in ("", "0"),
                   help="add stress-ng and fio for the burn-in steps (beyond the 30 MB budget)")
    options.add_extra_hardware(p, "TINYIPA_EXTRA_HARDWARE")  # beyond the 30 MB budget
    p.add_argument("--cache", default=str(cache / "tinyipa"))
    p.add_argument("--refresh", action="store_true", help="refresh the apt lists now")
    a = p.parse_args(argv)
    c = options.common(p, a, "tinyipa", supported=("x86_64", "arm64"))
    if a.wheel is None:
        wheels = sorted((out / "dist").glob("*.whl"), key=lambda w: w.stat().st_mtime)
        if not wheels:
            p.error(f"no agent wheel in {out / 'dist'}; run ./build.sh wheel")
        a.wheel = wheels[-1]
    return Context(
        wheel=Path(a.wheel).resolve(), out=c.output,
        cache=Path(a.cache).resolve(), name=c.name, release=c.release, arch=c.arch,
        extra_modules=c.extra_modules, extra_packages=_words(a.extra_packages),
        extra_python=_words(a.extra_python), ssh_keys=c.ssh_keys,
        password_hash=c.password_hash,
        ca_bundle=Path(a.ca_bundle).resolve() if a.ca_bundle else None,
        compression=a.compression, pip_python=a.pip_python,
        refresh=a.refresh or c.rebuild, rebuild=c.rebuild, common=c,
        options=[o for o, on in (("qemu-img", a.qemu_img), ("burnin", a.burnin),
                                 ("extra-hardware", a.extra_hardware))
                 if on])


def main(argv: list[str]) -> int:
    ctx = parse_args(argv)
    ctx.cache.mkdir(parents=True, exist_ok=True)
    # One build at a time per cache: they share the unpacked packages and parts.
    with open(ctx.cache / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("tinyipa: another build is using the cache; waiting", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            build(ctx)
        except BuildError as exc:
            print(f"tinyipa: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

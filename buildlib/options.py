# SPDX-License-Identifier: Apache-2.0
"""The one vocabulary of every builder: the same flags, meanings and environment.

Every flag has a ``LEAN_IPA_<FLAG>`` environment variable (flags win):

  --release R         Debian release the image is made of (bookworm)
  --arch A            CPU architecture: x86_64 (amd64), or arm64 (aarch64) where the
                      builder makes it (buildlib/arch.py)
  --name N            base name of the outputs (<N>.kernel, <N>.initramfs, ...); for
                      another architecture than x86_64 it gets that suffix
                      (<N>-arm64.kernel, ...)
  --ssh-key K         SSH public key, or a file of keys, for root (repeatable)
  --password-hash H   crypt(3) hash for root's console login (openssl passwd -6)
  --extra-modules M   more kernel modules (comma or space separated)
  --rebuild           ignore the caches and build everything again
  --output DIR        where the outputs go (out/<target>)
  --ironic-layout     also write the layout Metal3, devstack and bifrost download
                      (--ironic-flavor, --ironic-branch name the tarball)

Older spellings stay as aliases (--out, --suite, --force, TINYIPA_*).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from buildlib import arch as arches

ENV = "LEAN_IPA_"
TOP = Path(__file__).resolve().parents[1]


def env(name: str, default: str = "", *old: str) -> str:
    """LEAN_IPA_<name>, else the first old variable set, else *default*."""
    for var in (ENV + name, *old):
        if os.environ.get(var):
            return os.environ[var]
    return default


def words(value: str | Sequence[str]) -> list[str]:
    """Comma or space separated words (from one string or several)."""
    parts = [value] if isinstance(value, str) else list(value)
    return [w for part in parts for w in part.replace(",", " ").split() if w]


def ssh_keys(values: Sequence[str]) -> list[str]:
    """SSH public keys given as key text or as files holding keys."""
    keys: list[str] = []
    for value in values:
        path = Path(value).expanduser()
        text = path.read_text() if not value.startswith("ssh-") and path.is_file() else value
        keys += [line.strip() for line in text.splitlines()
                 if line.strip() and not line.startswith("#")]
    return keys


def out_dir(target: str) -> Path:
    return Path(os.environ.get("OUT") or env("OUT", str(TOP / "out"))) / target


def cache_dir() -> Path:
    return Path(os.environ.get("CACHE") or env("CACHE", str(TOP / ".cache")))


@dataclass
class Common:
    """The shared options, parsed and checked."""

    target: str
    release: str
    arch: str          # buildlib/arch.py's name: x86_64, arm64
    name: str          # with the architecture's suffix (tinyipa-arm64)
    ssh_keys: list[str] = field(default_factory=list)
    password_hash: str | None = None
    extra_modules: list[str] = field(default_factory=list)
    rebuild: bool = False
    output: Path = Path()
    ironic_layout: bool = False
    ironic_flavor: str = ""
    ironic_branch: str = "master"


def add_common(parser: argparse.ArgumentParser, target: str, name: str,
               old_env: str | None = None) -> None:
    """Add the shared flags to *parser*; *old_env* is a builder's older prefix."""
    def e(key: str, default: str = "") -> str:
        return env(key, default, *([old_env + key] if old_env else []))

    g = parser.add_argument_group("common options (every builder)")
    g.add_argument("--release", "--suite", default=e("RELEASE", "bookworm"),
                   help="Debian release (default: %(default)s)")
    g.add_argument("--arch", default=e("ARCH", "x86_64"),
                   help="CPU architecture: x86_64 or arm64 (default: %(default)s)")
    g.add_argument("--name", default=e("NAME", name),
                   help="base name of the outputs (default: %(default)s)")
    g.add_argument("--ssh-key", action="append",
                   default=[k for k in e("SSH_KEYS").split("\n") if k.strip()],
                   help="SSH public key or file of keys for root (repeatable)")
    g.add_argument("--password-hash", default=e("PASSWORD_HASH") or None,
                   help="crypt(3) hash for root's console login (openssl passwd -6)")
    g.add_argument("--extra-modules", action="append", default=[e("EXTRA_MODULES")],
                   help="more kernel modules, comma or space separated (repeatable)")
    g.add_argument("--rebuild", "--force", action="store_true",
                   default=e("REBUILD") not in ("", "0"), help="ignore the caches")
    g.add_argument("--output", "--out", default=e("OUTPUT", str(out_dir(target))),
                   help="output directory (default: %(default)s)")
    g.add_argument("--ironic-layout", action="store_true",
                   default=e("IRONIC_LAYOUT") not in ("", "0"),
                   help="also write ironic-python-agent.{kernel,initramfs} and "
                        "ipa-<flavor>-<branch>.tar.gz (+ .sha256) under <output>/ironic")
    g.add_argument("--ironic-flavor", default=e("IRONIC_FLAVOR", target),
                   help="<flavor> in ipa-<flavor>-<branch> (default: %(default)s)")
    g.add_argument("--ironic-branch", default=e("IRONIC_BRANCH", "master"),
                   help="<branch> in ipa-<flavor>-<branch> (default: %(default)s)")


def add_extra_hardware(parser: argparse.ArgumentParser, *old_env: str) -> None:
    """``--extra-hardware``, the same for tinyipa, dib and coreos."""
    parser.add_argument(
        "--extra-hardware", action="store_true",
        default=env("EXTRA_HARDWARE", "", *old_env) not in ("", "0"),
        help="add python-hardware (PyPI hardware) and the tools its hardware-detect reads "
             "(lshw, ethtool, lspci) for the extra-hardware inspection collector")


def common(parser: argparse.ArgumentParser, args: argparse.Namespace,
           target: str, supported: Sequence[str] = (arches.DEFAULT,)) -> Common:
    """The shared options of *args*; bad values stop with a message naming the flag.

    *supported* are the architectures the builder makes images for.
    """
    try:
        arch = arches.get(args.arch).name
    except KeyError as exc:
        parser.error(f"--arch {args.arch}: {exc.args[0]}")
    if arch not in supported:
        parser.error(f"--arch {args.arch}: {target} builds only {', '.join(supported)} "
                     "images for now")
    if not args.name or "/" in args.name or args.name.startswith("."):
        parser.error(f"--name {args.name!r}: a plain file name is needed")
    if args.password_hash and not args.password_hash.startswith("$"):
        parser.error("--password-hash: a crypt(3) hash is needed (openssl passwd -6), "
                     "not a password")
    try:
        keys = ssh_keys(args.ssh_key)
    except OSError as exc:
        parser.error(f"--ssh-key: {exc}")
    for flag, value in (("--ironic-flavor", args.ironic_flavor),
                        ("--ironic-branch", args.ironic_branch.replace("/", "-"))):
        if not value or "/" in value or value.startswith("."):
            parser.error(f"{flag} {value!r}: a plain name is needed")
    suffix = arches.get(arch).suffix
    name = args.name if args.name.endswith(suffix) else args.name + suffix
    return Common(target=target, release=args.release, arch=arch, name=name,
                  ssh_keys=keys, password_hash=args.password_hash,
                  extra_modules=words(args.extra_modules), rebuild=args.rebuild,
                  output=Path(args.output).resolve(), ironic_layout=args.ironic_layout,
                  ironic_flavor=args.ironic_flavor, ironic_branch=args.ironic_branch)

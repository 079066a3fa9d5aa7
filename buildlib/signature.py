# SPDX-License-Identifier: Apache-2.0
"""Whether a built kernel is signed by Debian's UEFI CA: the check every builder runs.

Secure Boot firmware starts shim, shim checks GRUB and GRUB asks shim to check
the kernel against Debian's CA (doc/secure-boot.rst). This is that last check,
done at build time with ``sbverify --cert`` against the CA from Debian's
``shim-unsigned`` package (``usr/share/shim/debian-uefi-ca.der``), and its
verdict is one manifest line::

    secure_boot true kernel signed by /CN=Debian Secure Boot Signer 2022 - linux
    secure_boot false kernel not signed by Debian's CA: <what sbverify said>
    secure_boot unknown <why the check could not run>

The CA comes from the host's apt (``apt-get download shim-unsigned``) into
``<cache>/debian-ca/<version>/``, once per package version. Offline, the newest
version already there is used; with none there the verdict is ``unknown``
(the image is built all the same, with a warning): a check that cannot run
says so in the manifest instead of failing a build whose image is fine.

An arm64 kernel is shipped gzip'd (buildlib.outputs.write_kernel): sbverify
reads PE files only, so the Image inside is checked and the verdict is
``unknown`` (no signed arm64 boot chain here yet), naming what that Image is
signed by.
"""

from __future__ import annotations

import base64
import gzip
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from buildlib.log import BuildError, Log, run

CA_PACKAGE = "shim-unsigned"
CA_PATH = "usr/share/shim/debian-uefi-ca.der"
GZIP_MAGIC = b"\x1f\x8b"
PE_MAGIC = b"MZ"


class CaUnavailable(Exception):
    """Debian's CA could not be fetched, and none is cached."""


# -- pure parts --------------------------------------------------------------------------


def der_to_pem(der: bytes) -> str:
    """A DER certificate as PEM (what ``sbverify --cert`` reads)."""
    body = base64.b64encode(der).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


_SUBJECT = re.compile(r"^\s*- subject: (.+)$", re.M)
_CANDIDATE = re.compile(r"^\s*Candidate:\s*(\S+)", re.M)
_FAILED = re.compile(r" exited with \d+(?:: (.*))?$", re.S)


def parse_signers(listing: str) -> list[str]:
    """The signing certificates' subjects from ``sbverify --list``."""
    return [subject.strip() for subject in _SUBJECT.findall(listing)]


def parse_candidate(policy: str) -> str | None:
    """The version apt would install, from ``apt-cache policy PACKAGE`` (None: none)."""
    m = _CANDIDATE.search(policy)
    return None if m is None or m.group(1) == "(none)" else m.group(1)


def failure_reason(message: str) -> str:
    """What sbverify said, from a :class:`BuildError` of buildlib.log.run
    (``<argv> exited with 1: line | line``), without the argv and its temp paths."""
    m = _FAILED.search(message)
    if m is None:
        return message
    return (m.group(1) or "sbverify failed without a message").replace(" | ", "; ")


def kernel_format(head: bytes) -> str:
    """``pe`` (a bzImage or an arm64 Image: both PE/EFI-stub files), ``gzip`` (an
    arm64 Image as shipped) or ``other``."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(PE_MAGIC):
        return "pe"
    return "other"


def version_dir(version: str) -> str:
    """A package version as a directory name (an epoch's colon left out)."""
    return version.replace(":", "%3a")


@dataclass(frozen=True)
class KernelSignature:
    """The verdict on one kernel: ``verified`` is True, False or None (unknown)."""

    verified: bool | None
    signers: tuple[str, ...] = ()
    detail: str = ""

    @property
    def state(self) -> str:
        return {True: "true", False: "false", None: "unknown"}[self.verified]

    def manifest_line(self) -> str:
        """``secure_boot true|false|unknown <why>`` for the build's manifest."""
        if self.verified is True:
            why = f"kernel signed by {'; '.join(self.signers)}"
        elif self.verified is False:
            why = f"kernel not signed by Debian's CA: {self.detail}"
        else:
            why = self.detail
        return f"secure_boot {self.state} {why}"

    def manifest_lines(self) -> list[str]:
        return [self.manifest_line()]

    def warning(self) -> str | None:
        """The line a build logs when the image is not Secure-Boot-capable (None if it is)."""
        if self.verified is True:
            return None
        if self.verified is False:
            return (f"WARNING: the kernel is not signed by Debian's CA ({self.detail}): "
                    "it will not boot with Secure Boot enforced")
        return f"WARNING: the kernel's Secure Boot signature was not checked: {self.detail}"


def unknown(why: str) -> KernelSignature:
    return KernelSignature(None, (), why)


# -- the check ---------------------------------------------------------------------------


def verify_pe(kernel: Path, ca_der: Path, sbverify: str | Path, work: Path) -> KernelSignature:
    """``sbverify --cert`` a PE kernel against the CA (the check shim enforces)."""
    pem = work / "debian-uefi-ca.pem"
    pem.write_text(der_to_pem(ca_der.read_bytes()))
    try:
        listing = str(run([sbverify, "--list", kernel]))
    except BuildError:  # no signature table: the check below says so
        listing = ""
    signers = tuple(parse_signers(listing))
    try:
        run([sbverify, "--cert", pem, kernel])
    except BuildError as exc:
        return KernelSignature(False, signers, failure_reason(str(exc)))
    return KernelSignature(True, signers, "Signature verification OK")


def verify_kernel(kernel: Path, ca_der: Path, sbverify: str | Path, work: Path) -> KernelSignature:
    """The verdict on *kernel* as a build ships it (see the module's doc for gzip)."""
    with open(kernel, "rb") as f:
        kind = kernel_format(f.read(64))
    if kind == "pe":
        return verify_pe(kernel, ca_der, sbverify, work)
    if kind == "other":
        return KernelSignature(False, (), "not a PE/EFI kernel image (nothing to sign)")
    inner = work / "Image"
    try:
        with gzip.open(kernel, "rb") as src, open(inner, "wb") as dest:
            shutil.copyfileobj(src, dest, 1 << 20)
    except (EOFError, gzip.BadGzipFile) as exc:
        return KernelSignature(False, (), f"a gzip'd kernel that does not unpack ({exc})")
    found = verify_pe(inner, ca_der, sbverify, work)
    what = (f"signed by {'; '.join(found.signers)}" if found.verified
            else f"not signed by Debian's CA: {found.detail}")
    return unknown(f"gzip'd kernel, as an arm64 Image is shipped (no signed arm64 boot chain "
                   f"here yet); the Image inside is {what}")


def debian_ca(cache: Path, log: Log) -> Path:
    """Debian's CA certificate (DER) from ``shim-unsigned``, fetched with the host's
    apt into ``<cache>/debian-ca/<version>/`` once per version.

    Raises :class:`CaUnavailable` when apt cannot give it and none is cached.
    """
    top = cache / "debian-ca"
    cached = sorted(top.glob(f"*/{CA_PATH}"), key=lambda p: p.stat().st_mtime)
    try:
        version = parse_candidate(str(log.run(["apt-cache", "policy", CA_PACKAGE],
                                              capture=True)))
    except BuildError as exc:
        version, why = None, str(exc)
    else:
        why = f"apt knows no {CA_PACKAGE} (apt-get update?)"
    if version is not None:
        dest = top / version_dir(version)
        if (dest / CA_PATH).is_file():
            return dest / CA_PATH
        try:
            return _fetch(top, dest, version, log)
        except BuildError as exc:
            why = f"apt-get download {CA_PACKAGE}={version} failed: {exc}"
    if cached:
        log.info(f"Debian's CA: {why}; using the cached {cached[-1]}")
        return cached[-1]
    raise CaUnavailable(f"Debian's CA ({CA_PACKAGE}) is not available: {why}")


def _fetch(top: Path, dest: Path, version: str, log: Log) -> Path:
    top.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fetch.", dir=top) as tmp:
        log.run(["apt-get", "download", "-q", f"{CA_PACKAGE}={version}"], cwd=Path(tmp))
        debs = sorted(Path(tmp).glob(f"{CA_PACKAGE}_*.deb"))
        if not debs:
            raise BuildError(f"apt-get download left no {CA_PACKAGE} .deb")
        tree = Path(tmp) / "root"
        log.run(["dpkg-deb", "-x", debs[0], tree])
        if not (tree / CA_PATH).is_file():
            raise BuildError(f"{debs[0].name} has no {CA_PATH}")
        try:
            tree.rename(dest)
        except OSError:  # another build fetched the same version meanwhile
            if not (dest / CA_PATH).is_file():
                raise
    return dest / CA_PATH


def check_kernel(kernel: Path, cache: Path, log: Log) -> KernelSignature:
    """The verdict on a build's *kernel*, for its manifest; logs a warning when the
    image is not Secure-Boot-capable. Never fails the build."""
    sbverify = shutil.which("sbverify")
    if sbverify is None:
        verdict = unknown("sbverify not found (package sbsigntool)")
    else:
        try:
            ca = debian_ca(cache, log)
        except CaUnavailable as exc:
            verdict = unknown(str(exc))
        else:
            with tempfile.TemporaryDirectory(prefix="lean-ipa-sbverify.") as tmp:
                verdict = verify_kernel(kernel, ca, sbverify, Path(tmp))
    log.info(verdict.manifest_line())
    warning = verdict.warning()
    if warning is not None:
        log.say(warning)
    return verdict

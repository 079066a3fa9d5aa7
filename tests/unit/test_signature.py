# SPDX-License-Identifier: Apache-2.0
"""buildlib/signature.py: the kernel's Secure Boot check every builder runs, its
parsing, its verdicts and where Debian's CA comes from (the real sbverify on a real
Debian kernel: tests/boot/test_kernel_signature.py)."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP))

from buildlib import signature  # noqa: E402
from buildlib.log import BuildError  # noqa: E402

SBVERIFY_LIST = """signature 1
image signature issuers:
 - /CN=Debian Secure Boot CA
image signature certificates:
 - subject: /CN=Debian Secure Boot Signer 2022 - linux
   issuer:  /CN=Debian Secure Boot CA
"""

POLICY = """shim-unsigned:
  Installed: (none)
  Candidate: 16.1-2~deb12u1
  Version table:
     16.1-2~deb12u1 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
"""


def test_parse_signers_and_pem() -> None:
    assert signature.parse_signers(SBVERIFY_LIST) == [
        "/CN=Debian Secure Boot Signer 2022 - linux"]
    assert signature.parse_signers("No signature table present\n") == []
    pem = signature.der_to_pem(bytes(range(100)))
    assert pem.startswith("-----BEGIN CERTIFICATE-----\n") and pem.endswith("-----\n")
    assert max(len(line) for line in pem.splitlines()) == 64


def test_parse_candidate() -> None:
    assert signature.parse_candidate(POLICY) == "16.1-2~deb12u1"
    assert signature.parse_candidate(POLICY.replace("16.1-2~deb12u1\n  Version",
                                                    "(none)\n  Version")) is None
    assert signature.parse_candidate("") is None  # apt knows no such package
    assert signature.version_dir("1:2.0-1") == "1%3a2.0-1"


def test_failure_reason_drops_the_command_line() -> None:
    message = ("/usr/bin/sbverify --cert /tmp/lean-ipa-sbverify.x/debian-uefi-ca.pem "
               "out/tinyipa/tinyipa.kernel exited with 1: No signature table present | "
               "Signature verification failed")
    assert signature.failure_reason(message) == (
        "No signature table present; Signature verification failed")
    assert signature.failure_reason("sbverify a exited with 1") == (
        "sbverify failed without a message")
    assert signature.failure_reason("sbverify: command not found") == (
        "sbverify: command not found")


def test_kernel_format() -> None:
    assert signature.kernel_format(b"MZ\x00\x00") == "pe"
    assert signature.kernel_format(gzip.compress(b"MZ")[:4]) == "gzip"
    assert signature.kernel_format(b"\x7fELF") == "other"


def test_manifest_lines_and_warnings() -> None:
    good = signature.KernelSignature(True, ("/CN=Debian Secure Boot Signer 2022 - linux",),
                                     "Signature verification OK")
    assert good.manifest_line() == ("secure_boot true kernel signed by "
                                    "/CN=Debian Secure Boot Signer 2022 - linux")
    assert good.manifest_lines() == [good.manifest_line()] and good.warning() is None
    bad = signature.KernelSignature(False, (), "No signature table present")
    assert bad.manifest_line() == ("secure_boot false kernel not signed by Debian's CA: "
                                   "No signature table present")
    assert "will not boot with Secure Boot enforced" in (bad.warning() or "")
    why = signature.unknown("sbverify not found (package sbsigntool)")
    assert why.manifest_line() == "secure_boot unknown sbverify not found (package sbsigntool)"
    assert (why.warning() or "").startswith("WARNING: the kernel's Secure Boot signature was "
                                            "not checked")


def test_a_file_that_is_no_pe_kernel_is_not_signed(tmp_path: Path) -> None:
    kernel = tmp_path / "kernel"
    kernel.write_bytes(b"\x7fELF" + bytes(100))
    verdict = signature.verify_kernel(kernel, tmp_path / "unused.der", "sbverify", tmp_path)
    assert verdict.verified is False and "not a PE/EFI kernel" in verdict.detail
    kernel.write_bytes(gzip.compress(b"MZ" + bytes(100))[:-6])  # cut short
    verdict = signature.verify_kernel(kernel, tmp_path / "unused.der", "sbverify", tmp_path)
    assert verdict.verified is False and "does not unpack" in verdict.detail


class FakeLog:
    """buildlib.log.Log's run/info/say, with apt answering from a table."""

    def __init__(self, policy: str = POLICY, download: bool = True) -> None:
        self.policy, self.download = policy, download
        self.ran: list[list[str]] = []
        self.lines: list[str] = []

    def run(self, argv, *, capture=False, cwd=None, **_):  # noqa: ANN001, ANN202
        args = [str(a) for a in argv]
        self.ran.append(args)
        if args[0] == "apt-cache":
            return self.policy
        if args[0] == "apt-get":
            if not self.download:
                raise BuildError("apt-get download -q ... exited with 100: E: Failed to fetch")
            (Path(cwd) / "shim-unsigned_16.1-2~deb12u1_amd64.deb").write_bytes(b"deb")
            return ""
        if args[0] == "dpkg-deb":  # dpkg-deb -x DEB TREE
            ca = Path(args[3]) / signature.CA_PATH
            ca.parent.mkdir(parents=True)
            ca.write_bytes(b"0\x82 the CA")
            return ""
        raise AssertionError(args)

    def info(self, message: str) -> None:
        self.lines.append(message)

    say = info


def test_debian_ca_is_fetched_once_per_version(tmp_path: Path) -> None:
    log = FakeLog()
    ca = signature.debian_ca(tmp_path, log)  # type: ignore[arg-type]
    assert ca == tmp_path / "debian-ca/16.1-2~deb12u1" / signature.CA_PATH
    assert ca.read_bytes() == b"0\x82 the CA"
    assert [a[0] for a in log.ran] == ["apt-cache", "apt-get", "dpkg-deb"]
    assert "shim-unsigned=16.1-2~deb12u1" in log.ran[1]
    again = FakeLog()
    assert signature.debian_ca(tmp_path, again) == ca  # type: ignore[arg-type]
    assert [a[0] for a in again.ran] == ["apt-cache"]
    assert sorted(p.name for p in (tmp_path / "debian-ca").iterdir()) == ["16.1-2~deb12u1"]


def test_a_ca_fetched_meanwhile_by_another_build_is_taken(tmp_path: Path) -> None:
    log = FakeLog()
    first = signature.debian_ca(tmp_path, log)  # type: ignore[arg-type]
    dest = first.parents[len(Path(signature.CA_PATH).parts) - 1]
    again = signature._fetch(tmp_path / "debian-ca", dest, "16.1-2~deb12u1", FakeLog())
    assert again == first and first.read_bytes() == b"0\x82 the CA"


def test_offline_the_cached_ca_is_used_and_without_one_it_is_unknown(tmp_path: Path) -> None:
    newer = POLICY.replace("16.1-2~deb12u1", "16.1-3")
    with pytest.raises(signature.CaUnavailable, match="apt-get download shim-unsigned=16.1-3 "
                                                      "failed"):
        signature.debian_ca(tmp_path, FakeLog(newer, download=False))  # type: ignore[arg-type]
    with pytest.raises(signature.CaUnavailable, match=r"apt knows no shim-unsigned"):
        signature.debian_ca(tmp_path, FakeLog("", download=False))  # type: ignore[arg-type]
    old = signature.debian_ca(tmp_path, FakeLog())  # type: ignore[arg-type]
    log = FakeLog(newer, download=False)
    assert signature.debian_ca(tmp_path, log) == old  # type: ignore[arg-type]
    assert any("using the cached" in line for line in log.lines)


def test_check_kernel_says_unknown_when_the_check_cannot_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kernel = tmp_path / "tinyipa.kernel"
    kernel.write_bytes(b"MZ" + bytes(100))
    monkeypatch.setattr(signature.shutil, "which", lambda name: None)
    log = FakeLog()
    verdict = signature.check_kernel(kernel, tmp_path, log)  # type: ignore[arg-type]
    assert verdict.manifest_line() == (
        "secure_boot unknown sbverify not found (package sbsigntool)")
    assert any(line.startswith("WARNING: ") for line in log.lines)
    monkeypatch.setattr(signature.shutil, "which", lambda name: "/usr/bin/sbverify")
    offline = FakeLog("", download=False)
    verdict = signature.check_kernel(kernel, tmp_path, offline)  # type: ignore[arg-type]
    assert verdict.verified is None
    assert "Debian's CA (shim-unsigned) is not available: apt knows no" in verdict.detail

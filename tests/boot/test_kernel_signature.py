# SPDX-License-Identifier: Apache-2.0
"""The builders' Secure Boot check (buildlib/signature.py) with the real sbverify on
tinyipa's kernel, Debian's signed one, and on copies that are not: the signature
removed (sbattach --remove), signed by a key of our own (sbsign), gzip'd. No boot:
seconds once the shared tinyipa image is there."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import pytest

from buildlib import signature
from buildlib.log import Log
from tests.boot.test_iso import CACHE

pytestmark = pytest.mark.build

DEBIAN_SIGNER = "/CN=Debian Secure Boot Signer"


@pytest.fixture(scope="module")
def checked(tinyipa_image: tuple[Path, Path],
            tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(kernel, Debian's CA, work dir): the CA as the build fetched it (cached)."""
    work = tmp_path_factory.mktemp("signature")
    ca = signature.debian_ca(CACHE / "tinyipa", Log(work / "fetch.log"))
    return tinyipa_image[0], ca, work


def verify(kernel: Path, ca: Path, work: Path) -> signature.KernelSignature:
    return signature.verify_kernel(kernel, ca, shutil.which("sbverify") or "sbverify", work)


def test_the_build_says_its_kernel_is_debians_signed_one(
        tinyipa_image: tuple[Path, Path]) -> None:
    manifest = tinyipa_image[0].with_suffix(".manifest").read_text().splitlines()
    lines = [line for line in manifest if line.startswith("secure_boot ")]
    assert len(lines) == 1 and lines[0].startswith(
        f"secure_boot true kernel signed by {DEBIAN_SIGNER}"), lines


def test_debians_kernel_verifies(checked: tuple[Path, Path, Path]) -> None:
    kernel, ca, work = checked
    verdict = verify(kernel, ca, work)
    assert verdict.verified is True, verdict
    assert any(s.startswith(DEBIAN_SIGNER) for s in verdict.signers), verdict


def test_without_its_signature_it_does_not(checked: tuple[Path, Path, Path],
                                           tmp_path: Path) -> None:
    kernel, ca, work = checked
    bare = tmp_path / "unsigned.kernel"
    shutil.copyfile(kernel, bare)
    subprocess.run(["sbattach", "--remove", str(bare)], check=True, capture_output=True)
    verdict = verify(bare, ca, work)
    assert verdict.manifest_line() == ("secure_boot false kernel not signed by Debian's CA: "
                                       "No signature table present")


def test_signed_by_another_key_it_does_not(checked: tuple[Path, Path, Path],
                                           tmp_path: Path) -> None:
    kernel, ca, work = checked
    bare, other = tmp_path / "bare.kernel", tmp_path / "other.kernel"
    shutil.copyfile(kernel, bare)
    subprocess.run(["sbattach", "--remove", str(bare)], check=True, capture_output=True)
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-days", "1", "-subj", "/CN=not Debian", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True)
    subprocess.run(["sbsign", "--key", str(key), "--cert", str(cert), "--output", str(other),
                    str(bare)], check=True, capture_output=True)
    verdict = verify(other, ca, work)
    assert verdict.verified is False and verdict.signers == ("/CN=not Debian",), verdict
    assert verdict.detail, verdict


def test_gzipd_the_image_inside_is_checked(checked: tuple[Path, Path, Path],
                                           tmp_path: Path) -> None:
    kernel, ca, work = checked
    packed = tmp_path / "kernel.gz"
    packed.write_bytes(gzip.compress(kernel.read_bytes(), compresslevel=1))
    line = verify(packed, ca, work).manifest_line()
    assert line.startswith("secure_boot unknown gzip'd kernel") and (
        f"the Image inside is signed by {DEBIAN_SIGNER}" in line), line

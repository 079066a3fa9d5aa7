# SPDX-License-Identifier: Apache-2.0
"""TLS: the agent's self-signed API certificate, and the contexts for both directions.

The certificate is made with the ``openssl`` CLI (already in every image for
libssl) rather than the ``cryptography`` wheel, which alone would weigh more
than the rest of the agent.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import socket
import ssl
import tempfile
from dataclasses import dataclass

from ironic_python_agent.run import run

CURVES = {"p256": "prime256v1", "p384": "secp384r1", "p521": "secp521r1"}
# TLS 1.2 ciphers when none are configured (TLS 1.3 suites are not configurable).
DEFAULT_CIPHERS = ("ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:"
                   "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256")
TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}

_CA_CONFIG = """\
[ca]
default_ca = lean
[lean]
database = {dir}/index.txt
new_certs_dir = {dir}
serial = {dir}/serial
policy = any
copy_extensions = none
[any]
commonName = supplied
[ext]
subjectAltName = critical,IP:{ip}
"""


@dataclass(frozen=True)
class Certificate:
    cert_file: str
    key_file: str
    pem: str


def _asn1_time(when: datetime.datetime) -> str:
    return when.strftime("%Y%m%d%H%M%SZ")


def make_self_signed(ip: str, directory: str = "/run/ironic-python-agent",
                     curve: str = "p384", clock_skew: int = 3600, days: int = 30,
                     hostname: str | None = None) -> Certificate:
    """A self-signed EC certificate for *ip* (SAN, critical), valid from now − skew.

    The back-dated start keeps it valid for a conductor whose clock is behind ours.
    """
    ipaddress.ip_address(ip)  # refuse anything that is not an address
    os.makedirs(directory, mode=0o700, exist_ok=True)
    key = os.path.join(directory, "agent.key")
    crt = os.path.join(directory, "agent.crt")
    now = datetime.datetime.now(datetime.timezone.utc)
    start = now - datetime.timedelta(seconds=clock_skew)
    end = now + datetime.timedelta(days=days)
    cn = (hostname or socket.gethostname() or "ironic-python-agent")[:64]
    with tempfile.TemporaryDirectory(prefix="agent-tls-") as tmp:
        conf = os.path.join(tmp, "ca.cnf")
        with open(conf, "w", encoding="utf-8") as f:
            f.write(_CA_CONFIG.format(dir=tmp, ip=ip))
        open(os.path.join(tmp, "index.txt"), "w").close()
        with open(os.path.join(tmp, "serial"), "w", encoding="ascii") as f:
            f.write(secrets.token_hex(16) + "\n")
        csr = os.path.join(tmp, "agent.csr")
        old = os.umask(0o077)
        try:
            run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                 f"ec_paramgen_curve:{CURVES[curve]}", "-nodes", "-keyout", key,
                 "-subj", f"/CN={cn}", "-out", csr], log=False)
        finally:
            os.umask(old)
        run(["openssl", "ca", "-batch", "-selfsign", "-notext", "-config", conf,
             "-keyfile", key, "-in", csr, "-out", crt, "-md", "sha512",
             "-startdate", _asn1_time(start), "-enddate", _asn1_time(end),
             "-extensions", "ext"], log=False)
    with open(crt, encoding="ascii") as f:
        pem = f.read()
    # `openssl ca` can leave text before the PEM block; Ironic wants the PEM only.
    pem = pem[pem.index("-----BEGIN CERTIFICATE-----"):]
    with open(crt, "w", encoding="ascii") as f:
        f.write(pem)
    return Certificate(crt, key, pem)


def server_context(cert_file: str, key_file: str, min_version: str = "1.2",
                   ciphers: str | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = TLS_VERSIONS[min_version]
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_ciphers(ciphers or DEFAULT_CIPHERS)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def client_context(insecure: bool = False, cafile: str | None = None,
                   certfile: str | None = None, keyfile: str | None = None,
                   min_version: str | None = None) -> ssl.SSLContext:
    """The SSL context for outbound HTTPS (Ironic, image servers, inspector)."""
    ctx = ssl.create_default_context(cafile=cafile)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if certfile:
        ctx.load_cert_chain(certfile, keyfile)
    if min_version:
        wanted = TLS_VERSIONS.get(str(min_version).removeprefix("TLSv"))
        if wanted is not None:
            ctx.minimum_version = wanted
    return ctx

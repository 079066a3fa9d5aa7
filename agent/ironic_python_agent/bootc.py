# SPDX-License-Identifier: Apache-2.0
"""bootc deploys: ``podman`` runs the tenant's container, whose ``bootc`` installs it.

Ironic 39's ``bootc`` deploy interface sends the deploy step
``execute_bootc_install`` with an ``oci://`` image source, the config drive and
a base64 pull secret. As upstream, the container is pulled first (with the
secret in a private file that is removed before any tenant code runs), then
run privileged with ``/dev`` so that ``bootc install to-disk`` partitions and
writes the install disk, leaving 768 MiB for the ESP and the config drive.

The deploy images do not carry podman by default (it is bigger than all of
tinyipa): the step then fails at once with an error that says so, before
anything on the disk is touched.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import tempfile
import urllib.parse

from ironic_python_agent import errors, run

LOG = logging.getLogger(__name__)

# bootc lays out a 512 MiB ESP; the rest leaves room for the config drive.
RESERVED_MIB = 768
NO_PIVOT_ROOT = "/etc/containers/containers.conf.d/01-ipa.conf"


def container_ref(image_source: str) -> str:
    """``oci://registry/path:tag`` (or a plain reference) as podman names it."""
    url = urllib.parse.urlparse(image_source)
    ref = (url.netloc + url.path) if url.scheme else image_source
    if not ref or ref.startswith("/"):
        raise errors.InvalidCommandParamsError(
            f"image_source {image_source!r} names no container image")
    return ref


def registry(ref: str) -> str:
    return ref.split("/", 1)[0]


def auth_document(pull_secret: str, netloc: str) -> dict:
    """The containers-auth.json podman reads: Ironic's secret is base64 of the auth value."""
    try:
        auth = base64.standard_b64decode(pull_secret).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise errors.InvalidCommandParamsError("oci_pull_secret is not base64") from None
    return {"auths": {netloc: {"auth": auth}}}


def install_argv(ref: str, device: str, root_size_mib: int, *, selinux: bool,
                 tpm2_luks: bool = False, keys_file: str | None = None) -> list[str]:
    """``podman run ... bootc install to-disk`` for *device* (the image is already pulled)."""
    argv = ["podman", "--log-level=debug", "run", "--rm", "--privileged", "--pid=host",
            "--pull=never", "-v", "/var/lib/containers:/var/lib/containers",
            "-v", "/dev:/dev"]
    if keys_file:
        argv += ["-v", f"{os.path.dirname(keys_file)}:{os.path.dirname(keys_file)}"]
    if selinux:
        argv += ["--security-opt", "label=type:unconfined_t"]
    argv += [ref, "bootc", "install", "to-disk", "--wipe", "--skip-fetch-check",
             f"--root-size={root_size_mib}M"]
    if tpm2_luks:
        argv.append("--block-setup=tpm2-luks")
    if keys_file:
        argv.append(f"--root-ssh-authorized-keys={keys_file}")
    if not selinux:
        argv.append("--disable-selinux")
    return [*argv, device]


def lacks_bootc(output: str) -> bool:
    """podman's words when the container has no bootc (seen on stdout and stderr)."""
    return "executable file `bootc` not found" in output


def _selinux_enabled() -> bool:
    try:
        done = run.run(["getenforce"], check=False, timeout=30)
    except run.CommandError:
        return False
    return done.stdout.startswith(("Enforcing", "Permissive"))


def _private_file(content: str, prefix: str, suffix: str = "") -> str:
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=suffix)  # mode 0600
    with os.fdopen(fd, "w") as f:
        f.write(content)
    return path


def install(image_source: str, device: str, device_bytes: int, *,
            pull_secret: str | None = None, tpm2_luks: bool = False,
            authorized_keys: str | None = None, no_pivot_root: str | None = None) -> None:
    """Pull *image_source* and let its bootc install it onto *device*."""
    if run.which("podman") is None:
        raise errors.CommandExecutionError(
            "execute_bootc_install needs podman, which this deploy image does not "
            "carry; build one with podman or use a disk image (image_source "
            f"{image_source!r} was not deployed, {device} is untouched)")
    ref = container_ref(image_source)
    root_mib = device_bytes // (1024 * 1024) - RESERVED_MIB
    if root_mib <= 0:
        raise errors.DeploymentError(
            f"{device} ({device_bytes // (1024 * 1024)} MiB) is too small for a bootc "
            f"install ({RESERVED_MIB} MiB are kept for the ESP and the config drive)")
    # pivot_root cannot be done from a ramdisk's rootfs.
    no_pivot_root = no_pivot_root or NO_PIVOT_ROOT
    os.makedirs(os.path.dirname(no_pivot_root), exist_ok=True)
    with open(no_pivot_root, "w") as f:
        f.write("[engine]\nno_pivot_root = true\n")

    pull = ["podman", "pull", "--retry-delay=5s"]
    auth_path = None
    if pull_secret:
        doc = auth_document(pull_secret, registry(ref))
        auth_path = _private_file(json.dumps(doc), "ipa-container-auth-", ".json")
        pull.append(f"--authfile={auth_path}")
    LOG.info("Pulling %s for bootc", ref)
    try:
        run.run([*pull, ref], timeout=3600)
    except run.CommandError as exc:
        raise errors.ImageDownloadError(image_source, str(exc)) from None
    finally:
        if auth_path:  # gone before the tenant's container runs
            os.unlink(auth_path)

    keys_file = _private_file(authorized_keys, "ipa-bootc-keys-") if authorized_keys else None
    argv = install_argv(ref, device, root_mib, selinux=_selinux_enabled(),
                        tpm2_luks=tpm2_luks, keys_file=keys_file)
    LOG.info("Running bootc install of %s to %s", ref, device)
    try:
        done = run.run(argv, check=False, timeout=4 * 3600)
    finally:
        if keys_file:
            os.unlink(keys_file)
    if lacks_bootc(done.stdout) or lacks_bootc(done.stderr):
        raise errors.ImageDownloadError(
            image_source, "the container has no bootc binary and cannot be deployed")
    if done.returncode != 0:
        raise errors.ImageWriteError(device, done.returncode, done.stdout, done.stderr)

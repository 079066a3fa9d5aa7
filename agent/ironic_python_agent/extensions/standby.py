# SPDX-License-Identifier: Apache-2.0
"""The ``standby`` namespace: write the image, report its root, power off or reboot.

``prepare_image`` is the whole deployment of a whole-disk image: choose the
install disk, stream the image onto it while hashing (:mod:`imagewrite`),
add the config drive (:mod:`configdrive`) and remember the disk identifier
for ``get_partition_uuids``. A partition image (``image_type: partition``)
goes through :mod:`partition_image`: the disk is partitioned as image_info
says and the image streamed into the root partition. The ``write_image``
deploy step calls it and waits for it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from ironic_python_agent import bootc, checksum, config, download, errors, imagewrite, ntp
from ironic_python_agent import paths, run
from ironic_python_agent import partition_image, partition_table
from ironic_python_agent import configdrive as configdrive_mod
from ironic_python_agent.extensions import base

LOG = logging.getLogger(__name__)

CACHE_DIR = "/tmp"


def download_options(agent: Any, image_info: Mapping[str, Any]) -> download.DownloadOptions:
    """The download settings: agent.conf for transport, image_info for auth and proxies."""
    def opt(name: str) -> Any:
        return getattr(config.current(), name)

    headers: dict[str, str] = {}
    if image_info.get("image_request_authorization"):
        try:
            headers["Authorization"] = base64.b64decode(
                image_info["image_request_authorization"]).decode()
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise errors.InvalidCommandParamsError(
                "image_request_authorization is not base64") from None
    elif image_info.get("image_server_auth_strategy") == "http_basic":
        headers["Authorization"] = download.basic_auth_header(
            str(image_info.get("image_server_user") or ""),
            str(image_info.get("image_server_password") or ""))
    elif opt("image_server_auth_strategy") == "http_basic":
        headers["Authorization"] = download.basic_auth_header(
            str(opt("image_server_user") or ""), str(opt("image_server_password") or ""))
    proxies, no_proxy = download.proxies_from_image_info(image_info)
    return download.DownloadOptions(
        connect_timeout=float(opt("image_download_connection_timeout")),
        retries=int(opt("image_download_connection_retries")),
        retry_interval=float(opt("image_download_connection_retry_interval")),
        max_duration=float(opt("image_download_max_duration") or 0),
        insecure=bool(opt("insecure")), cafile=opt("cafile"), certfile=opt("certfile"),
        keyfile=opt("keyfile"), tls_min_version=opt("tls_min_version"),
        proxies=proxies, no_proxy=no_proxy, headers=headers)


def validate_image_info(ext: Any, image_info: Any = None, configdrive: Any = None,
                        **kwargs: Any) -> None:
    """The synchronous check of ``prepare_image``: a bad image_info is a 400."""
    if not isinstance(image_info, dict):
        raise errors.InvalidCommandParamsError("image_info must be an object")
    if not image_info.get("id"):
        raise errors.InvalidCommandParamsError("Image is missing 'id' field.")
    problem = paths.name_problem(str(image_info["id"]))
    if problem is not None:
        # It names the image's cache file: it must not name a path elsewhere.
        raise errors.InvalidCommandParamsError(
            f"image_info.id {str(image_info['id'])[:80]!r} {problem}")
    urls = image_info.get("urls")
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        raise errors.InvalidCommandParamsError("Image 'urls' must be a non-empty list of URLs")
    if image_info.get("image_type") == "partition":
        partition_image.layout_from_image_info(image_info)
    checksum.validate_image_info_checksum(image_info, bool(config.current().md5_enabled))


def power_action(action: str, argv: list[str] | None = None,
                 sysrq: str = "/proc/sysrq-trigger") -> None:
    """Run ``reboot`` or ``poweroff``; fall back to the kernel's sysrq trigger."""
    reason = ""
    try:
        done = run.run(argv or [action], check=False, timeout=60)
        if done.returncode == 0 and "ignoring request" not in done.stderr.lower():
            return
        reason = done.stderr.strip() or f"exit code {done.returncode}"
    except run.CommandError as exc:
        reason = str(exc)
    LOG.warning("%s failed (%s); using /proc/sysrq-trigger", action, reason)
    try:
        with open(sysrq, "w") as f:
            f.write("b" if action == "reboot" else "o")
    except OSError as exc:
        raise errors.SystemRebootError(f"{action} failed ({reason}) and sysrq failed: {exc}"
                                       ) from None


class StandbyExtension(base.BaseAgentExtension):
    def __init__(self, agent: Any = None) -> None:
        super().__init__(agent=agent)
        self.cached_image_id: str | None = None
        self.partition_uuids: dict[str, Any] = {}
        self.last_write: imagewrite.WriteResult | None = None
        # Injectable: tests write to their own loop device, never touch the host's
        # clock or disks, and never power off.
        self.device_finder: Callable[[], str] = _install_device
        self.power_action: Callable[[str], None] = power_action
        self.clock_sync: Callable[[], None] = _set_hardware_clock
        self.ntp_sync: Callable[..., Any] = ntp.sync_clock
        self.disk_sync: Callable[[], None] = _sync_all_disks
        self.cache_dir = CACHE_DIR

    # --- prepare_image ------------------------------------------------------------

    @base.async_command("prepare_image", validator=validate_image_info)
    def prepare_image(self, image_info: dict[str, Any],
                      configdrive: str | None = None) -> dict[str, Any]:
        """Write the image (and config drive) to the install disk; verified and synced."""
        image_info = dict(image_info)
        inline_cd = image_info.pop("configdrive", None)
        configdrive = configdrive if configdrive is not None else inline_cd
        device = self.device_finder()
        image_id = str(image_info["id"])
        opts = download_options(self.agent, image_info)
        self.partition_uuids = {}
        self.cached_image_id = None
        expected = checksum.expected_checksum(
            image_info, bool(config.current().md5_enabled),
            fetch=lambda url: download.fetch_bytes(url, opts))
        policy = imagewrite.FormatPolicy(
            disk_format=image_info.get("disk_format"),
            permitted=config.current().permitted_image_formats,
            deep=not config.current().disable_deep_image_inspection)
        if image_info.get("image_type") == "partition":
            return self._prepare_partition_image(image_info, configdrive, device, expected,
                                                 policy, opts)
        LOG.info("Writing image %s from %s to %s", image_id,
                 download.redact_url(image_info["urls"][0]), device)
        with download.ImageStream(image_id, image_info["urls"], opts) as stream:
            result = imagewrite.write_stream(
                stream, device, expected, name=image_id,
                location=download.redact_url(stream.url), policy=policy,
                cache_dir=self.cache_dir)
        self.last_write = result
        configdrive_mod.rescan(device)
        table = partition_table.read_partition_table(device)
        if table is None or not table.partitions:
            raise errors.DeploymentError(
                f"No partitions found on {device} after writing image {image_id}")
        uuids: dict[str, Any] = {}
        if configdrive:
            content = configdrive_mod.decode(
                configdrive, fetch=lambda url: download.fetch_bytes(url, opts))
            part = configdrive_mod.write_configdrive(device, content)
            uuids["partitions"] = {"configdrive": part}
        root_uuid = configdrive_mod.disk_identifier(device)
        uuids["root uuid"] = root_uuid
        self.partition_uuids = uuids
        self.cached_image_id = image_id
        message = (f"image ({image_id}) written to device {device} root_uuid={root_uuid}")
        return {"result": f"prepare_image: {message}", **self._figures(result)}

    def _prepare_partition_image(self, image_info: dict[str, Any], configdrive: str | None,
                                 device: str, expected: checksum.Checksum,
                                 policy: imagewrite.FormatPolicy,
                                 opts: download.DownloadOptions) -> dict[str, Any]:
        """Partition the disk as image_info says and stream the image into the root."""
        image_id = str(image_info["id"])
        layout = partition_image.layout_from_image_info(image_info)
        content = None
        if configdrive:
            content = configdrive_mod.decode(
                configdrive, fetch=lambda url: download.fetch_bytes(url, opts))
        written: list[imagewrite.WriteResult] = []

        def write_root(root: str) -> None:
            LOG.info("Writing partition image %s from %s to %s", image_id,
                     download.redact_url(image_info["urls"][0]), root)
            with download.ImageStream(image_id, image_info["urls"], opts) as stream:
                written.append(imagewrite.write_stream(
                    stream, root, expected, name=image_id,
                    location=download.redact_url(stream.url), policy=policy,
                    cache_dir=self.cache_dir))

        uuids = partition_image.deploy(device, layout, write_root, content)
        self.last_write = written[0]
        self.partition_uuids = uuids
        self.cached_image_id = image_id
        message = (f"image ({image_id}) written to device {device} "
                   f"root_uuid={uuids['root uuid']}")
        if uuids.get("efi system partition uuid"):
            message += f" efi_system_partition_uuid={uuids['efi system partition uuid']}"
        return {"result": f"prepare_image: {message}", **self._figures(written[0])}

    @staticmethod
    def _figures(result: imagewrite.WriteResult) -> dict[str, Any]:
        # Extra keys beside "result": Ironic reads only "result".
        return {"bytes": result.bytes_downloaded, "bytes_written": result.bytes_written,
                "seconds": round(result.seconds, 3), "mib_per_s": round(result.mib_per_s, 1),
                "image_format": result.image_format, "compression": result.compression,
                "resumes": result.resumes, "write_method": result.method}

    # --- execute_bootc_install -----------------------------------------------------

    @base.async_command("execute_bootc_install")
    def execute_bootc_install(self, image_source: str, instance_info: dict[str, Any] | None = None,
                              pull_secret: str | None = None,
                              configdrive: str | None = None) -> str:
        """Install an ``oci://`` bootc container on the install disk (see :mod:`bootc`)."""
        if config.current().disable_bootc_deploy:
            raise errors.CommandExecutionError(
                "The bootc deploy interface is administratively disabled "
                "([DEFAULT]disable_bootc_deploy); deployment cannot proceed.")
        instance_info = instance_info or {}
        device = self.device_finder()
        self.partition_uuids = {}
        self.cached_image_id = None
        bootc.install(image_source, device, imagewrite.device_size(device),
                      pull_secret=pull_secret,
                      tpm2_luks=bool(instance_info.get("bootc_tpm2_luks")),
                      authorized_keys=instance_info.get("bootc_authorized_keys"))
        configdrive_mod.rescan(device)
        table = partition_table.read_partition_table(device)
        if table is None or not table.partitions:
            raise errors.DeploymentError(
                f"No partitions found on {device} after the bootc install of {image_source}")
        uuids: dict[str, Any] = {"root uuid": configdrive_mod.disk_identifier(device)}
        if configdrive:
            opts = download_options(self.agent, {})
            content = configdrive_mod.decode(
                configdrive, fetch=lambda url: download.fetch_bytes(url, opts))
            uuids["partitions"] = {"configdrive": configdrive_mod.write_configdrive(
                device, content)}
        self.partition_uuids = uuids
        message = f"Container image ({image_source}) written to device {device}"
        LOG.info("%s", message)
        return message

    @base.sync_command("get_partition_uuids")
    def get_partition_uuids(self) -> dict[str, Any]:
        """The root (the disk identifier for whole-disk images) of the last write."""
        if not self.partition_uuids:
            LOG.warning("get_partition_uuids called before any image was written")
        return dict(self.partition_uuids)

    # --- power --------------------------------------------------------------------

    def _shutdown(self, action: str) -> None:
        # As upstream: the software clock from ntp_server, then the hardware clock from it.
        self.ntp_sync(config.current().ntp_server,
                      fail=bool(config.current().fail_if_clock_not_set))
        try:
            self.clock_sync()
        except run.CommandError as exc:
            if config.current().fail_if_clock_not_set:
                raise errors.ClockSyncError(str(exc)) from None
            LOG.warning("Could not set the hardware clock: %s", exc)
        try:
            self.disk_sync()
        except Exception as exc:  # noqa: BLE001 - power off anyway, as upstream does
            LOG.warning("Syncing before %s failed: %s", action, exc)
        LOG.info("Running %s", action)
        self.power_action(action)

    @base.async_command("run_image")
    def run_image(self) -> None:
        """Reboot into the written image."""
        self._shutdown("reboot")

    @base.async_command("power_off")
    def power_off(self) -> None:
        """Power the node off (Ironic then boots it from disk)."""
        self._shutdown("poweroff")

    @base.sync_command("sync")
    def sync(self) -> None:
        """Flush every disk's caches."""
        try:
            self.disk_sync()
        except errors.RESTError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported as the command's error
            raise errors.CommandExecutionError(f"sync failed: {exc}") from None


def _set_hardware_clock() -> None:
    run.run(["hwclock", "-v", "--systohc"], timeout=60)


def _sync_all_disks() -> None:
    from ironic_python_agent import hardware

    os.sync()
    hardware.dispatch_to_all_managers("full_sync")


def _install_device() -> str:
    from ironic_python_agent import hardware

    return hardware.get_os_install_device(permit_refresh=True)


EXTENSION = StandbyExtension

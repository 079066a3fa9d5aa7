# SPDX-License-Identifier: Apache-2.0
"""standby.* and image.install_bootloader driven as Ironic drives them.

The install disk is a loop device made here; power actions, the hardware
clock and disk flushing are replaced so nothing happens to the host.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ironic_python_agent import errors
from ironic_python_agent.extensions import base, standby
from ironic_python_agent.extensions import image as image_ext

from tests.hwfixtures import hardware_conf, reset_hardware
from tests.imageserver import ImageServer
from tests.imagetools import (
    MIB,
    device_digest,
    file_digest,
    loop_device,
    make_disk_image,
    qcow2_copy,
    read_device,
)

DISK = 128 * MIB


class FakeAgent:
    """The agent's part the extensions use: the configuration handed over (upstream
    defaults with quick retries, plus *conf*) and forced heartbeats."""

    def __init__(self, **conf: Any) -> None:
        self.conf = hardware_conf(**{"image_download_connection_retries": 1,
                                     "image_download_connection_retry_interval": 0, **conf})
        self.heartbeats = 0

    def force_heartbeat(self) -> None:
        self.heartbeats += 1


@pytest.fixture(autouse=True)
def _forget_config() -> Iterator[None]:
    yield
    reset_hardware()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cmd-images")
    out = {"gpt": make_disk_image(d / "gpt.raw", 16 * MIB, "gpt"),
           "dos": make_disk_image(d / "dos.raw", 16 * MIB, "dos", seed=2)}
    out["qcow2"] = qcow2_copy(out["dos"], d / "dos.qcow2")
    (d / "tree/openstack/latest").mkdir(parents=True)
    (d / "tree/openstack/latest/meta_data.json").write_text("{}")
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "config-2", "-o",
                    str(d / "cd.iso"), str(d / "tree")], check=True)
    out["iso"] = d / "cd.iso"
    (d / "SHA256SUMS").write_text(f"{file_digest(out['gpt'])}  gpt.raw\n")
    out["sums"] = d / "SHA256SUMS"
    return out


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[str]:
    with loop_device(tmp_path / "disk", DISK) as dev:
        yield dev


@pytest.fixture
def ext(disk: str, tmp_path: Path) -> standby.StandbyExtension:
    e = standby.StandbyExtension(agent=FakeAgent())
    e.device_finder = lambda: disk
    e.clock_sync = lambda: None
    e.disk_sync = os.sync
    e.cache_dir = str(tmp_path)
    return e


def image_info(url: str, sha: str, **extra: Any) -> dict[str, Any]:
    info = {"id": "7c9e0d5a-img", "urls": [url], "disk_format": "raw",
            "container_format": "bare", "stream_raw_images": True, "os_hash_algo": "sha256",
            "os_hash_value": sha, "node_uuid": "n-1", "image_type": "whole-disk"}
    info.update(extra)
    return info


def test_prepare_image_with_configdrive(server: ImageServer, ext: standby.StandbyExtension,
                                        disk: str, images: dict[str, Path]) -> None:
    url = server.serve("/dos.raw", images["dos"])
    cd = base64.b64encode(gzip.compress(images["iso"].read_bytes())).decode()
    result = ext.execute("prepare_image", image_info=image_info(url, file_digest(images["dos"])),
                         configdrive=cd).join()
    assert result.command_error is None, result.serialize()
    wire = result.serialize()
    assert wire["command_status"] == "SUCCEEDED"
    text = wire["command_result"]["result"]
    assert text == f"prepare_image: image (7c9e0d5a-img) written to device {disk} " \
                   "root_uuid=0x1a2b3c4d"
    assert wire["command_result"]["bytes"] == 16 * MIB
    assert wire["command_result"]["seconds"] > 0 and wire["command_result"]["mib_per_s"] > 0
    json.dumps(wire)
    # The whole image is there; only the partition table in sector 0 gained an entry.
    data = images["dos"].read_bytes()
    assert read_device(disk, len(data) - 512, 512) == data[512:]
    assert read_device(disk, 446) == data[:446]
    uuids = ext.execute("get_partition_uuids").serialize()["command_result"]
    assert uuids["root uuid"] == "0x1a2b3c4d"
    assert uuids["partitions"]["configdrive"] == f"{disk}p3"
    assert ext.agent.heartbeats == 1  # the async command forced a heartbeat


def test_prepare_image_qcow2_and_checksum_file(server: ImageServer,
                                               ext: standby.StandbyExtension, disk: str,
                                               images: dict[str, Path]) -> None:
    url = server.serve("/dos.qcow2", images["qcow2"])
    info = image_info(url, file_digest(images["qcow2"]), disk_format="qcow2")
    result = ext.execute("prepare_image", image_info=info).join()
    assert result.serialize()["command_status"] == "SUCCEEDED", result.serialize()
    assert device_digest(disk, 16 * MIB) == file_digest(images["dos"])
    # GPT image, checksum given as a URL to a SHA256SUMS file.
    url = server.serve("/gpt.raw", images["gpt"])
    sums = server.serve("/SHA256SUMS", images["sums"])
    info = image_info(url, "", os_hash_algo=None, os_hash_value=None, checksum=sums)
    del info["os_hash_algo"], info["os_hash_value"]
    result = ext.execute("prepare_image", image_info=info).join()
    assert result.serialize()["command_status"] == "SUCCEEDED", result.serialize()
    assert device_digest(disk, 16 * MIB) == file_digest(images["gpt"])
    assert ext.execute("get_partition_uuids").command_result == {"root uuid": "0x00000000"}


def test_prepare_image_checksum_mismatch_is_failed(server: ImageServer,
                                                   ext: standby.StandbyExtension, disk: str,
                                                   images: dict[str, Path]) -> None:
    url = server.serve("/dos.raw", images["dos"])
    result = ext.execute("prepare_image", image_info=image_info(url, "f" * 64)).join()
    wire = result.serialize()
    assert wire["command_status"] == "FAILED"
    assert wire["command_error"]["type"] == "ImageChecksumError"
    assert read_device(disk, MIB) == bytes(MIB)
    assert ext.execute("get_partition_uuids").command_result == {}


@pytest.mark.parametrize("info, message", [
    ({"urls": ["http://h/i"], "os_hash_algo": "sha256", "os_hash_value": "a"},
     "Image is missing 'id' field."),
    ({"id": "i", "urls": [], "checksum": "a" * 64}, "urls"),
    ({"id": "i", "urls": ["http://h/i"], "checksum": "a" * 32}, "MD5"),
    ({"id": "i", "urls": ["http://h/i"], "checksum": "a" * 64, "image_type": "partition"},
     "a partition image needs image_info.root_mb or root_gb"),
])
def test_prepare_image_validation_is_synchronous(ext: standby.StandbyExtension,
                                                 info: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.InvalidCommandParamsError) as exc:
        ext.execute("prepare_image", image_info=info)
    assert message in str(exc.value) and exc.value.status_code == 400


def test_md5_allowed_when_lookup_enables_it(server: ImageServer, disk: str,
                                            images: dict[str, Path]) -> None:
    e = standby.StandbyExtension(agent=FakeAgent(md5_enabled=True))
    e.device_finder = lambda: disk
    url = server.serve("/gpt.raw", images["gpt"])
    info = {"id": "i", "urls": [url], "checksum": file_digest(images["gpt"], "md5"),
            "disk_format": "raw"}
    assert e.execute("prepare_image", image_info=info).join().command_error is None
    assert device_digest(disk, 16 * MIB) == file_digest(images["gpt"])


def test_permitted_formats_from_lookup(server: ImageServer, disk: str,
                                       images: dict[str, Path], tmp_path: Path) -> None:
    e = standby.StandbyExtension(agent=FakeAgent(permitted_image_formats=["raw"]))
    e.device_finder = lambda: disk
    e.cache_dir = str(tmp_path)
    url = server.serve("/dos.qcow2", images["qcow2"])
    info = image_info(url, file_digest(images["qcow2"]), disk_format="qcow2")
    error = e.execute("prepare_image", image_info=info).join().serialize()["command_error"]
    assert error["type"] == "InvalidImage" and "permitted_image_formats" in error["details"]


def test_deploy_step_write_image_runs_prepare_image(server: ImageServer, disk: str,
                                                    images: dict[str, Path]) -> None:
    from ironic_python_agent.hardware import GenericHardwareManager

    saved = base._EXTENSIONS  # the registry is process-global: leave it as found
    try:
        exts = base.init_ext_manager(agent=None)
        st = exts["standby"]
        assert isinstance(st, standby.StandbyExtension)
        st.device_finder = lambda: disk
        url = server.serve("/gpt.raw", images["gpt"])
        result = GenericHardwareManager().write_image(
            {}, [], image_info=image_info(url, file_digest(images["gpt"])), configdrive=None)
        assert result["result"].startswith("prepare_image: image (7c9e0d5a-img) written")
        assert device_digest(disk, 16 * MIB) == file_digest(images["gpt"])
        with pytest.raises(errors.ImageChecksumError):
            GenericHardwareManager().write_image(
                {}, [], image_info=image_info(url, "e" * 64), configdrive=None)
    finally:
        base._EXTENSIONS = saved


def test_power_commands_use_the_injected_action(ext: standby.StandbyExtension) -> None:
    done: list[str] = []
    ext.power_action = done.append
    assert ext.execute("run_image").join().serialize()["command_status"] == "SUCCEEDED"
    assert ext.execute("power_off").join().serialize()["command_status"] == "SUCCEEDED"
    assert done == ["reboot", "poweroff"]
    assert ext.execute("sync").serialize()["command_status"] == "SUCCEEDED"


def test_power_action_falls_back_to_sysrq(tmp_path: Path) -> None:
    fake = tmp_path / "reboot"
    fake.write_text("#!/bin/sh\necho 'System has not been booted with systemd' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    trigger = tmp_path / "sysrq-trigger"
    standby.power_action("reboot", argv=[str(fake)], sysrq=str(trigger))
    assert trigger.read_text() == "b"
    with pytest.raises(errors.SystemRebootError):
        standby.power_action("poweroff", argv=[str(fake)], sysrq=str(tmp_path / "no/dir"))


# --- image.install_bootloader -----------------------------------------------------

FAKE_EFIBOOTMGR = """#!{python}
import json, os, sys
state = os.environ["FAKE_EFI_STATE"]
entries = json.load(open(state)) if os.path.exists(state) else []
args = sys.argv[1:]
if "-c" in args:
    label = args[args.index("-L") + 1]; path = args[args.index("-l") + 1]
    part = args[args.index("-p") + 1]
    entries.append({{"num": "%04X" % len(entries), "label": label, "path": path, "part": part}})
    json.dump(entries, open(state, "w"))
print("BootCurrent: 0000")
for e in entries:
    print("Boot%s* %s\\tHD(%s,GPT,x,0x800,0x4000)/File(%s)" % (
        e["num"], e["label"], e["part"], e["path"]))
"""


@pytest.fixture
def esp_disk(tmp_path: Path) -> Iterator[str]:
    """A GPT disk whose first partition is a FAT ESP with shim and a fallback loader."""
    esp = tmp_path / "esp.fat"
    with open(esp, "wb") as f:
        f.truncate(16 * MIB)
    subprocess.run(["mkfs.vfat", "-n", "EFI", str(esp)], check=True, capture_output=True)
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    subprocess.run(["mmd", "-i", str(esp), "::/EFI", "::/EFI/BOOT", "::/EFI/debian"],
                   check=True, env=env)
    (tmp_path / "loader.efi").write_bytes(b"MZ")
    (tmp_path / "BOOTX64.CSV").write_bytes(
        "shimx64.efi,debian,,This is the boot entry for debian\n".encode("utf-16"))
    for src, dst in (("loader.efi", "/EFI/BOOT/BOOTX64.EFI"),
                     ("loader.efi", "/EFI/debian/shimx64.efi"),
                     ("BOOTX64.CSV", "/EFI/debian/BOOTX64.CSV")):
        subprocess.run(["mcopy", "-i", str(esp), str(tmp_path / src), f"::{dst}"],
                       check=True, env=env)
    with loop_device(tmp_path / "esp-disk", 64 * MIB) as dev:
        subprocess.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", dev], check=True,
                       text=True, capture_output=True,
                       input=("label: gpt\n"
                              "size=16MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n,\n"))
        with open(dev, "r+b") as f:
            f.seek(MIB)
            f.write(esp.read_bytes())
            f.flush()
            os.fsync(f.fileno())
        yield dev


@pytest.fixture
def image(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> image_ext.ImageExtension:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "efibootmgr"
    fake.write_text(FAKE_EFIBOOTMGR.format(python=sys.executable))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_EFI_STATE", str(tmp_path / "nvram.json"))
    return image_ext.ImageExtension(agent=FakeAgent())


def nvram(tmp_path: Path) -> list[dict[str, str]]:
    state = tmp_path / "nvram.json"
    return json.loads(state.read_text()) if state.exists() else []


def test_install_bootloader_whole_disk_bios_is_a_noop(image: image_ext.ImageExtension,
                                                      tmp_path: Path) -> None:
    image.firmware_is_uefi = lambda: False
    for mode in ("bios", "uefi"):
        result = image.execute("install_bootloader", root_uuid="0x1a2b3c4d",
                               efi_system_part_uuid=None, prep_boot_part_uuid=None,
                               target_boot_mode=mode).join()
        assert result.serialize()["command_status"] == "SUCCEEDED"
    assert nvram(tmp_path) == []


def test_install_bootloader_partition_root_refused(image: image_ext.ImageExtension) -> None:
    image.firmware_is_uefi = lambda: False
    wire = image.execute("install_bootloader",
                         root_uuid="2f0b5a2e-8d0c-4e0a-9d8e-1c2b3a4d5e6f").join().serialize()
    assert wire["command_status"] == "FAILED" and wire["command_error"]["type"] == "InvalidImage"
    ok = image.execute("install_bootloader", root_uuid="2f0b5a2e-8d0c-4e0a-9d8e-1c2b3a4d5e6f",
                       ignore_bootloader_failure=True).join()
    assert ok.serialize()["command_status"] == "SUCCEEDED"


def test_install_bootloader_uefi_adds_entries_once(image: image_ext.ImageExtension,
                                                   esp_disk: str, tmp_path: Path) -> None:
    image.firmware_is_uefi = lambda: True
    image.device_finder = lambda: esp_disk
    for _ in range(2):
        result = image.execute("install_bootloader", root_uuid="0x00000000",
                               target_boot_mode="uefi").join()
        assert result.serialize()["command_status"] == "SUCCEEDED", result.serialize()
    assert [(e["label"], e["path"], e["part"]) for e in nvram(tmp_path)] == [
        ("debian", "\\EFI\\debian\\shimx64.efi", "1")]


def test_install_bootloader_uefi_without_esp_is_fine_for_whole_disk(
        image: image_ext.ImageExtension, disk: str, tmp_path: Path,
        images: dict[str, Path]) -> None:
    with open(disk, "r+b") as f:
        f.write(images["dos"].read_bytes()[:MIB])  # an MBR with an "ef" partition
        f.flush()
        os.fsync(f.fileno())
    subprocess.run(["sfdisk", "--delete", disk, "1"], check=True, capture_output=True)
    image.firmware_is_uefi = lambda: True
    image.device_finder = lambda: disk
    result = image.execute("install_bootloader", root_uuid="0x1a2b3c4d").join()
    assert result.serialize()["command_status"] == "SUCCEEDED", result.serialize()
    assert nvram(tmp_path) == []

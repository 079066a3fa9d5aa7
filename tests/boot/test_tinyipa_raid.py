# SPDX-License-Identifier: Apache-2.0
"""Software RAID built by the agent in tinyipa on four virtio disks.

The build host's kernel has no md driver, so the arrays are made where a
normal kernel runs: tinyipa under QEMU (one boot for every flow). The agent
gets the clean and deploy steps as Ironic sends them; the host then reads the
md superblocks straight from the disk image files:

* ``create_configuration`` (UEFI): a 1 GiB RAID-1 root and a 2 GiB RAID-0 over
  the four disks, exactly those sizes in the inventory, each member behind a
  550 MiB ESP, metadata 1.2 superblocks naming the volumes; a second run refuses
  the arrays it finds; ``delete_configuration`` with ``skip_block_devices``
  naming ``data`` keeps both (``root`` shares its disks: only wiped);
  ``erase_devices_metadata`` takes them apart and leaves no superblock;
* ``apply_configuration`` (BIOS, GPT label): RAID-1 plus a RAID-5 behind BIOS
  boot partitions; ``write_image`` then picks the RAID-1 the node's saved
  ``raid_config`` marks ``is_root_volume`` (as after a reboot) and the image is
  on every member;
* ``delete_configuration`` then leaves every disk without a superblock or
  partition table.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.boot.agent_checks import AgentAPI, lookup_and_heartbeat
from tests.boot.qemu import Guest, GuestSpec
from tests.fake_ironic import FakeIronic
from tests.imageserver import ImageServer
from tests.raidtools import gpt_entries, superblock

GiB, MiB = 1 << 30, 1 << 20
DISK_SIZE = 6 * GiB
VERSION = {"generic_hardware_manager": "1.2"}


def step(api: AgentAPI, kind: str, node: dict[str, Any], name: str,
         args: dict[str, Any] | None = None) -> dict[str, Any]:
    result = api.command(f"{kind}.execute_{kind}_step", {
        "step": {"step": name, "interface": "raid" if "configuration" in name else "deploy",
                 "priority": 0, "args": args or {}},
        "node": node, "ports": [], f"{kind}_version": VERSION})
    return result


def md_disks(api: AgentAPI) -> dict[str, int]:
    inventory = api.command("poll.get_hardware_info")["command_result"]
    return {d["name"]: d["size"] for d in inventory["disks"] if d["name"].startswith("/dev/md")}


@pytest.mark.boot
def test_software_raid_on_four_virtio_disks(tinyipa_image: tuple[Path, Path],
                                            tmp_path: Path) -> None:
    kernel, initramfs = tinyipa_image
    extra = [tmp_path / f"disk{n}.img" for n in (1, 2, 3)]
    args: list[str] = []
    for n, path in enumerate(extra, start=1):
        with open(path, "wb") as f:
            f.truncate(DISK_SIZE)
        args += ["-drive", f"file={path},if=none,id=raid{n},format=raw,cache=unsafe",
                 "-device", f"virtio-blk-pci,drive=raid{n},serial=raid-disk{n}"]
    image = tmp_path / "image.raw"
    with open(image, "wb") as f:
        f.truncate(8 * MiB)
    subprocess.run(["sfdisk", "-q", str(image)], input="label: gpt\nsize=4MiB\n", text=True,
                   check=True)
    with open(image, "r+b") as f:
        f.seek(2 * MiB)
        f.write(os.urandom(MiB))
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    with FakeIronic() as ironic, ImageServer() as images:
        images.serve("/image.raw", image)
        spec = GuestSpec(
            name="tinyipa-raid", kernel=kernel, initrd=initramfs, firmware="uefi",
            memory_mib=512, disk_size=DISK_SIZE, extra_args=tuple(args),
            append=(f"console=ttyS0 panic=-1 ipa-api-url=http://10.0.2.2:{ironic.port} "
                    "ipa-insecure=1"))
        with Guest(spec) as guest:
            disks = [guest.disk_path, *extra]
            beat = lookup_and_heartbeat(guest, ironic, lookup_timeout=300, heartbeat_timeout=180)
            api = AgentAPI.from_heartbeat(guest, beat, ironic.agent_token, timeout=600)

            # -- create_configuration, UEFI ---------------------------------------------
            target = {"logical_disks": [
                {"controller": "software", "raid_level": "1", "size_gb": 1,
                 "volume_name": "root", "is_root_volume": True},
                {"controller": "software", "raid_level": "0", "size_gb": 2,
                 "volume_name": "data"}]}
            node = {"uuid": "raid-node", "target_raid_config": target, "properties": {},
                    "instance_info": {}, "driver_internal_info": {}}
            result = step(api, "clean", node, "create_configuration")
            assert result["command_status"] == "SUCCEEDED", result
            assert result["command_result"]["clean_result"] == target
            assert md_disks(api) == {"/dev/md0": 1 * GiB, "/dev/md1": 2 * GiB}
            for n, disk in enumerate(disks):
                parts = gpt_entries(disk)
                assert [p[2] for p in parts] == [f"uefi-holder-{n}", "raid-root", "raid-data"]
                assert parts[0][:2] == (1 * MiB, 551 * MiB)
                root, data = superblock(disk, parts[1][0]), superblock(disk, parts[2][0])
                assert root is not None and data is not None, disk
                # metadata 1.2: version 1, superblock 8 sectors in, data 2 MiB in
                assert (root["major"], root["super_offset"], root["data_offset"]) == (1, 8, 4096)
                assert (root["name"], root["level"], root["raid_disks"]) == ("any:root", 1, 4)
                assert (data["name"], data["level"], data["raid_disks"]) == ("any:data", 0, 4)

            # -- the arrays are in the way of another create --------------------------------
            again = step(api, "clean", node, "create_configuration")
            assert again["command_status"] == "FAILED", again
            assert ("Existing Software RAID device(s) /dev/md0 (root), /dev/md1 (data)"
                    in again["command_error"]["details"]), again

            # -- skip_block_devices keeps "data"; "root" on the same disks is only wiped --------
            keep = {**node, "properties": {"skip_block_devices": [{"volume_name": "data"}]}}
            kept = step(api, "clean", keep, "delete_configuration")
            assert kept["command_status"] == "SUCCEEDED", kept
            assert md_disks(api) == {"/dev/md0": 1 * GiB, "/dev/md1": 2 * GiB}
            for disk in disks:
                parts = gpt_entries(disk)
                assert len(parts) == 3, disk
                assert all(superblock(disk, p[0]) for p in parts[1:]), disk

            # -- erase_devices_metadata takes the holders apart ------------------------------
            layout = {disk: gpt_entries(disk) for disk in disks}
            erased = step(api, "clean", node, "erase_devices_metadata")
            assert erased["command_status"] == "SUCCEEDED", erased
            assert md_disks(api) == {}
            for disk, parts in layout.items():
                assert gpt_entries(disk) == [], disk
                assert [superblock(disk, p[0]) for p in parts[1:]] == [None, None], disk

            # -- apply_configuration (deploy step), BIOS on GPT, RAID-5 ------------------------
            bios = {**node, "properties": {"capabilities": "boot_mode:bios,disk_label:gpt"},
                    "target_raid_config": {}}
            config = {"logical_disks": [
                {"controller": "software", "raid_level": "1", "size_gb": 1},
                {"controller": "software", "raid_level": "5", "size_gb": 3,
                 "volume_name": "data5"}]}
            applied = step(api, "deploy", bios, "apply_configuration", {"raid_config": config})
            assert applied["command_status"] == "SUCCEEDED", applied
            assert md_disks(api) == {"/dev/md0": 1 * GiB, "/dev/md1": 3 * GiB}
            for n, disk in enumerate(disks):
                parts = gpt_entries(disk)
                assert [p[2] for p in parts] == [f"bios-boot-part-{n}", "raid-md0", "raid-data5"]
                assert parts[1][0] == 8 * MiB
                assert superblock(disk, parts[2][0])["level"] == 5  # type: ignore[index]
            layout = {disk: gpt_entries(disk) for disk in disks}

            # -- write_image goes to the root volume, so onto every RAID-1 member --------------
            info = {"id": "raid-image", "urls": [f"http://10.0.2.2:{images.port}/image.raw"],
                    "disk_format": "raw", "container_format": "bare",
                    "stream_raw_images": True, "os_hash_algo": "sha256",
                    "os_hash_value": digest, "node_uuid": "raid-node"}
            # As after a reboot: nothing marked in this process, the root volume comes
            # from the raid_config Ironic saved (the unnamed first volume is "md0").
            saved = {"logical_disks": [{**config["logical_disks"][0], "is_root_volume": True},
                                       config["logical_disks"][1]]}
            written = step(api, "deploy", {**bios, "raid_config": saved}, "write_image",
                           {"image_info": info})
            assert written["command_status"] == "SUCCEEDED", written
            assert "written to device /dev/md0" in str(written["command_result"]), written
            expected = image.read_bytes()
            for disk, parts in layout.items():
                with open(disk, "rb") as f:  # partition 2, after the 2 MiB data offset
                    f.seek(parts[1][0] + 2 * MiB)
                    assert f.read(len(expected)) == expected, disk

            # -- delete_configuration leaves clean disks ----------------------------------------
            deleted = step(api, "clean", bios, "delete_configuration")
            assert deleted["command_status"] == "SUCCEEDED", deleted
            assert md_disks(api) == {}
            for disk, parts in layout.items():
                assert gpt_entries(disk) == [], disk
                assert [superblock(disk, p[0]) for p in parts[1:]] == [None, None], disk
                with open(disk, "rb") as f:
                    assert f.read(1024).strip(b"\0") == b"", disk  # no MBR or GPT header left

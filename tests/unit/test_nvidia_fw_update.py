# SPDX-License-Identifier: Apache-2.0
"""NVIDIA NIC firmware: the parsers on captured tool output, and argument validation."""

from __future__ import annotations

import pytest

from ironic_python_agent.hardware_managers.nvidia import nvidia_fw_update as fw
from tests.hwfixtures import sample


def test_lspci_keeps_network_functions_of_vendor_15b3() -> None:
    nics = fw.parse_lspci(sample("mstflint", "lspci-Dn-d-15b3.txt"))
    assert [(n.pci, n.device_id) for n in nics] == [
        ("0000:03:00.0", "1017"), ("0000:03:00.1", "1017"),
        ("0000:06:00.0", "101b"), ("0000:06:00.1", "101b")]  # not the 0604 bridge
    assert nics[2].card == nics[3].card == "0000:06:00."
    assert nics[2].is_first_function and not nics[3].is_first_function
    assert fw.parse_lspci("") == []
    assert fw.parse_lspci("0000:00:1f.6 0200: 8086:15bc (rev 10)\n") == []


def test_mstflint_device_query() -> None:
    assert fw.parse_mstflint_query(sample("mstflint", "query-connectx6.txt")) == {
        "fw_ver": "20.34.1002", "psid": "MT_0000000228"}
    assert fw.parse_mstflint_query(sample("mstflint", "query-connectx6-pending.txt")) == {
        "fw_ver": "20.35.1012", "running_fw_ver": "20.34.1002", "psid": "MT_0000000228"}
    assert fw.parse_mstflint_query("") == {}


def test_mstflint_image_query() -> None:
    assert fw.parse_mstflint_query(sample("mstflint", "query-image-connectx6.txt")) == {
        "fw_ver": "20.35.1012", "psid": "MT_0000000228"}


def test_mstconfig_query_and_info() -> None:
    current = fw.parse_mstconfig_query(sample("mstflint", "mstconfig-q-connectx6.txt"))
    assert current == {"NUM_OF_VFS": "0", "SRIOV_EN": "False(0)", "PF_TOTAL_SF": "0",
                       "LINK_TYPE_P1": "IB(1)", "ESWITCH_HAIRPIN_TOT_BUFFER_SIZE": "Array[0..7]"}
    assert fw.parse_mstconfig_query("") == {}
    known = fw.parse_mstconfig_info(sample("mstflint", "mstconfig-i-connectx6.txt"))
    assert known == {"NUM_OF_VFS", "SRIOV_EN", "PF_TOTAL_SF", "LINK_TYPE_P1",
                     "ESWITCH_HAIRPIN_TOT_BUFFER_SIZE"}
    assert fw.known_to_tool("ESWITCH_HAIRPIN_TOT_BUFFER_SIZE[3]", known)
    assert not fw.known_to_tool("UNSUPPORTED_PARAM", known)
    assert not fw.known_to_tool("SRIOV", known)  # a whole name, not a piece of one


def test_array_settings_must_be_inside_the_array() -> None:
    current = fw.parse_mstconfig_query(sample("mstflint", "mstconfig-q-connectx6.txt"))
    name = "ESWITCH_HAIRPIN_TOT_BUFFER_SIZE"
    assert fw.offered_by_firmware("SRIOV_EN", current)
    assert fw.offered_by_firmware(f"{name}[0]", current)
    assert fw.offered_by_firmware(f"{name}[7]", current)  # Array[0..7] includes 7
    assert fw.offered_by_firmware(f"{name}[0..3]", current)
    assert not fw.offered_by_firmware(f"{name}[8]", current)
    assert not fw.offered_by_firmware(f"{name}[0..8]", current)
    assert not fw.offered_by_firmware(f"{name}[3..3]", current)
    assert not fw.offered_by_firmware("SRIOV_EN[0]", current)  # not an array
    assert not fw.offered_by_firmware("UNSUPPORTED_PARAM", current)


def test_only_changed_settings_are_set() -> None:
    current = fw.parse_mstconfig_query(sample("mstflint", "mstconfig-q-connectx6.txt"))
    assert fw.settings_to_set({"NUM_OF_VFS": 0, "SRIOV_EN": False, "LINK_TYPE_P1": "IB"},
                              current) == []
    assert fw.settings_to_set({"NUM_OF_VFS": 127, "SRIOV_EN": True, "LINK_TYPE_P1": "ETH",
                               "ESWITCH_HAIRPIN_TOT_BUFFER_SIZE[0]": 16}, current) == [
        "NUM_OF_VFS=127", "SRIOV_EN=True", "LINK_TYPE_P1=ETH",
        "ESWITCH_HAIRPIN_TOT_BUFFER_SIZE[0]=16"]


IMAGE = {"url": "http://127.0.0.1/fw.bin", "checksum": "ab", "checksumType": "sha256",
         "componentFlavor": "MT_0000000228", "version": "20.35.1012"}


@pytest.mark.parametrize("images, complaint", [
    ({"url": "x"}, "must be a list"),
    ([{**IMAGE, "version": ""}], "url, checksum, checksumType, componentFlavor, version"),
    (["fw.bin"], "Invalid parameters for image 'fw.bin'"),
    ([{**IMAGE, "checksumType": "crc32"}], "Checksum algorithm crc32 is not supported"),
    ([{**IMAGE, "checksumType": "md5"}], "Checksum algorithm md5 is not supported"),
])
def test_bad_images_are_named(images, complaint) -> None:
    with pytest.raises(fw.InvalidFirmwareImageConfig, match=complaint):
        fw.validate_images(images, md5_enabled=False)


def test_md5_only_when_enabled_and_one_image_per_psid() -> None:
    assert fw.validate_images([{**IMAGE, "checksumType": "md5"}], md5_enabled=True)
    chosen = fw.images_by_psid([IMAGE, {**IMAGE, "componentFlavor": "MT_0000000999"}],
                               {"MT_0000000228", "MT_0000000652"})
    assert chosen == {"MT_0000000228": IMAGE}
    with pytest.raises(fw.DuplicateComponentFlavor, match="MT_0000000228"):
        fw.images_by_psid([IMAGE, IMAGE], {"MT_0000000228"})


def test_settings_by_device_id() -> None:
    setting = {"deviceID": "101B", "globalConfig": {"SRIOV_EN": True}}
    assert fw.settings_by_device_id([setting, {"deviceID": "1021"}], {"101b", "1017"}) == {
        "101b": setting}
    with pytest.raises(fw.DuplicateDeviceID, match="101b"):
        fw.settings_by_device_id([{"deviceID": "101b"}, {"deviceID": "101b"}], {"101b"})
    with pytest.raises(fw.InvalidFirmwareSettingsConfig, match="no deviceID"):
        fw.settings_by_device_id([{"globalConfig": {}}], {"101b"})
    with pytest.raises(fw.InvalidFirmwareSettingsConfig, match="must be a list"):
        fw.settings_by_device_id({"deviceID": "101b"}, {"101b"})


def test_errors_serialise_with_upstreams_names() -> None:
    err = fw.MismatchComponentFlavor("The provided psid A does not match the image psid B")
    assert err.serialize()["type"] == "MismatchComponentFlavor"
    assert "does not match" in str(err)

# SPDX-License-Identifier: Apache-2.0
"""Manager ordering and dispatch semantics, and root device hints."""

from __future__ import annotations

import pytest

from ironic_python_agent import config, errors, hardware
from ironic_python_agent.hardware import managers, root_hints
from ironic_python_agent.hardware.devices import BlockDevice
from tests.hwfixtures import hardware_conf, reset_hardware, use_managers

GiB = 1024 ** 3


@pytest.fixture(autouse=True)
def _clean_hardware():
    reset_hardware()
    yield
    reset_hardware()


class Mainline(hardware.HardwareManager):
    def evaluate_hardware_support(self):
        return hardware.HardwareSupport.MAINLINE

    def get_cpus(self):
        raise errors.IncompatibleHardwareMethodError()

    def get_memory(self):
        return None

    def get_boot_info(self):
        raise RuntimeError("firmware exploded")

    def get_clean_steps(self, node, ports):
        raise errors.IncompatibleHardwareMethodError()


class Plain(hardware.HardwareManager):
    def evaluate_hardware_support(self):
        return hardware.HardwareSupport.GENERIC

    def get_cpus(self):
        return "plain cpus"

    def get_memory(self):
        return "plain memory"

    def get_boot_info(self):
        return "plain boot"


@pytest.fixture
def two_managers(monkeypatch):
    use_managers(monkeypatch, Mainline(), Plain())


def test_support_levels_and_version_defaults():
    assert [int(s) for s in hardware.HardwareSupport] == [0, 1, 2, 3]
    assert Plain().get_version() == {"name": "Plain", "version": "1.0"}
    assert hardware.GenericHardwareManager().get_version() == {
        "name": "generic_hardware_manager", "version": "1.2"}


def test_dispatch_falls_through_incompatible(two_managers):
    assert hardware.dispatch_to_managers("get_cpus") == "plain cpus"


def test_dispatch_stops_at_a_returned_none(two_managers):
    assert hardware.dispatch_to_managers("get_memory") is None


def test_dispatch_raises_other_errors(two_managers):
    with pytest.raises(RuntimeError, match="firmware exploded"):
        hardware.dispatch_to_managers("get_boot_info")


def test_dispatch_nothing_handled(two_managers):
    with pytest.raises(errors.HardwareManagerMethodNotFound) as info:
        hardware.dispatch_to_managers("no_such_method")
    assert info.value.details == "Could not find method: no_such_method"
    with pytest.raises(errors.HardwareManagerMethodNotFound):
        hardware.dispatch_to_all_managers("get_bmc_address")  # every one abstains


def test_dispatch_to_all(two_managers):
    assert hardware.dispatch_to_all_managers("get_memory") == {
        "Mainline": None, "Plain": "plain memory"}
    assert hardware.dispatch_to_all_managers("get_clean_steps", {}, []) == {"Plain": []}


def test_versions(two_managers):
    assert hardware.get_current_versions() == {"Mainline": "1.0", "Plain": "1.0"}
    hardware.check_versions(None)
    hardware.check_versions({"Mainline": "1.0", "Plain": "1.0"})
    with pytest.raises(errors.VersionMismatch):
        hardware.check_versions({"Plain": "1.0"})


def test_entry_point_loading_drops_none_and_sorts():
    hardware_conf()
    loaded = hardware.get_managers()
    assert isinstance(loaded[-1], hardware.GenericHardwareManager)
    assert all(m.evaluate_hardware_support() > 0 for m in loaded)
    levels = [m.evaluate_hardware_support() for m in loaded]
    assert levels == sorted(levels, reverse=True)


# --- root device hints ----------------------------------------------------------------------

def _disk(name, size_gib, **kw):
    return BlockDevice(name=f"/dev/{name}", model=kw.pop("model", None), size=size_gib * GiB,
                       rotational=kw.pop("rotational", False), **kw)


DISKS = [
    _disk("sda", 500, model="Samsung SSD 860", serial="S3Z1", wwn="0x5002538e40a1b2c3",
          vendor="ATA", hctl="1:0:0:0", by_path="/dev/disk/by-path/pci-0000:00:17.0-ata-2",
          serials=["S3Z1", "Samsung_SSD_860_S3Z1"], wwns=["0x5002538e40a1b2c3"],
          wwn_with_extension="0x5002538e40a1b2c3", tran="sata"),
    _disk("sdb", 2000, model="ST2000NM", rotational=True, serial="ZC1", vendor="SEAGATE",
          hctl="2:0:0:0", tran="sas"),
    _disk("nvme0n1", 100, model="INTEL SSDPE2KX010T8", serial="PHLJ1", tran="nvme"),
    _disk("sdc", 2, model="Virtual Media"),
]


@pytest.mark.parametrize("hints, expected", [
    ({"name": "/dev/sdb"}, "/dev/sdb"),
    ({"name": "sdb"}, "/dev/sdb"),
    ({"size": 100}, "/dev/nvme0n1"),
    ({"size": ">= 1000"}, "/dev/sdb"),
    ({"size": "<= 150"}, "/dev/nvme0n1"),
    ({"size": "<= 150", "rotational": False, "tran": "nvme"}, "/dev/nvme0n1"),
    ({"model": "samsung ssd 860"}, "/dev/sda"),
    ({"model": "s== Samsung SSD 860"}, "/dev/sda"),
    ({"model": "<in> SSDPE2"}, "/dev/nvme0n1"),
    ({"vendor": "<or> HGST <or> seagate"}, "/dev/sdb"),
    ({"serial": "Samsung_SSD_860_S3Z1"}, "/dev/sda"),
    ({"wwn": "0x5002538E40A1B2C3"}, "/dev/sda"),
    ({"wwn_with_extension": "0x5002538e40a1b2c3"}, "/dev/sda"),
    ({"rotational": True}, "/dev/sdb"),
    ({"rotational": "false", "size": "> 200"}, "/dev/sda"),
    ({"hctl": "2:0:0:0"}, "/dev/sdb"),
    ({"by_path": "pci-0000:00:17.0-ata-2"}, "/dev/sda"),
    ({"model": "s!= Samsung SSD 860", "rotational": False, "size": "> 50"}, "/dev/nvme0n1"),
])
def test_hints_choose(hints, expected):
    assert root_hints.choose_root_device(DISKS, hints).name == expected


def test_no_hints_smallest_over_4gib():
    assert root_hints.choose_root_device(DISKS, None).name == "/dev/nvme0n1"
    with pytest.raises(errors.DeviceNotFound, match="smaller than 4 GiB"):
        root_hints.choose_root_device([DISKS[3]], None)


def test_no_match_is_a_clear_device_not_found():
    with pytest.raises(errors.DeviceNotFound) as info:
        root_hints.choose_root_device(DISKS, {"serial": "nope"})
    assert info.value.status_code == 404
    assert "{'serial': 'nope'}" in str(info.value) and "/dev/sda" in str(info.value)


@pytest.mark.parametrize("hints, message", [
    ({"colour": "red"}, "unknown root device hint 'colour'"),
    ({"size": "big"}, "must be an integer"),
    ({"size": "s== 100"}, "cannot be used with root device hint 'size'"),
    ({"model": ">= 3"}, "cannot be used with root device hint 'model'"),
    ({"rotational": "maybe"}, "must be a boolean"),
])
def test_bad_hints(hints, message):
    with pytest.raises(errors.DeviceNotFound, match=message):
        root_hints.choose_root_device(DISKS, hints)


def test_skip_list_removes_matching_devices():
    kept = root_hints.remove_skipped(DISKS, [{"name": "/dev/sda"}, {"size": 2},
                                             {"volume_name": "md-data"}])
    assert [d.name for d in kept] == ["/dev/sdb", "/dev/nvme0n1"]


def test_get_os_install_device_uses_cached_node_hints(tmp_path):
    from tests.hwfixtures import loop_device

    with loop_device(tmp_path, 5 * GiB, "a.img") as a, loop_device(tmp_path, 6 * GiB,
                                                                    "b.img") as b:
        hardware_conf(allow=[a, b])
        assert hardware.get_os_install_device() == a  # smallest ≥ 4 GiB
        hardware.cache_node({"uuid": "n1", "properties": {"root_device": {"size": 6}},
                             "instance_info": {}})
        assert hardware.get_os_install_device() == b
        hardware.cache_node({"uuid": "n1", "properties": {"root_device": {"size": 6}},
                             "instance_info": {"root_device": {"name": a}}})
        assert hardware.get_os_install_device(permit_refresh=True) == a
        hardware.cache_node({"uuid": "n1", "properties": {
            "root_device": {"size": 6}, "skip_block_devices": [{"name": b}]}})
        with pytest.raises(errors.DeviceNotFound):
            hardware.get_os_install_device()


def test_allowlist_from_a_config_file(tmp_path):
    from oslo_config import cfg

    from ironic_python_agent import config
    from ironic_python_agent.hardware import options

    conf_file = tmp_path / "agent.conf"
    conf_file.write_text("[DEFAULT]\nblock_device_allowlist = loop3, /dev/sdb\n")
    conf = config.load({}, [], conf=cfg.ConfigOpts(), config_files=[str(conf_file)],
                       config_dirs=[])
    config.use(conf, {})  # as the agent does
    assert options.allowlist() == {"loop3", "sdb"}


def test_upstream_helpers(two_managers, tmp_path):
    from ironic_python_agent import run, utils

    assert hardware.deduplicate_steps({"Plain": [{"step": "x", "priority": 1}],
                                       "Mainline": [{"step": "x", "priority": 0}]}) == {
        "Plain": [], "Mainline": [{"step": "x", "priority": 0}]}
    out, err = utils.execute("sh", "-c", "echo hi; echo oops >&2")
    assert (out, err) == ("hi\n", "oops\n")
    with pytest.raises(utils.ProcessExecutionError):
        utils.execute("false")
    assert utils.execute("false", check_exit_code=[0, 1]) == ("", "")
    assert utils.try_execute("false") is None
    config.use(config.current(), {"ipa-debug": "1"})
    assert utils.get_agent_params() == {"ipa-debug": "1"}

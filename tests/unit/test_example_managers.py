# SPDX-License-Identifier: Apache-2.0
"""Vendor-style managers (tests/example_managers.py) next to the real generic manager:
dispatch falls through as upstream's, steps merge, commands shell out."""

from __future__ import annotations

import json
import os

import pytest
from oslo_concurrency import processutils

from ironic_python_agent import errors, hardware, utils
from ironic_python_agent.extensions.clean import CleanExtension
from ironic_python_agent.extensions.deploy import DeployExtension
from ironic_python_agent.extensions.service import ServiceExtension
from tests import example_managers as ex
from tests.hwfixtures import hardware_conf, reset_hardware, use_managers

NODE = {"uuid": "11111111-2222-3333-4444-555555555555", "driver_internal_info": {}}


@pytest.fixture(autouse=True)
def _clean_hardware():
    reset_hardware()
    hardware_conf(allow=["nonexistent0"])
    yield
    reset_hardware()


def _run(result):
    result.join(30)
    return json.loads(json.dumps(result.serialize()))


def test_inventory_falls_through_a_manager_without_inventory_methods(monkeypatch):
    use_managers(monkeypatch, ex.DecliningManager(), hardware.GenericHardwareManager())
    info = hardware.dispatch_to_managers("list_hardware_info")
    assert info["cpu"]["count"] == os.cpu_count()
    assert info["memory"]["total"] > 0
    assert info["boot"]["current_boot_mode"] in ("bios", "uefi")
    assert hardware.list_hardware_info() is hardware.list_hardware_info()  # cached


def test_declining_manager_passes_every_call_on(monkeypatch):
    use_managers(monkeypatch, ex.DecliningManager(), hardware.GenericHardwareManager())
    with pytest.raises(errors.DeviceNotFound):  # generic's answer: no disk is allowed
        hardware.dispatch_to_managers("get_os_install_device")
    assert hardware.dispatch_to_managers("erase_devices", NODE, []) == {}
    assert isinstance(hardware.dispatch_to_managers("get_cpus"), hardware.CPU)
    with pytest.raises(errors.HardwareManagerMethodNotFound):
        hardware.dispatch_to_managers("no_such_method")


def test_base_composites_raise_where_upstream_raises():
    base = ex.DecliningManager()
    for call in (base.list_hardware_info, base.get_cpus, base.list_network_interfaces,
                 base.collect_system_logs, base.full_sync):
        with pytest.raises(errors.IncompatibleHardwareMethodError):
            call() if call not in (base.collect_system_logs,) else call({}, [])
    with pytest.raises(errors.IncompatibleHardwareMethodError):
        base.erase_devices(NODE, [])
    assert base.get_clean_steps(NODE, []) == [] == base.get_service_steps(NODE, [])
    assert base.get_version() == {"name": "DecliningManager", "version": "1.0"}


def test_none_manager_is_never_active(monkeypatch):
    from importlib import metadata

    from ironic_python_agent.hardware import managers

    class EP:
        def __init__(self, name, cls):
            self.name, self.value, self._cls = name, cls.__name__, cls

        def load(self):
            return self._cls

    monkeypatch.setattr(managers, "entry_points", lambda group: [
        EP("absent", ex.AbsentManager), EP("generic", hardware.GenericHardwareManager)])
    assert [type(m).__name__ for m in hardware.get_managers()] == ["GenericHardwareManager"]
    assert isinstance(hardware.dispatch_to_managers("get_cpus"), hardware.CPU)
    assert hardware.get_current_versions() == {"generic_hardware_manager": "1.2"}
    assert metadata  # the real entry points are used by the agent


def test_subclass_overrides_one_step_and_calls_super(monkeypatch, tmp_path):
    tuned = ex.TunedGenericManager()
    use_managers(monkeypatch, tuned, hardware.GenericHardwareManager())
    clean = CleanExtension()
    listed = _run(clean.execute("get_clean_steps", node=NODE, ports=[]))["command_result"]
    steps = listed["clean_steps"]
    # Same step names, the better-supported subclass wins them all.
    assert {s["step"] for s in steps["TunedGenericManager"]} >= {"erase_pstore",
                                                                   "erase_devices_metadata"}
    assert steps["GenericHardwareManager"] == []
    versions = listed["hardware_manager_version"]
    assert versions == {"TunedGenericManager": "2.0", "generic_hardware_manager": "1.2"}
    monkeypatch.setattr("builtins.open", _no_pstore(open))
    done = _run(clean.execute("execute_clean_step", node=NODE, ports=[],
                              step={"step": "erase_pstore", "priority": 0,
                                    "interface": "deploy"}, clean_version=versions))
    assert done["command_status"] == "SUCCEEDED", done
    assert done["command_result"]["clean_result"] == {"tuned": True, "removed": []}
    assert tuned.pstore_runs == 1


def _no_pstore(real_open):
    def fake(path, *a, **k):
        if path == "/proc/mounts":
            import io

            return io.StringIO("proc /proc proc rw 0 0\n")
        return real_open(path, *a, **k)
    return fake


@pytest.mark.parametrize("kind, ext", [("clean", CleanExtension), ("deploy", DeployExtension),
                                       ("service", ServiceExtension)])
def test_steps_with_argsinfo_in_every_step_type(monkeypatch, kind, ext):
    use_managers(monkeypatch, ex.StepsManager(), hardware.GenericHardwareManager())
    e = ext()
    listed = _run(e.execute(f"get_{kind}_steps", node=NODE, ports=[]))["command_result"]
    mine = listed[f"{kind}_steps"]["StepsManager"]
    assert mine[0]["argsinfo"]["profile"]["required"] is True
    step = {"step": "set_fan_profile", "args": {"profile": "quiet"}, "priority": 0,
            "interface": "deploy"}
    done = _run(e.execute(f"execute_{kind}_step", node=NODE, ports=[], step=step))
    assert done["command_result"][f"{kind}_result"] == {"profile": "quiet",
                                                        "node": NODE["uuid"]}
    bad = _run(e.execute(f"execute_{kind}_step", node=NODE, ports=[],
                         step={**step, "args": {"profile": "loud"}}))
    assert bad["command_status"] == "FAILED"
    assert "unknown fan profile loud" in json.dumps(bad["command_error"])


def test_manager_shelling_out_catches_process_execution_error(monkeypatch):
    use_managers(monkeypatch, ex.ShellManager(), hardware.GenericHardwareManager())
    ok = hardware.dispatch_to_managers("vendor_tool", NODE, [], script="echo fw 1.2")
    assert ok == {"failed": False, "stdout": "fw 1.2\n", "stderr": ""}
    failed = hardware.dispatch_to_managers("vendor_tool", NODE, [],
                                           script="echo half; echo broken >&2; exit 7")
    assert failed == {"failed": True, "exit_code": 7, "stdout": "half\n",
                      "stderr": "broken\n", "cmd": "sh -c echo half; echo broken >&2; exit 7"}


def test_utils_execute_as_upstream():
    with pytest.raises(processutils.ProcessExecutionError) as caught:
        utils.execute("sh", "-c", "exit 3")
    assert caught.value.exit_code == 3
    assert utils.execute("sh", "-c", "exit 3", check_exit_code=[0, 3]) == ("", "")
    assert utils.execute("sh", "-c", "exit 3", check_exit_code=False) == ("", "")
    with pytest.raises(OSError):
        utils.execute("/nonexistent/vendor-tool")
    assert utils.try_execute("/nonexistent/vendor-tool") is None
    assert utils.try_execute("false") is None


def test_import_surface():
    from ironic_python_agent import netutils

    for name in ("is_md_device", "get_component_devices", "get_holder_disks",
                 "safety_check_block_device", "list_all_block_devices", "get_cached_node",
                 "cache_node", "update_cached_node", "get_current_versions",
                 "save_api_client", "HardwareSupport", "HardwareType", "NetworkInterface",
                 "_get_device_info", "dispatch_to_all_managers", "deduplicate_steps"):
        assert callable(getattr(hardware, name)) or isinstance(getattr(hardware, name), type)
    generic = hardware.GenericHardwareManager()
    for name in ("collect_lldp_data", "get_ipv6_addr", "get_bmc_mac", "get_interface_info",
                 "get_ipv4_addr", "get_bios_given_nic_name"):
        assert callable(getattr(generic, name))
    assert hardware.is_md_device("/dev/nonexistent-md") is False
    assert hardware.get_holder_disks("") == [] == hardware.get_component_devices("")
    assert hardware.list_all_block_devices(block_type="part", ignore_raid=True) == []
    assert hardware.HardwareType.MAC_ADDRESS == "mac_address"
    assert netutils.INFINIBAND_ADDR_LEN == 59
    assert hardware.update_cached_node() is None  # no client saved, no node cached
    hardware.safety_check_block_device({}, "/dev/nonexistent0")  # nothing found: no error
    # upstream's container manager reads these
    from oslo_config import cfg as _cfg  # noqa: F401

    from ironic_python_agent import config

    assert config.current().container.runner == "podman"
    assert config.current().container.run_options == ["--rm", "--network=host"]


def test_more_of_upstreams_surface(tmp_path, monkeypatch):
    from ironic_python_agent.hardware import md

    generic = hardware.GenericHardwareManager()
    info = generic.create_cpu_info_dict("Architecture:\tx86_64\nModel name:  Xeon\n\nCPU MHz: 2.0")
    assert info == {"architecture": "x86_64", "model name": "Xeon", "cpu mhz": "2.0"}
    cores = generic.get_cpu_cores()
    assert cores and all(isinstance(c, hardware.CPUCore) for c in cores)
    # Upstream's positional order; a vendor manager building one by hand gets the same.
    core = hardware.CPUCore("Xeon", "2000", "x86_64", "3", ["sse"])
    assert core.serialize() == {"model_name": "Xeon", "frequency": "2000",
                                "architecture": "x86_64", "core_id": "3", "flags": ["sse"]}
    assert hardware.USBInfo("Hub", "Linux", "hub1").serialize() == {
        "product": "Hub", "vendor": "Linux", "handle": "hub1"}
    assert md.parse_examine_scan(
        "ARRAY /dev/md/0  metadata=1.2 UUID=a1:b2 name=any:root\n"
        "ARRAY /dev/md/1 metadata=1.0 UUID=c3:d4 name=\"any:data vol\"\n") == {
        "/dev/md/0": {"metadata": "1.2", "UUID": "a1:b2", "name": "any:root"},
        "/dev/md/1": {"metadata": "1.0", "UUID": "c3:d4", "name": "any:data vol"}}
    monkeypatch.setenv("PATH", str(tmp_path))  # no mdadm, no multipath
    assert hardware.md_get_raid_devices() == {}
    assert hardware.get_multipath_status() is False
    with pytest.raises(errors.CommandExecutionError, match="Could not restart md device"):
        hardware.md_restart("/dev/md0")


GPU_BURN_LIST = """\
ID 0: NVIDIA A100-SXM4-40GB, 40326MB
ID 1: NVIDIA A100-SXM4-40GB, 40326MB
"""


def test_burnin_gpu_runs_gpu_burn_in_its_directory(tmp_path):
    from ironic_python_agent.hardware import burnin

    # gpu-burn needs a GPU: a stand-in replays its listing and records how it was run.
    install = tmp_path / "gpu-burn"
    install.mkdir()
    (install / "gpu_burn").write_text(
        "#!/bin/sh\n[ -f compare.ptx ] || { echo 'no compare.ptx' >&2; exit 2; }\n"
        f"if [ \"$1\" = -l ]; then printf '{GPU_BURN_LIST}'; exit 0; fi\n"
        "echo \"$@\" > ran; echo '100.0%  proc d: 42 - 8000 Gflop/s'\n")
    (install / "gpu_burn").chmod(0o755)
    (install / "compare.ptx").write_text("")
    assert burnin.gpu_count(GPU_BURN_LIST) == 2
    info = {"agent_burnin_gpu_install_dir": str(install), "agent_burnin_gpu_count": 2,
            "agent_burnin_gpu_memory": "50%", "agent_burnin_gpu_timeout": 5}
    generic = hardware.GenericHardwareManager()
    generic.burnin_gpu({"driver_info": info}, [])
    assert (install / "ran").read_text() == "-m 50% 5\n"
    with pytest.raises(errors.CleaningError, match="1 found but 3 expected"):
        (install / "gpu_burn").write_text("#!/bin/sh\necho 'ID 0: GPU'\n")
        burnin.gpu_burn({"driver_info": {**info, "agent_burnin_gpu_count": 3}})
    with pytest.raises(errors.CommandExecutionError, match="gpu-burn failed"):
        burnin.gpu_burn({"driver_info": {**info, "agent_burnin_gpu_install_dir":
                                         str(tmp_path / "missing")}})
    steps = {s["step"] for s in generic.get_clean_steps({}, [])}
    assert "burnin_gpu" in steps and "burnin_gpu" in {
        s["step"] for s in generic.get_service_steps({}, [])}

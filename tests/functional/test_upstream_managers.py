# SPDX-License-Identifier: Apache-2.0
"""Upstream's own hardware managers, unchanged, against our package.

The Mellanox, Intel CNA and container managers of upstream's 13.0.0 sdist
(fetched with pip at test time into .cache/, never copied into this
repository) are imported from a temporary directory as
``ironic_python_agent.hardware_managers.<name>``, so every import they make
(``hardware``, ``errors``, ``utils``, ``netutils``, ``nvidia_fw_update``,
oslo.log/config/concurrency, yaml) resolves to what we ship. They then run on
this machine: their support levels, the Mellanox interface lookup, the CNA
manager next to LLDP collection, and container steps through the clean
extension with a fake podman (tests/fakebin/podman) on PATH.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from oslo_config import cfg

import ironic_python_agent
from ironic_python_agent import config, errors, hardware
from ironic_python_agent.extensions.clean import CleanExtension
from tests.hwfixtures import FAKEBIN, reset_hardware, use_managers

TOP = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("LEAN_IPA_CACHE", TOP / ".cache")) / "upstream-sdist"
RELEASE = "13.0.0"
SDIST = f"ironic_python_agent-{RELEASE}.tar.gz"
MANAGERS = ("mlnx", "cna", "container")
NODE = {"uuid": "0e8c5a5e-3b7e-4a51-9d1c-5f0b6c1d2e3f", "driver_internal_info": {}}


def fetch_sdist() -> Path:
    """Upstream's sdist from PyPI, kept in .cache/ for the next run."""
    sdist = CACHE / SDIST
    if sdist.exists():
        return sdist
    CACHE.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
            f"ironic-python-agent=={RELEASE}", "-d", str(CACHE)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.skip(f"pip download of ironic-python-agent=={RELEASE} timed out")
    if done.returncode != 0 or not sdist.exists():
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"cannot download upstream's sdist ironic-python-agent=={RELEASE}: {tail}")
    return sdist


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModuleType]]:
    """The three manager modules, extracted alone and imported under upstream's names."""
    sdist = fetch_sdist()
    where = tmp_path_factory.mktemp("upstream")
    prefix = f"ironic_python_agent-{RELEASE}/ironic_python_agent/hardware_managers/"
    wanted = {prefix + f"{name}.py": name for name in MANAGERS}
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name in wanted]
        assert len(members) == len(MANAGERS), "the sdist lacks a manager file"
        for member in members:
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            (where / f"{wanted[member.name]}.py").write_bytes(data)
    package = importlib.import_module("ironic_python_agent.hardware_managers")
    modules = {}
    for name in MANAGERS:
        full = f"ironic_python_agent.hardware_managers.{name}"
        spec = importlib.util.spec_from_file_location(full, where / f"{name}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        spec.loader.exec_module(module)
        setattr(package, name, module)
        modules[name] = module
    yield modules
    for name in MANAGERS:
        sys.modules.pop(f"ironic_python_agent.hardware_managers.{name}", None)
        if hasattr(package, name):
            delattr(package, name)


@pytest.fixture
def conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[cfg.ConfigOpts]:
    """Our options on oslo's global CONF, which upstream's managers read, as the agent
    registers them (cmd/agent.py), and handed over to our own code too."""
    reset_hardware()
    cfg.CONF.reset()
    cfg.CONF.clear()
    config.load({}, [], conf=cfg.CONF, config_files=[], config_dirs=[])
    config.use(cfg.CONF)
    cfg.CONF.set_override("block_device_allowlist", ["nonexistent0"])
    cfg.CONF.set_override("disk_wait_attempts", 0)  # no disks to wait for here
    cfg.CONF.set_override("container_steps_file", str(tmp_path / "absent.yaml"),
                          group="container")
    monkeypatch.setenv("FAKE_HW_STATE", str(tmp_path / "state"))
    yield cfg.CONF
    reset_hardware()
    cfg.CONF.reset()
    cfg.CONF.clear()


def test_the_files_import_unchanged_against_our_package(upstream: dict[str, ModuleType]) -> None:
    with tarfile.open(CACHE / SDIST) as tar:
        for name, module in upstream.items():
            member = f"ironic_python_agent-{RELEASE}/ironic_python_agent/hardware_managers/{name}.py"
            original = tar.extractfile(member).read()  # type: ignore[union-attr]
            assert hashlib.sha256(Path(module.__file__).read_bytes()).digest() == \
                hashlib.sha256(original).digest()
    ours = Path(ironic_python_agent.__file__).parent
    mlnx = upstream["mlnx"]
    for used in (mlnx.hardware, mlnx.errors, mlnx.netutils, mlnx.nvidia_fw_update,
                 upstream["cna"].utils, upstream["container"].utils):
        assert Path(used.__file__).is_relative_to(ours), used
    assert issubclass(upstream["container"].ContainerHardwareManager, hardware.HardwareManager)


def _net_vendor(ifname: str) -> str | None:
    try:
        return Path(f"/sys/class/net/{ifname}/device/vendor").read_text().strip()
    except OSError:
        return None


def _net_driver(ifname: str) -> str | None:
    try:
        return os.path.basename(os.readlink(f"/sys/class/net/{ifname}/device/driver/module"))
    except OSError:
        return None


def test_support_levels_on_this_machine(upstream: dict[str, ModuleType], conf: Any,
                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names = os.listdir("/sys/class/net")
    # What upstream answers here, read independently from sysfs.
    mellanox = any(_net_vendor(n) == "0x15b3" for n in names)
    i40e = any(_net_driver(n) == "i40e" for n in names)
    support = hardware.HardwareSupport
    assert upstream["mlnx"].MellanoxDeviceHardwareManager().evaluate_hardware_support() == (
        support.MAINLINE if mellanox else support.NONE)
    assert upstream["cna"].IntelCnaHardwareManager().evaluate_hardware_support() == (
        support.MAINLINE if i40e else support.NONE)
    container = upstream["container"].ContainerHardwareManager()
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # neither podman nor docker
    assert container.evaluate_hardware_support() == support.NONE
    monkeypatch.setenv("PATH", str(FAKEBIN))
    assert container.evaluate_hardware_support() == support.MAINLINE


def test_mellanox_interface_info_falls_through(upstream: dict[str, ModuleType], conf: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    mlnx = upstream["mlnx"].MellanoxDeviceHardwareManager()
    generic = hardware.GenericHardwareManager()
    for name in ("lo", "nosuch0"):  # a 6-byte address; no address at all
        with pytest.raises(errors.IncompatibleHardwareMethodError):
            mlnx.get_interface_info(name)
    use_managers(monkeypatch, mlnx, generic)
    answered = 0
    for name in os.listdir("/sys/class/net"):
        if _net_vendor(name) == "0x15b3":
            continue  # a real Mellanox NIC: not what this part checks
        with pytest.raises(errors.IncompatibleHardwareMethodError):
            mlnx.get_interface_info(name)
        try:
            expected = generic.get_interface_info(name)
        except errors.IncompatibleHardwareMethodError:
            continue
        got = hardware.dispatch_to_managers("get_interface_info", name)
        assert got.mac_address == expected.mac_address == \
            Path(f"/sys/class/net/{name}/address").read_text().strip()
        answered += 1
    assert answered or os.listdir("/sys/class/net") == ["lo"]


def test_mellanox_steps_reach_our_firmware_module(upstream: dict[str, ModuleType], conf: Any,
                                                  tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    mlnx = upstream["mlnx"].MellanoxDeviceHardwareManager()
    steps = {s["step"] for s in mlnx.get_clean_steps(NODE, [])}
    assert steps == {"update_nvidia_nic_firmware_image", "update_nvidia_nic_firmware_settings"}
    monkeypatch.setenv("PATH", str(tmp_path))  # no mstflint here
    nvidia = upstream["mlnx"].nvidia_fw_update
    with pytest.raises(nvidia.FirmwareToolsMissing, match="mstflint"):
        mlnx.update_nvidia_nic_firmware_image(NODE, [], images=[])
    with pytest.raises(nvidia.InvalidFirmwareSettingsConfig, match="must be a list"):
        mlnx.update_nvidia_nic_firmware_settings(NODE, [], settings={"deviceID": "101b"})


def test_cna_manager_leaves_lldp_collection_to_the_generic_one(
        upstream: dict[str, ModuleType], conf: cfg.ConfigOpts,
        monkeypatch: pytest.MonkeyPatch) -> None:
    cna = upstream["cna"].IntelCnaHardwareManager()
    conf.set_override("collect_lldp", True)
    conf.set_override("lldp_timeout", 0.2)
    # No i40e debugfs here: upstream logs that the driver is not loaded, and goes on.
    cna.initialize()
    use_managers(monkeypatch, cna, hardware.GenericHardwareManager())
    assert hardware.dispatch_to_managers("collect_lldp_data", ["lo"]) == {}
    with pytest.raises(errors.IncompatibleHardwareMethodError):
        cna.collect_lldp_data(["lo"])
    assert cna.get_clean_steps(NODE, []) == []


STEPS_YAML = """\
steps:
  - name: write_marker
    image: docker://registry.example/tools/marker@sha256:0123abcd
    priority: 0
    interface: deploy
    reboot_requested: false
    abortable: true
"""


def _run(result: Any) -> dict[str, Any]:
    result.join(30)
    return json.loads(json.dumps(result.serialize()))


def _ran(tmp_path: Path) -> list[dict[str, Any]]:
    log = tmp_path / "state" / "podman-runs.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_container_steps_run_through_the_clean_extension(
        upstream: dict[str, ModuleType], conf: cfg.ConfigOpts, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    steps_file = tmp_path / "mysteps.yaml"
    steps_file.write_text(STEPS_YAML)
    conf.set_override("container_steps_file", str(steps_file), group="container")
    monkeypatch.setenv("PATH", f"{FAKEBIN}:{os.environ['PATH']}")
    container = upstream["container"].ContainerHardwareManager()
    use_managers(monkeypatch, container, hardware.GenericHardwareManager())

    listed = hardware.dispatch_to_all_managers("get_clean_steps", NODE, [])
    assert {s["step"] for s in listed["ContainerHardwareManager"]} == {
        "generic_container_step", "container_clean_step", "write_marker"}
    assert "erase_devices_metadata" in {s["step"] for s in listed["GenericHardwareManager"]}

    clean = CleanExtension()
    done = _run(clean.execute("execute_clean_step", node=NODE, ports=[],
                              step={"step": "write_marker", "priority": 0,
                                    "interface": "deploy"}))
    assert done["command_status"] == "SUCCEEDED", done
    assert _ran(tmp_path) == [{"options": ["--rm", "--network=host"],
                               "image": "docker://registry.example/tools/marker@sha256:0123abcd"}]

    # An image named in step arguments must be in [container]allowed_containers.
    args = {"container_url": "registry.example/other:1", "run_options": "--privileged"}
    step = {"step": "generic_container_step", "priority": 0, "interface": "deploy",
            "args": args}
    refused = _run(clean.execute("execute_clean_step", node=NODE, ports=[], step=step))
    assert refused["command_status"] == "FAILED"
    assert refused["command_error"]["type"] == "ContainerNotPermittedError"
    assert len(_ran(tmp_path)) == 1
    conf.set_override("allowed_containers", ["docker://registry.example/other:1"],
                      group="container")
    allowed = _run(clean.execute("execute_clean_step", node=NODE, ports=[], step=step))
    assert allowed["command_status"] == "SUCCEEDED", allowed
    # the runbook's own options are not taken: the configured ones are
    assert _ran(tmp_path)[-1] == {"options": ["--rm", "--network=host"],
                                  "image": "registry.example/other:1"}


def test_broken_container_steps_file_is_a_configuration_error(
        upstream: dict[str, ModuleType], conf: cfg.ConfigOpts, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    steps_file = tmp_path / "mysteps.yaml"
    steps_file.write_text("steps:\n  - name: erase_devices_metadata\n    image: x\n")
    conf.set_override("container_steps_file", str(steps_file), group="container")
    container = upstream["container"].ContainerHardwareManager()
    use_managers(monkeypatch, container, hardware.GenericHardwareManager())
    with pytest.raises(errors.HardwareManagerConfigurationError, match="collides"):
        hardware.dispatch_to_all_managers("get_clean_steps", NODE, [])
    steps_file.write_text("steps: [\n")
    with pytest.raises(errors.HardwareManagerConfigurationError, match="Could not read"):
        container.get_clean_steps(NODE, [])

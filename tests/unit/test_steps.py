# SPDX-License-Identifier: Apache-2.0
"""Steps: listing and merge rules, execution, version checks, and a custom manager
packaged as its own distribution (tests/hwm_example) driven through the real API."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from werkzeug.test import Client

from ironic_python_agent import errors, hardware
from ironic_python_agent.extensions import base
from ironic_python_agent.extensions.clean import CleanExtension
from ironic_python_agent.extensions.deploy import DeployExtension
from ironic_python_agent.extensions.service import ServiceExtension
from ironic_python_agent.hardware import managers, steps
from tests.hwfixtures import hardware_conf, reset_hardware

EXAMPLE = Path(__file__).resolve().parent.parent / "hwm_example"
GENERIC_VERSION = {"generic_hardware_manager": "1.2"}


@pytest.fixture(autouse=True)
def _clean_hardware():
    reset_hardware()
    yield
    reset_hardware()


class Executor(base.ExecuteCommandMixin):
    """The agent's command executor over a fixed set of extensions."""

    def __init__(self, **extensions: base.BaseAgentExtension) -> None:
        super().__init__()
        self.extensions = extensions

    def get_extension(self, extension_name: str) -> base.BaseAgentExtension:
        return self.extensions[extension_name]


def run_command(executor: Executor, name: str, **params) -> dict:
    result = executor.execute_command(name, **params)
    result.join(30)
    return json.loads(json.dumps(result.serialize()))


# --- merge rules ------------------------------------------------------------------------

def _s(name: str, priority: int) -> dict:
    return {"step": name, "priority": priority, "interface": "deploy",
            "reboot_requested": False}


def test_deduplicate_support_then_priority_then_name():
    candidates = {
        "ZGeneric": [_s("dup_support", 99), _s("dup_prio", 10), _s("dup_name", 5)],
        "AGeneric": [_s("dup_name", 5), _s("only_a", 1)],
        "Mainline": [_s("dup_support", 1)],
        "BGeneric": [_s("dup_prio", 20)],
    }
    support = {"ZGeneric": 1, "AGeneric": 1, "BGeneric": 1, "Mainline": 2}
    merged = steps.deduplicate(candidates, support)
    assert merged == {
        "ZGeneric": [],
        "AGeneric": [_s("dup_name", 5), _s("only_a", 1)],
        "Mainline": [_s("dup_support", 1)],
        "BGeneric": [_s("dup_prio", 20)],
    }


# --- generic steps through the extensions --------------------------------------------------

NODE = {"uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "properties": {},
        "instance_info": {}, "driver_internal_info": {}}


def test_generic_clean_steps():
    hardware_conf(allow=["nonexistent0"])
    ex = Executor(clean=CleanExtension())
    body = run_command(ex, "clean.get_clean_steps", node=NODE, ports=[])
    assert body["command_status"] == "SUCCEEDED"
    result = body["command_result"]
    assert result["hardware_manager_version"] == GENERIC_VERSION
    by_name = {s["step"]: s for s in result["clean_steps"]["GenericHardwareManager"]}
    assert by_name["erase_devices"]["priority"] == 10
    assert by_name["erase_devices_metadata"]["priority"] == 99
    assert by_name["erase_devices_express"]["priority"] == 0
    for name, step in by_name.items():
        interface = "raid" if name.endswith("_configuration") else "deploy"
        assert step["interface"] == interface and step["reboot_requested"] is False
        assert step["abortable"] is True


def test_generic_deploy_and_service_steps_list_write_image():
    hardware_conf(allow=["nonexistent0"])
    ex = Executor(deploy=DeployExtension(), service=ServiceExtension())
    deploy = run_command(ex, "deploy.get_deploy_steps", node=NODE, ports=[])["command_result"]
    names = {s["step"]: s for s in deploy["deploy_steps"]["GenericHardwareManager"]}
    assert names["write_image"]["interface"] == "deploy"
    assert names["write_image"]["argsinfo"]["image_info"]["required"] is True
    assert "erase_devices_metadata" in names
    service = run_command(ex, "service.get_service_steps", node=NODE, ports=[])
    assert "write_image" in {s["step"] for s in
                             service["command_result"]["service_steps"]["GenericHardwareManager"]}


def test_version_mismatch_is_clean_version_mismatch():
    hardware_conf(allow=["nonexistent0"])
    ex = Executor(clean=CleanExtension())
    body = run_command(ex, "clean.execute_clean_step",
                       step={"step": "erase_pstore", "interface": "deploy", "priority": 0},
                       node=NODE, ports=[],
                       clean_version={"generic_hardware_manager": "1.1"})
    assert body["command_status"] == "CLEAN_VERSION_MISMATCH"
    assert body["command_error"]["type"] == "VersionMismatch"
    assert body["command_error"]["code"] == 409


def test_step_errors():
    hardware_conf(allow=["nonexistent0"])
    ex = Executor(clean=CleanExtension())
    body = run_command(ex, "clean.execute_clean_step", step={"interface": "deploy"},
                       node=NODE, ports=[], clean_version=GENERIC_VERSION)
    assert body["command_status"] == "FAILED"
    assert body["command_error"]["type"] == "CommandExecutionError"
    assert "no 'step' key" in body["command_error"]["details"]

    body = run_command(ex, "clean.execute_clean_step",
                       step={"step": "no_such_step", "interface": "deploy"},
                       node=NODE, ports=[], clean_version=GENERIC_VERSION)
    assert body["command_error"]["type"] == "HardwareManagerMethodNotFound"
    assert body["command_error"]["details"] == "Could not find method: no_such_step"

    # A non-agent exception is wrapped with the step's name (arguments don't fit here).
    body = run_command(ex, "clean.execute_clean_step",
                       step={"step": "erase_pstore", "interface": "deploy",
                             "args": {"unexpected": 1}},
                       node=NODE, ports=[], clean_version=GENERIC_VERSION)
    assert body["command_error"]["type"] == "CleaningError"
    assert body["command_error"]["details"].startswith(
        "Unexpected exception performing clean step erase_pstore. TypeError:")


class FakeStandby(base.BaseAgentExtension):
    """A stand-in for standby.prepare_image: fails for image id 'bad'."""

    @base.async_command("prepare_image")
    def prepare_image(self, image_info, configdrive=None):
        if image_info["id"] == "bad":
            raise errors.ImageWriteError("/dev/sdz", 1, "", "no space left")
        return f"prepare_image: image ({image_info['id']}) written to device /dev/sdz"


def test_write_image_deploy_step_waits_for_prepare_image(monkeypatch):
    hardware_conf(allow=["nonexistent0"])
    monkeypatch.setattr(base, "_EXTENSIONS", {"standby": FakeStandby()})
    ex = Executor(deploy=DeployExtension())
    step = {"step": "write_image", "interface": "deploy", "priority": 80,
            "args": {"image_info": {"id": "good"}, "configdrive": None}}
    body = run_command(ex, "deploy.execute_deploy_step", step=step, node=NODE, ports=[],
                       deploy_version=GENERIC_VERSION)
    assert body["command_status"] == "SUCCEEDED"
    assert body["command_result"]["deploy_step"] == step
    assert body["command_result"]["deploy_result"] == {
        "result": "prepare_image: prepare_image: image (good) written to device /dev/sdz"}

    step["args"]["image_info"] = {"id": "bad"}
    body = run_command(ex, "deploy.execute_deploy_step", step=step, node=NODE, ports=[],
                       deploy_version=GENERIC_VERSION)
    assert body["command_status"] == "FAILED"
    assert body["command_error"]["type"] == "ImageWriteError"


# --- the custom manager distribution ---------------------------------------------------------

@pytest.fixture(scope="session")
def example_installed(tmp_path_factory):
    """pip-install tests/hwm_example into a directory put on sys.path for the session."""
    target = tmp_path_factory.mktemp("hwm-example-site")
    argv = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
            str(target), str(EXAMPLE)]
    try:
        # Offline and faster when the venv can build it already; else pip fetches
        # setuptools from PyPI into an isolated build environment.
        import setuptools  # noqa: F401
        import wheel  # noqa: F401

        argv.insert(4, "--no-build-isolation")
    except ImportError:
        pass
    subprocess.run(argv, check=True)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    yield target
    sys.path.remove(str(target))
    for name in [m for m in sys.modules if m.startswith("hwm_example")]:
        del sys.modules[name]
    importlib.invalidate_caches()


def test_custom_manager_through_the_api(example_installed, tmp_path, monkeypatch):
    from ironic_python_agent.api import Application
    from tests.agent_fixtures import TOKEN, make_agent

    device = tmp_path / "vendor-device"
    device.write_text(json.dumps({"firmware": "1.0"}))
    monkeypatch.setenv("EXAMPLE_HWM_DEVICE", str(device))
    agent = make_agent()
    hardware_conf(allow=["nonexistent0"])
    managers.clear_managers()

    names = [type(m).__name__ for m in hardware.get_managers()]
    assert names == ["ExampleDeviceHardwareManager", "GenericHardwareManager"]
    # Upstream fall-through: the example abstains from get_cpus, the generic answers.
    assert hardware.dispatch_to_managers("get_cpus").count >= 1

    client = Client(Application(agent))

    def post(name, params, wait):
        r = client.post("/v1/commands/", query_string={"agent_token": TOKEN, "wait": wait},
                        data=json.dumps({"name": name, "params": params}))
        assert r.status_code == 200, r.data
        return r.json

    listed = post("clean.get_clean_steps", {"node": NODE, "ports": []}, "true")
    result = listed["command_result"]
    assert result["hardware_manager_version"] == {
        "ExampleDeviceHardwareManager": "1.1", "generic_hardware_manager": "1.2"}
    assert result["clean_steps"]["ExampleDeviceHardwareManager"] == [{
        "step": "upgrade_firmware", "priority": 10, "interface": "deploy",
        "reboot_requested": False, "abortable": False}]

    step = {"step": "upgrade_firmware", "interface": "deploy", "priority": 10,
            "args": {"version": "2.1"}}
    started = post("clean.execute_clean_step",
                   {"step": step, "node": NODE, "ports": [],
                    "clean_version": result["hardware_manager_version"]}, "false")
    assert started["command_status"] in ("RUNNING", "SUCCEEDED")
    for _ in range(100):
        last = client.get("/v1/commands/", query_string={"agent_token": TOKEN}).json
        last = last["commands"][-1]
        if last["command_status"] != "RUNNING":
            break
        time.sleep(0.05)
    assert last["command_name"] == "execute_clean_step"
    assert last["command_status"] == "SUCCEEDED", last
    assert last["command_result"] == {
        "clean_result": {"from": "1.0", "to": "2.1", "disks_seen": 0},
        "clean_step": step}
    assert json.loads(device.read_text()) == {"firmware": "2.1"}

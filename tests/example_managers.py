# SPDX-License-Identifier: Apache-2.0
"""Hardware managers written the way vendors write them for the upstream agent.

Only upstream's import surface is used (``hardware``, ``errors``, ``utils``,
oslo.concurrency's ``processutils``), so each doubles as a compatibility check.
"""

from oslo_concurrency import processutils

from ironic_python_agent import errors, hardware, utils


class TunedGenericManager(hardware.GenericHardwareManager):
    """Subclasses the generic manager and overrides one step, calling super()."""

    HARDWARE_MANAGER_NAME = "TunedGenericManager"
    HARDWARE_MANAGER_VERSION = "2.0"

    def __init__(self):
        super().__init__()
        self.pstore_runs = 0

    def evaluate_hardware_support(self):
        return hardware.HardwareSupport.SERVICE_PROVIDER

    def erase_pstore(self, node, ports):
        self.pstore_runs += 1
        removed = super().erase_pstore(node, ports)
        return {"tuned": True, "removed": removed}


class DecliningManager(hardware.HardwareManager):
    """Ranked above generic, implements nothing of the inventory, declines the rest."""

    HARDWARE_MANAGER_NAME = "DecliningManager"
    HARDWARE_MANAGER_VERSION = "1.0"

    def evaluate_hardware_support(self):
        return hardware.HardwareSupport.MAINLINE

    def get_os_install_device(self, permit_refresh=False):
        raise errors.IncompatibleHardwareMethodError("not my disks")

    def erase_block_device(self, node, block_device):
        raise errors.IncompatibleHardwareMethodError()


class AbsentManager(hardware.HardwareManager):
    """Not for this machine: never loaded, never dispatched to."""

    def evaluate_hardware_support(self):
        return hardware.HardwareSupport.NONE

    def get_cpus(self):
        raise AssertionError("a NONE manager must never be called")


class StepsManager(hardware.HardwareManager):
    """Adds clean, deploy and service steps with argsinfo."""

    HARDWARE_MANAGER_NAME = "StepsManager"
    HARDWARE_MANAGER_VERSION = "3"

    def evaluate_hardware_support(self):
        return hardware.HardwareSupport.SERVICE_PROVIDER

    def _steps(self):
        return [{"step": "set_fan_profile", "priority": 0, "interface": "deploy",
                 "reboot_requested": False, "abortable": True,
                 "argsinfo": {"profile": {"description": "quiet or performance",
                                          "required": True}}}]

    def get_clean_steps(self, node, ports):
        return self._steps()

    def get_deploy_steps(self, node, ports):
        return self._steps()

    def get_service_steps(self, node, ports):
        return self._steps()

    def set_fan_profile(self, node, ports, profile):
        if profile not in ("quiet", "performance"):
            raise errors.InvalidCommandParamsError(f"unknown fan profile {profile}")
        return {"profile": profile, "node": node.get("uuid")}


class ShellManager(hardware.HardwareManager):
    """Shells out through utils.execute and catches ProcessExecutionError."""

    HARDWARE_MANAGER_NAME = "ShellManager"
    HARDWARE_MANAGER_VERSION = "1.0"

    def evaluate_hardware_support(self):
        return hardware.HardwareSupport.MAINLINE

    def get_clean_steps(self, node, ports):
        return [{"step": "vendor_tool", "priority": 0, "interface": "deploy",
                 "reboot_requested": False, "abortable": False}]

    def vendor_tool(self, node, ports, script="exit 0"):
        try:
            out, err = utils.execute("sh", "-c", script)
        except processutils.ProcessExecutionError as exc:
            return {"failed": True, "exit_code": exc.exit_code, "stdout": exc.stdout,
                    "stderr": exc.stderr, "cmd": exc.cmd}
        return {"failed": False, "stdout": out, "stderr": err}

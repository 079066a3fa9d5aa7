# SPDX-License-Identifier: Apache-2.0
"""A vendor hardware manager as one would write it for the upstream agent.

It only uses names the upstream agent exposes (``hardware.HardwareManager``,
``hardware.HardwareSupport``, ``hardware.dispatch_to_managers``, ``errors``), so
loading it in lean-ipa proves the compatibility surface. It claims the machine
when ``EXAMPLE_HWM_DEVICE`` names a file that exists (standing in for a vendor
device node), so it stays out of the way of every other test.
"""

import json
import os

from ironic_python_agent import errors
from ironic_python_agent import hardware


class ExampleDeviceHardwareManager(hardware.HardwareManager):
    HARDWARE_MANAGER_NAME = "ExampleDeviceHardwareManager"
    HARDWARE_MANAGER_VERSION = "1.1"

    def _device(self):
        return os.environ.get("EXAMPLE_HWM_DEVICE", "")

    def evaluate_hardware_support(self):
        if self._device() and os.path.exists(self._device()):
            return hardware.HardwareSupport.SERVICE_PROVIDER
        return hardware.HardwareSupport.NONE

    def get_clean_steps(self, node, ports):
        return [{
            "step": "upgrade_firmware",
            "priority": 10,
            "interface": "deploy",
            "reboot_requested": False,
            "abortable": False,
        }]

    def upgrade_firmware(self, node, ports, version="2.0"):
        """Write the new firmware version into the "device" and report it."""
        path = self._device()
        with open(path) as f:
            before = json.load(f)
        if before.get("firmware") == version:
            raise errors.IncompatibleHardwareMethodError("firmware is already current")
        with open(path, "w") as f:
            json.dump({"firmware": version}, f)
        disks = hardware.dispatch_to_managers("list_block_devices")
        return {"from": before.get("firmware"), "to": version, "disks_seen": len(disks)}

    def get_cpus(self):
        # Defer to the next manager for everything else (upstream's fall-through).
        raise errors.IncompatibleHardwareMethodError()

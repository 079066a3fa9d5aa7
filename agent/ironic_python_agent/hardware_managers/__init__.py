# SPDX-License-Identifier: Apache-2.0
"""The home of hardware-manager modules under upstream's names.

Code written for the upstream agent imports from here by module path:
upstream's Mellanox manager (``hardware_managers/mlnx.py``) does
``from ironic_python_agent.hardware_managers.nvidia import nvidia_fw_update``,
and vendors drop their managers beside it. Our own modules here keep
upstream's module names and function semantics; the managers themselves are
loaded from the ``ironic_python_agent.hardware_managers`` entry-point group
(see doc/hardware-managers.rst).
"""

# SPDX-License-Identifier: Apache-2.0
"""The home of hardware-manager modules under upstream's names.

Upstream keeps its own managers here (``mlnx``, ``cna``, ``container``), and
code written for upstream imports from here by module path: the Mellanox
manager does ``from ironic_python_agent.hardware_managers.nvidia import
nvidia_fw_update``. Our modules here keep upstream's module names and function
semantics. Managers themselves load from the ``ironic_python_agent.hardware_managers``
entry-point group (doc/hardware-managers.rst).
"""

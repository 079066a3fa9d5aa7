# SPDX-License-Identifier: Apache-2.0
"""The ``service`` namespace: list the service steps of the hardware managers and run one."""

from __future__ import annotations

from ironic_python_agent.extensions import step_commands

ServiceExtension = step_commands.define("service")

EXTENSION = ServiceExtension

# SPDX-License-Identifier: Apache-2.0
"""The ``deploy`` namespace: list the deploy steps of the hardware managers and run one."""

from __future__ import annotations

from ironic_python_agent.extensions import step_commands

DeployExtension = step_commands.define("deploy")

EXTENSION = DeployExtension

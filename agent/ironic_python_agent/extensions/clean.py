# SPDX-License-Identifier: Apache-2.0
"""The ``clean`` namespace: list the clean steps of the hardware managers and run one."""

from __future__ import annotations

from ironic_python_agent.extensions import step_commands

CleanExtension = step_commands.define("clean")

EXTENSION = CleanExtension

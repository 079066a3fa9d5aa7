# SPDX-License-Identifier: Apache-2.0
"""lean-ipa: an Ironic-compatible deploy agent."""

__version__ = "13.0.0"

# SPDX-License-Identifier: Apache-2.0
"""tinyipa: a small initramfs for the agent, built from Debian packages."""

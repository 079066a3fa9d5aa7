# SPDX-License-Identifier: Apache-2.0
"""The coreos variant: the agent container run by systemd-nspawn on a systemd host."""

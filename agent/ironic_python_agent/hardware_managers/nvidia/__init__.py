# SPDX-License-Identifier: Apache-2.0
"""NVIDIA (Mellanox) NIC firmware: :mod:`.nvidia_fw_update`, under upstream's name."""

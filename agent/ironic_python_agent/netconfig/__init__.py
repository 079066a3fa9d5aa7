# SPDX-License-Identifier: Apache-2.0
"""Static network configuration before lookup: network_data.json (virtual media,
config drive) and the ip=/bond=/vlan=/nameserver= kernel parameters.

The images run ``lean-ipa-network`` (:mod:`.cli`) before the agent.
"""

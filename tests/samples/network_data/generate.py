# SPDX-License-Identifier: Apache-2.0
"""Regenerate the ironic-*.json samples with Ironic 39's own network-data code.

Run in the real Ironic's venv (out/venv-ironic/bin/python tests/samples/network_data/generate.py):
ironic.common.neutron.get_neutron_port_data, fed a Neutron client that answers
with fixed ports, networks and subnets (no Neutron needed).
"""

import json
import sys
from pathlib import Path

from ironic.common import neutron


class Obj(dict):
    __getattr__ = dict.__getitem__


class Client:
    def __init__(self, ports, networks, subnets):
        self.ports, self.networks, self.subnets = ports, networks, subnets

    def get_port(self, vif):
        return Obj(self.ports[vif])

    def get_network(self, net):
        return Obj(self.networks[net])

    def get_subnet(self, sub):
        return Obj(self.subnets[sub])


NETS = {"net-a": {"mtu": 1500}, "net-b": {"mtu": 9000}}
SUBNETS = {
    "sub-v4": {"cidr": "192.0.2.0/24", "ip_version": 4, "gateway_ip": "192.0.2.1",
               "host_routes": [{"destination": "198.51.100.0/24", "nexthop": "192.0.2.254"}],
               "dns_nameservers": ["192.0.2.53", "2001:db8::53"]},
    "sub-v6": {"cidr": "2001:db8:1::/64", "ip_version": 6, "gateway_ip": "2001:db8:1::1",
               "host_routes": [], "dns_nameservers": []},
}
PORTS = {
    "vif-1": {"id": "vif-1", "name": "", "network_id": "net-a", "mac_address": "52:54:00:12:34:01",
              "fixed_ips": [{"subnet_id": "sub-v4", "ip_address": "192.0.2.10"},
                            {"subnet_id": "sub-v6", "ip_address": "2001:db8:1::10"}]},
    "vif-bond": {"id": "vif-bond", "name": "pg0", "network_id": "net-b",
                 "mac_address": "52:54:00:12:34:11",
                 "fixed_ips": [{"subnet_id": "sub-v4", "ip_address": "192.0.2.20"}]},
}


def main(out: Path) -> None:
    client = Client(PORTS, NETS, SUBNETS)
    single = neutron.get_neutron_port_data("port-1", "vif-1", client=client)
    (out / "ironic-port.json").write_text(json.dumps(single, indent=2) + "\n")
    bond_links = [{"id": f"port-{i}", "type": "phy", "ethernet_mac_address": mac}
                  for i, mac in ((2, "52:54:00:12:34:02"), (3, "52:54:00:12:34:03"))]
    bond = neutron.get_neutron_port_data("pg-1", "vif-bond", client=client,
                                         bond_links=bond_links)
    (out / "ironic-portgroup.json").write_text(json.dumps(bond, indent=2) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)

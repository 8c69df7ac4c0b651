"""The demo's three namespaces: client — firewall — server, joined by two veth pairs.

```
client [cl-if] 10.10.1.2 ---- 10.10.1.1 [lan] firewall [wan] 10.10.2.1 ---- 10.10.2.2 [sv-if] server
       fd00:a::2                fd00:a::1               fd00:b::1                fd00:b::2
```

The client routes everything through the firewall's LAN address; the server knows only its
own subnet, so a reply can reach the client only if the firewall translated the source to
its WAN address (SNAT). No neighbour is static: every namespace resolves its neighbours
with ARP/ND, and so does the firewall while the forwarder owns its interfaces (ARP/ND and
packets for its own addresses go to its kernel; the forwarder takes next-hop MACs from the
kernel's neighbour table, xpfdp.hostnet). In `kernel` mode the firewall namespace forwards
with the Linux kernel instead (plain routing: the server then gets a route back to the LAN,
since no kernel NAT tool is assumed installed) — the baseline for throughput comparisons.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from xpfdp.topology import Namespace, VethPair

LAN_V4 = ("10.10.1.2", "10.10.1.1", 24)  # client, firewall LAN, prefix length
WAN_V4 = ("10.10.2.1", "10.10.2.2", 24)  # firewall WAN, server, prefix length
LAN_V6 = ("fd00:a::2", "fd00:a::1", 64)
WAN_V6 = ("fd00:b::1", "fd00:b::2", 64)
MTU_BYTES = 1500


@dataclass
class FirewallTopology:
    """Client, firewall and server namespaces with addresses and routes (neighbours are
    resolved by ARP/ND).

    Use as a context manager: everything is deleted when the block ends, also on
    exceptions (links before namespaces). `mode` is ``"xpfdp"`` (the firewall namespace
    does not forward; the forwarder owns its interfaces) or ``"kernel"``. `queues` is the
    RX/TX queue count of every veth end.
    """

    mode: str = "xpfdp"
    prefix: str = "xd"
    queues: int = 1
    client: Namespace = field(init=False)
    firewall: Namespace = field(init=False)
    server: Namespace = field(init=False)
    lan_if: str = field(init=False)
    wan_if: str = field(init=False)
    client_if: str = field(init=False)
    server_if: str = field(init=False)
    client_mac: str = field(init=False)
    server_mac: str = field(init=False)
    lan_mac: str = field(init=False)
    wan_mac: str = field(init=False)

    client_v4 = LAN_V4[0]
    lan_v4 = LAN_V4[1]
    wan_v4 = WAN_V4[0]
    server_v4 = WAN_V4[1]
    client_v6 = LAN_V6[0]
    lan_v6 = LAN_V6[1]
    wan_v6 = WAN_V6[0]
    server_v6 = WAN_V6[1]

    def __post_init__(self) -> None:
        if self.mode not in ("xpfdp", "kernel"):
            raise ValueError(f"mode must be 'xpfdp' or 'kernel', not {self.mode!r}")
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> FirewallTopology:
        try:
            self._build()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def _build(self) -> None:
        s = self._stack
        self.client = s.enter_context(Namespace(prefix=self.prefix))
        self.firewall = s.enter_context(Namespace(prefix=self.prefix))
        self.server = s.enter_context(Namespace(prefix=self.prefix))
        for ns in (self.client, self.firewall, self.server):
            # Quiet IPv6 on the links created next: no router solicitations, SLAAC or DAD,
            # and MLD reports sent at once, so the only later traffic is the demo's own.
            for key in (
                "router_solicitations=0",
                "accept_ra=0",
                "autoconf=0",
                "accept_dad=0",
                "mldv1_unsolicited_report_interval=10",
                "mldv2_unsolicited_report_interval=10",  # ms
            ):
                ns.run("sysctl", "-qw", f"net.ipv6.conf.default.{key}")
        q = self.queues
        lan = s.enter_context(VethPair(self.firewall, self.client, mtu=MTU_BYTES, queues=q))
        wan = s.enter_context(VethPair(self.firewall, self.server, mtu=MTU_BYTES, queues=q))
        self.lan_if, self.client_if = lan.a, lan.b
        self.wan_if, self.server_if = wan.a, wan.b
        self.lan_mac, self.client_mac = lan.mac_a, lan.mac_b
        self.wan_mac, self.server_mac = wan.mac_a, wan.mac_b

        ends = (
            (self.client, self.client_if, LAN_V4[0], LAN_V6[0]),
            (self.firewall, self.lan_if, LAN_V4[1], LAN_V6[1]),
            (self.firewall, self.wan_if, WAN_V4[0], WAN_V6[0]),
            (self.server, self.server_if, WAN_V4[1], WAN_V6[1]),
        )
        for ns, ifname, v4, v6 in ends:
            # Frames must leave the kernel complete and wire-sized: AF_XDP sees them raw.
            ns.disable_offloads(ifname)
            ns.add_address(ifname, v4, 24)
            ns.run("ip", "-6", "addr", "add", f"{v6}/64", "dev", ifname, "nodad")
        self.client.add_route("0.0.0.0/0", gateway=self.lan_v4)
        self.client.run("ip", "-6", "route", "add", "default", "via", self.lan_v6)
        # ICMP echo through datagram sockets (no ping binary needed).
        for ns in (self.client, self.server):
            ns.run("sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
        forward = "1" if self.mode == "kernel" else "0"
        self.firewall.run("sysctl", "-qw", f"net.ipv4.ip_forward={forward}")
        self.firewall.run("sysctl", "-qw", f"net.ipv6.conf.all.forwarding={forward}")
        if self.mode == "kernel":
            self.server.add_route("10.10.1.0/24", gateway=self.wan_v4)
            self.server.run("ip", "-6", "route", "add", "fd00:a::/64", "via", self.wan_v6)

    def firewall_config(self, **overrides) -> dict:
        """A firewall config (the TOML schema of `xpfdp.firewall`, as a dict) for this
        topology, with no static neighbours (the host resolves them); `overrides` replace
        top-level sections."""
        config = {
            "lan": {
                "interface": self.lan_if,
                "addresses": [f"{self.lan_v4}/24", f"{self.lan_v6}/64"],
                "mac": self.lan_mac,
            },
            "wan": {
                "interface": self.wan_if,
                "addresses": [f"{self.wan_v4}/24", f"{self.wan_v6}/64"],
                "mac": self.wan_mac,
            },
            "routes": [
                {"destination": "0.0.0.0/0", "interface": "wan", "gateway": self.server_v4},
                {"destination": "::/0", "interface": "wan", "gateway": self.server_v6},
            ],
            "namespace": self.firewall.name,
        }
        config.update(overrides)
        return config

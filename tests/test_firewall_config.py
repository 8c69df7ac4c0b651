"""Firewall config validation and composition (no root): every bad value is a ConfigError
naming its key; a valid config builds a pipeline that SNATs, clamps and shapes on MemPorts."""

from __future__ import annotations

import copy
import ipaddress

import pytest
from scapy.all import ICMP, IP, TCP, UDP, Ether, IPv6

from xpfdp.csum import checksums_ok
from xpfdp.firewall import (
    PORT_LAN,
    PORT_WAN,
    QUEUE_PRIORITY,
    ConfigError,
    build_pipeline,
    cos_rules,
    gateways,
    load_config,
    parse_config,
    routing,
    to_toml,
)
from xpfdp.pcap import FrameBatch
from xpfdp.pipeline import CONNECTED
from xpfdp.ports import MemPort

LAN_MAC, CLIENT_MAC = "02:00:00:00:01:01", "02:00:00:00:01:02"
WAN_MAC, SERVER_MAC = "02:00:00:00:02:01", "02:00:00:00:02:02"

VALID = {
    "lan": {"interface": "lan0", "addresses": ["10.10.1.1/24", "fd00:a::1/64"], "mac": LAN_MAC},
    "wan": {"interface": "wan0", "addresses": ["10.10.2.1/24", "fd00:b::1/64"], "mac": WAN_MAC},
    "neighbours": [
        {"interface": "lan", "address": "10.10.1.2", "mac": CLIENT_MAC},
        {"interface": "lan", "address": "fd00:a::2", "mac": CLIENT_MAC},
        {"interface": "wan", "address": "10.10.2.2", "mac": SERVER_MAC},
        {"interface": "wan", "address": "fd00:b::2", "mac": SERVER_MAC},
    ],
    "routes": [
        {"destination": "0.0.0.0/0", "interface": "wan", "gateway": "10.10.2.2"},
        {"destination": "::/0", "interface": "wan", "gateway": "fd00:b::2"},
    ],
    "nat": {"snat_ports": [20000, 20099]},
    "mss": {"clamp_bytes": 1360},
    "cos": {"rate_mbps": 100, "bulk": {"guarantee_mbps": 80}, "priority": {"udp_ports": [53]}},
}

TOML = """
namespace = "fw"
[lan]
interface = "lan0"
addresses = ["10.10.1.1/24"]
[wan]
interface = "wan0"
addresses = ["10.10.2.1/24"]
[[neighbours]]
interface = "wan"
address = "10.10.2.2"
mac = "02:00:00:00:02:02"
[[routes]]
destination = "0.0.0.0/0"
interface = "wan"
gateway = "10.10.2.2"
[mss]
clamp_bytes = 1400
[forwarder]
queues = 2
ring_size = 1024
"""


def config(**changes):
    """VALID with dotted-path changes (value None deletes the key)."""
    out = copy.deepcopy(VALID)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = out
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
        if value is None:
            del node[int(leaf) if isinstance(node, list) else leaf]
        elif isinstance(node, list):
            node[int(leaf)] = value
        else:
            node[leaf] = value
    return out


def test_valid_config_parses_with_units():
    c = parse_config(VALID)
    assert c.lan.name == "lan0" and c.wan.address(4) == ipaddress.ip_address("10.10.2.1")
    assert c.wan.address(6) == ipaddress.ip_address("fd00:b::1")
    assert c.snat_ports == (20000, 20099) and c.mss_clamp_bytes == 1360
    assert c.cos.rate_bps == 100_000_000 and c.cos.bulk_guarantee_bps == 80_000_000
    assert c.cos.priority_protocols == (1, 58) and c.cos.priority_udp_ports == (53,)
    assert c.forwarder.queues == 1 and c.namespace is None


def test_toml_file_round_trip(tmp_path):
    path = tmp_path / "fw.toml"
    path.write_text(TOML)
    c = load_config(path)
    assert c.namespace == "fw" and c.forwarder.queues == 2 and c.forwarder.ring_size == 1024
    assert c.forwarder.busy_poll_us == 0  # off unless asked for
    assert c.cos is None and c.mss_clamp_bytes == 1400 and c.lan.mac is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lan": None}, r"^lan: missing"),
        ({"wan__interface": None}, r"^wan\.interface: missing"),
        ({"lan__colour": "red"}, r"^lan: unknown key\(s\) colour"),
        ({"extra": 1}, r"^top level: unknown key\(s\) extra"),
        ({"lan__interface": "x" * 16}, r"lan\.interface: 1\.\.15 characters"),
        ({"wan__interface": "lan0"}, r"wan\.interface: same interface as lan"),
        ({"lan__addresses": []}, r"lan\.addresses: at least one"),
        ({"lan__addresses": ["10.10.1.1"]}, r"lan\.addresses\[0\]: expected 'address/prefix"),
        ({"lan__addresses": ["10.10.1.300/24"]}, r"lan\.addresses\[0\]"),
        ({"wan__addresses": ["10.10.1.9/24", "fd00:b::1/64"]}, r"overlaps the LAN subnet"),
        ({"wan__addresses": ["10.10.2.1/24"]}, r"wan\.addresses: LAN has IPv6"),
        ({"lan__mac": "02:00:00:00:01"}, r"lan\.mac: not a MAC address"),
        ({"neighbours__0__mac": "zz:00:00:00:00:00"}, r"neighbours\[0\]\.mac"),
        ({"neighbours__0__address": "10.10.9.2"}, r"neighbours\[0\]\.address: .* not on a subnet"),
        ({"neighbours__0__interface": "dmz"}, r"neighbours\[0\]\.interface: must be 'lan' or"),
        ({"routes__0__gateway": "10.10.1.2"}, r"routes\[0\]\.gateway: 10\.10\.1\.2 is not on"),
        ({"routes__0__gateway": "fd00:b::2"}, r"routes\[0\]\.gateway: IPv6 gateway for an IPv4"),
        ({"routes__0__destination": "10.0.0.1/8"}, r"routes\[0\]\.destination"),
        (
            {"neighbours__3": {"interface": "wan", "address": "10.10.2.2", "mac": SERVER_MAC}},
            r"neighbours\[3\]\.address: 10\.10\.2\.2 on wan is already neighbours\[2\]",
        ),
        ({"nat__snat_ports": [30000, 20000]}, r"nat\.snat_ports: first 30000 > last 20000"),
        ({"nat__snat_ports": [80, 2000]}, r"well-known port"),
        ({"nat__snat_ports": [20000, 70000]}, r"nat\.snat_ports\[1\]: a port must be"),
        ({"nat__snat_ports": [20000]}, r"nat\.snat_ports: expected \[first, last\]"),
        ({"mss__clamp_bytes": 100}, r"mss\.clamp_bytes: must be in 536\.\.65495"),
        ({"mss__clamp_bytes": "1400"}, r"mss\.clamp_bytes: expected an integer"),
        ({"mss__clamp_bytes": True}, r"mss\.clamp_bytes: expected an integer, got a boolean"),
        ({"cos__rate_mbps": 0}, r"cos\.rate_mbps: must be > 0"),
        ({"cos__rate_mbps": None}, r"cos\.rate_mbps: missing"),
        ({"cos__bulk__guarantee_mbps": 150}, r"cos\.bulk\.guarantee_mbps: 150 exceeds the root"),
        ({"cos__priority__protocols": ["gre"]}, r"cos\.priority\.protocols\[0\]: unknown protocol"),
        ({"cos__priority__udp_ports": [0]}, r"cos\.priority\.udp_ports\[0\]"),
        ({"forwarder": {"ring_size": 1000}}, r"forwarder\.ring_size: a power of two"),
        ({"forwarder": {"burst": 512}}, r"forwarder\.burst: must be <= 256"),
        ({"forwarder": {"xdp_mode": "turbo"}}, r"forwarder\.xdp_mode: one of auto"),
        ({"forwarder": {"queues": 0}}, r"forwarder\.queues: must be > 0"),
        ({"forwarder": {"busy_poll_us": -1}}, r"forwarder\.busy_poll_us: 0\.\.1000000"),
        ({"forwarder": {"busy_poll_us": 2_000_000}}, r"forwarder\.busy_poll_us: 0\.\.1000000"),
        ({"forwarder": {"busy_poll_us": "50"}}, r"forwarder\.busy_poll_us: expected an integer"),
    ],
)
def test_invalid_values_name_their_key(changes, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(config(**changes))


def test_to_toml_round_trips_through_the_parser(tmp_path):
    path = tmp_path / "fw.toml"
    path.write_text(to_toml({**VALID, "namespace": 'odd "name"'}))
    assert load_config(path) == parse_config({**VALID, "namespace": 'odd "name"'})


def test_kernel_routes_replace_the_routes_list(tmp_path):
    raw = {k: v for k, v in VALID.items() if k != "routes"} | {"kernel_routes": True}
    c = parse_config(raw)
    assert c.kernel_routes and c.routes == ()
    assert not parse_config(VALID).kernel_routes  # off unless asked for
    path = tmp_path / "fw.toml"
    path.write_text(to_toml(raw))
    assert load_config(path) == c
    with pytest.raises(ConfigError, match=r"kernel_routes: true takes the routes from the kernel"):
        parse_config(VALID | {"kernel_routes": True})
    with pytest.raises(ConfigError, match="kernel_routes: expected a boolean"):
        parse_config(raw | {"kernel_routes": "yes"})


def test_config_errors_are_value_errors_and_name_the_file(tmp_path):
    assert issubclass(ConfigError, ValueError)
    bad = tmp_path / "bad.toml"
    bad.write_text("[lan\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: invalid TOML"):
        load_config(bad)
    bad.write_text(TOML.replace("1400", "10"))
    with pytest.raises(ConfigError, match=r"bad\.toml: mss\.clamp_bytes"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"missing\.toml: No such file"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="top level: expected a table"):
        parse_config(["not", "a", "table"])


def test_routing_connected_subnets_static_host_routes_and_gateway_routes():
    prefixes, hops = routing(parse_config(VALID))
    assert hops == [
        (PORT_LAN, LAN_MAC, CONNECTED),
        (PORT_WAN, WAN_MAC, CONNECTED),
        (PORT_LAN, LAN_MAC, CLIENT_MAC),
        (PORT_WAN, WAN_MAC, SERVER_MAC),
    ]
    assert prefixes == [
        ("10.10.1.0/24", 0),
        ("fd00:a::/64", 0),
        ("10.10.2.0/24", 1),
        ("fd00:b::/64", 1),
        ("10.10.1.2/32", 2),
        ("fd00:a::2/128", 2),
        ("10.10.2.2/32", 3),
        ("fd00:b::2/128", 3),
        ("0.0.0.0/0", 3),
        ("::/0", 3),
    ]
    assert gateways(hops) == []  # every gateway is a static neighbour


def test_routing_without_static_neighbours_resolves_gateways_from_the_host():
    routes = [*VALID["routes"], {"destination": "192.0.2.0/24", "interface": "lan"}]
    c = parse_config(config(neighbours=None, routes=routes))
    prefixes, hops = routing(c)
    gw4, gw6 = ipaddress.ip_address("10.10.2.2"), ipaddress.ip_address("fd00:b::2")
    assert hops[2:] == [(PORT_WAN, WAN_MAC, gw4), (PORT_WAN, WAN_MAC, gw6)]
    assert prefixes[-3:] == [("0.0.0.0/0", 2), ("::/0", 3), ("192.0.2.0/24", 0)]  # on-link
    assert gateways(hops) == [(PORT_WAN, gw4), (PORT_WAN, gw6)]
    assert c.routes[2].gateway is None


def test_cos_rules_cover_icmp_both_families_and_dns():
    c = parse_config(config(cos__priority__tcp_ports=[53]))
    assert cos_rules(c.cos) == [
        {"queue": QUEUE_PRIORITY, "proto": 1, "family": 4},
        {"queue": QUEUE_PRIORITY, "proto": 58, "family": 6},
        {"queue": QUEUE_PRIORITY, "proto": 17, "port": 53},
        {"queue": QUEUE_PRIORITY, "proto": 6, "port": 53},
    ]
    only_v4 = parse_config(config(cos__priority__protocols=["icmp"]))
    assert cos_rules(only_v4.cos)[0] == {"queue": QUEUE_PRIORITY, "proto": 1, "family": 4}


# --- the composed pipeline on MemPorts ---------------------------------------------------


def _batch(frames):
    return FrameBatch.from_frames([bytes(f) for f in frames])


class MemFirewall:
    """The config's pipeline on two MemPorts of one UMEM."""

    def __init__(self, umem, cfg=VALID):
        self.lan = MemPort(umem, None, capture=256)
        self.wan = MemPort(umem, None, capture=256)
        self.pipe = build_pipeline(parse_config(cfg), self.lan, self.wan)

    def send(self, lan=(), wan=()):
        for port in (self.lan, self.wan):
            port.clear_capture()
        self.lan.set_source(_batch(lan) if lan else None)
        self.wan.set_source(_batch(wan) if wan else None)
        self.pipe.run(until_idle=True)
        for _ in range(50):  # let the shaper drain what it holds
            self.pipe.poll()
        return [Ether(f) for f in self.wan.captured()], [Ether(f) for f in self.lan.captured()]


def test_config_pipeline_snat_clamp_l2_and_replies(umem_factory):
    fw = MemFirewall(umem_factory(2048))
    syn = (
        Ether(src=CLIENT_MAC, dst=LAN_MAC)
        / IP(src="10.10.1.2", dst="10.10.2.2")
        / TCP(sport=40000, dport=80, flags="S", options=[("MSS", 1460)])
    )
    syn6 = (
        Ether(src=CLIENT_MAC, dst=LAN_MAC)
        / IPv6(src="fd00:a::2", dst="fd00:b::2")
        / TCP(sport=40001, dport=80, flags="S", options=[("MSS", 1440)])
    )
    to_wan, _ = fw.send(lan=[syn, syn6])
    assert len(to_wan) == 2
    v4 = next(f for f in to_wan if IP in f)
    v6 = next(f for f in to_wan if IPv6 in f)
    assert (v4.src, v4.dst) == (WAN_MAC, SERVER_MAC)
    assert v4[IP].src == "10.10.2.1" and 20000 <= v4[TCP].sport <= 20099
    assert dict(v4[TCP].options)["MSS"] == 1360 and v4[IP].ttl == 63
    assert v6[IPv6].src == "fd00:b::1" and dict(v6[TCP].options)["MSS"] == 1340
    assert all(checksums_ok(bytes(f)) for f in to_wan)
    reply = (
        Ether(src=SERVER_MAC, dst=WAN_MAC)
        / IP(src="10.10.2.2", dst="10.10.2.1")
        / TCP(sport=80, dport=v4[TCP].sport, flags="SA", options=[("MSS", 1460)])
    )
    _, to_lan = fw.send(wan=[reply])
    assert len(to_lan) == 1
    back = to_lan[0]
    assert (back.src, back.dst) == (LAN_MAC, CLIENT_MAC)
    assert back[IP].dst == "10.10.1.2" and back[TCP].dport == 40000
    assert checksums_ok(bytes(back))
    fw.pipe.close()


def test_config_pipeline_drops_unsolicited_and_expired_and_nats_icmp_echo(umem_factory):
    fw = MemFirewall(umem_factory(2048))
    unsolicited = (
        Ether(src=SERVER_MAC, dst=WAN_MAC)
        / IP(src="10.10.2.2", dst="10.10.2.1")
        / UDP(sport=53, dport=5000)
    )
    expired = (
        Ether(src=CLIENT_MAC, dst=LAN_MAC)
        / IP(src="10.10.1.2", dst="10.10.2.2", ttl=1)
        / UDP(sport=5000, dport=53)
    )
    to_wan, to_lan = fw.send(lan=[expired], wan=[unsolicited])
    assert to_wan == []
    # the expired packet comes back as Time Exceeded from the LAN address, quoting it
    assert len(to_lan) == 1 and to_lan[0][ICMP].type == 11
    assert (to_lan[0][IP].src, to_lan[0][IP].dst) == ("10.10.1.1", "10.10.1.2")
    assert (to_lan[0].src, to_lan[0].dst) == (LAN_MAC, CLIENT_MAC)
    drops = fw.pipe.stats()["drops"]
    assert drops == {"policy_denied": 1}
    assert fw.pipe.stats()["stages"]["ttl"]["expired"] == 1
    ping = Ether(src=CLIENT_MAC, dst=LAN_MAC) / IP(src="10.10.1.2", dst="10.10.2.2") / ICMP(id=7)
    to_wan, _ = fw.send(lan=[ping])
    assert len(to_wan) == 1 and to_wan[0][IP].src == "10.10.2.1"
    assert fw.pipe.stats()["stages"]["cos"]["admitted"] == 1  # the echo went through CoS
    fw.pipe.close()

#!/usr/bin/env python3
"""Routing NAT firewall between a LAN and a WAN interface, from a TOML file or from flags.

The same forwarder as `xpfdp forward` (xpfdp.firewall + xpfdp.cli.run_forwarder). As root:
  examples/firewall.py --config fw.toml --duration 30
  examples/firewall.py --netns fw --lan lan0 --lan-address 10.10.1.1/24 \\
      --wan wan0 --wan-address 10.10.2.1/24 --neighbour wan,10.10.2.2,02:00:00:00:02:02 \\
      --neighbour lan,10.10.1.2,02:00:00:00:01:02 --route 0.0.0.0/0,wan,10.10.2.2 \\
      --mss 1360 --rate-mbps 200
"""

from __future__ import annotations

import argparse
import sys

from xpfdp.cli import EXIT_CONFIG, run_forwarder
from xpfdp.firewall import ConfigError, load_config, parse_config


def config_from_flags(args) -> dict:
    """The config dict (TOML schema) the flags describe."""
    config: dict = {
        "lan": {"interface": args.lan, "addresses": args.lan_address},
        "wan": {"interface": args.wan, "addresses": args.wan_address},
        "neighbours": [
            dict(zip(("interface", "address", "mac"), n.split(","), strict=True))
            for n in args.neighbour
        ],
        "routes": [
            dict(zip(("destination", "interface", "gateway"), r.split(","), strict=True))
            for r in args.route
        ],
        "nat": {"snat_ports": [args.snat_first, args.snat_last]},
    }
    if args.netns:
        config["namespace"] = args.netns
    if args.mss:
        config["mss"] = {"clamp_bytes": args.mss}
    if args.rate_mbps:
        config["cos"] = {"rate_mbps": args.rate_mbps}
    return config


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", help="TOML file (then the interface flags are not used)")
    p.add_argument("--netns", help="network namespace of the interfaces")
    p.add_argument("--lan", help="LAN interface")
    p.add_argument("--wan", help="WAN interface")
    p.add_argument("--lan-address", action="append", default=[], help="addr/prefix (repeat)")
    p.add_argument("--wan-address", action="append", default=[], help="addr/prefix (repeat)")
    p.add_argument("--neighbour", action="append", default=[], help="side,address,mac")
    p.add_argument("--route", action="append", default=[], help="prefix,side,gateway")
    p.add_argument("--snat-first", type=int, default=20000)
    p.add_argument("--snat-last", type=int, default=59999)
    p.add_argument("--mss", type=int, help="TCP MSS clamp (bytes)")
    p.add_argument("--rate-mbps", type=float, help="shape WAN egress to this rate")
    p.add_argument("--duration", type=float, help="seconds (default: until ^C)")
    p.add_argument("--prometheus-port", type=int, help="serve metrics on 127.0.0.1:PORT")
    args = p.parse_args(argv)
    try:
        if args.config:
            config = load_config(args.config)
        else:
            if not (args.lan and args.wan):
                p.error("give --config, or at least --lan and --wan")
            config = parse_config(config_from_flags(args))
    except (ConfigError, ValueError) as exc:
        print(f"firewall: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return run_forwarder(config, duration_s=args.duration, prometheus_port=args.prometheus_port)


if __name__ == "__main__":
    sys.exit(main())

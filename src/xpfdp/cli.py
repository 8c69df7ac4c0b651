"""The `xpfdp` command (also `python -m xpfdp`).

* ``xpfdp forward --config fw.toml [--duration S] [--prometheus-port P] [--check]``: run the
  NAT firewall a TOML file describes (xpfdp.firewall), one status line per second, until
  the duration ends or Ctrl-C/SIGTERM; ``--check`` only validates the file.
* ``xpfdp detach IFACE... [--namespace NS] [--force]``: remove XDP programs a dead xpfdp
  process left behind (never a running forwarder's; another tool's only with --force).
* ``xpfdp demo``: the end-to-end demo (xpfdp.demo.run): namespaces, real traffic, report.

Runtime events (links going down or away, replaced programs) are logged through `logging`
to stderr. Exit status (also in ``--help``): 0 done; 1 an unexpected error (a worker failed,
a demo check failed, or ``detach`` left something attached); 2 the configuration (or a
dependency it needs) is unusable; 3 the configuration is valid but the forwarder cannot
start here (missing interface, no privileges, no XDP); 4 an interface was deleted under the
running forwarder; 128+N stopped by signal N (130 for Ctrl-C, 143 for SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time

from xpfdp.errors import XpfdpError

EXIT_CONFIG = 2  # the config (or a dependency it needs) is unusable
EXIT_START = 3  # the config is valid but the forwarder cannot start here
EXIT_LINK_LOST = 4  # an interface was deleted under the running forwarder
EXIT_NOT_DETACHED = 1  # xpfdp detach: an interface still has a program it may not remove
EXIT_CODES_HELP = """exit status:
  0        finished (duration over, --check passed, detach removed everything)
  1        unexpected error: a worker failed, (demo) a report check failed, or
           (detach) an interface still has a program it may not remove
  2        configuration error (or a missing optional dependency it needs)
  3        valid configuration, but the forwarder cannot start here
           (missing interface, no privileges, no XDP support)
  4        an interface was deleted under the running forwarder
  128+N    stopped by signal N (130: Ctrl-C, 143: SIGTERM)"""


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 0..65535, got {text}")
    return value


class _HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default (when it has one) and keeps the exit-status table's layout."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("exit status:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `xpfdp` and its subcommands."""
    from xpfdp import __version__

    parser = argparse.ArgumentParser(
        prog="xpfdp",
        description="AF_XDP packet processing for Python: forwarder and demo.",
        epilog=EXIT_CODES_HELP,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{forward,detach,demo}")

    fwd = sub.add_parser(
        "forward",
        help="run the LAN/WAN NAT firewall described by a TOML config",
        description="Run the routing NAT firewall of a TOML config (see xpfdp.firewall) with "
        "one status line per second. Needs root (AF_XDP, XDP).",
        epilog=EXIT_CODES_HELP,
        formatter_class=_HelpFormatter,
    )
    fwd.add_argument("--config", required=True, help="firewall TOML file")
    fwd.add_argument(
        "--duration",
        type=_positive_float,
        help="seconds to run (default: until Ctrl-C)",
    )
    fwd.add_argument(
        "--prometheus-port",
        type=_port,
        help="serve Prometheus metrics on 127.0.0.1:PORT",
    )
    fwd.add_argument("--check", action="store_true", help="validate the config and exit")
    fwd.add_argument("--quiet", action="store_true", help="no per-second status lines")

    detach = sub.add_parser(
        "detach",
        help="remove XDP programs left by a dead xpfdp process",
        description="Remove the XDP program from each interface if a dead xpfdp process left "
        "it. A program a running xpfdp owns is never removed (its pid is printed); another "
        "tool's program only with --force. Needs root.",
        epilog=EXIT_CODES_HELP,
        formatter_class=_HelpFormatter,
    )
    detach.add_argument("interfaces", nargs="+", metavar="IFACE", help="interfaces to clean")
    detach.add_argument("--namespace", help="network namespace of the interfaces")
    detach.add_argument("--force", action="store_true", help="also remove other tools' programs")

    demo = sub.add_parser(
        "demo",
        help="client -- firewall -- server namespaces, real traffic, report",
        description="Build client, firewall and server namespaces joined by veth pairs, "
        "forward with xpfdp (or the kernel, --mode kernel), run TCP bulk flows, a UDP "
        "request/response flow and pings with kernel sockets, print live status and a "
        "report, write report.json and a throughput plot. Needs root.",
        epilog=EXIT_CODES_HELP,
        formatter_class=_HelpFormatter,
    )
    demo.add_argument(
        "--mode", choices=("xpfdp", "kernel"), default="xpfdp", help="who forwards in the firewall"
    )
    demo.add_argument("--duration", type=_positive_float, default=10.0, help="bulk seconds")
    demo.add_argument("--flows", type=int, default=4, help="TCP bulk flows (last one IPv6)")
    demo.add_argument(
        "--shaper-mbps",
        type=float,
        default=400.0,
        help="WAN egress rate (0: no shaping)",
    )
    demo.add_argument("--mss-clamp", type=int, default=1360, help="TCP MSS clamp (bytes)")
    demo.add_argument("--out-dir", default="demo-out", help="report.json and throughput.png")
    demo.add_argument("--prometheus-port", type=_port, help="serve metrics on 127.0.0.1:PORT")
    return parser


def _message(exc: BaseException) -> str:
    """One line for an error: an OSError's own sentence without its "[Errno N]" prefix."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is None:
        return exc.strerror
    return str(exc)


def _summary(snapshot: dict) -> str:
    total = snapshot.get("total", snapshot)
    drops = ", ".join(f"{k} {v}" for k, v in sorted(total.get("drops", {}).items())) or "none"
    sessions = total.get("sessions", {})
    return (
        f"forwarded {total.get('tx_packets', 0):,} of {total.get('rx_packets', 0):,} packets; "
        f"sessions created {sessions.get('created', 0):,} expired "
        f"{sessions.get('expired', 0):,}; drops: {drops}"
    )


def forward(args) -> int:
    """Body of `xpfdp forward`."""
    from xpfdp.firewall import ConfigError, dnat_summary, load_config, neighbour_summary

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"xpfdp: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check:
        print(f"{args.config}: OK ({config.lan.name} <-> {config.wan.name}); "
              f"{neighbour_summary(config)}")  # fmt: skip
        if config.dnat:
            print(dnat_summary(config))
        return 0
    return run_forwarder(
        config,
        duration_s=args.duration,
        prometheus_port=args.prometheus_port,
        quiet=args.quiet,
    )


def run_forwarder(
    config, *, duration_s: float | None = None, prometheus_port: int | None = None,
    quiet: bool = False,
) -> int:  # fmt: skip
    """Run the firewall of a validated config until `duration_s` passes, a signal arrives
    or a worker fails; one status line per second, a summary at the end. Returns the exit
    status: 0, or 128 + the signal number (a worker failure raises)."""
    from xpfdp.firewall import build_forwarder
    from xpfdp.stats import StatusLine, serve_prometheus

    try:
        forwarder = build_forwarder(config)
    except (XpfdpError, OSError, ValueError) as exc:  # no interface, privileges, XDP owner
        print(f"xpfdp: cannot start the forwarder: {_message(exc)}", file=sys.stderr)
        return EXIT_START
    with forwarder as fw, contextlib.ExitStack() as stack:
        if prometheus_port is not None:
            try:
                server = stack.enter_context(serve_prometheus(fw.stats, prometheus_port))
            except (RuntimeError, XpfdpError) as exc:  # no client library, port in use
                print(f"xpfdp: {_message(exc)}", file=sys.stderr)
                return EXIT_CONFIG
            print(f"prometheus: http://127.0.0.1:{server.port}/metrics", flush=True)
        fw.start()
        print(f"forwarding {config.lan.name} <-> {config.wan.name} "
              f"({len(fw.pipelines)} worker(s))", flush=True)  # fmt: skip
        status = StatusLine()
        status.update(fw.stats())
        start = time.monotonic()
        lost: list[str] = []
        while fw.running and not fw.errors and fw.signalled is None and not lost:
            left = duration_s - (time.monotonic() - start) if duration_s else 1.0
            if left <= 0:
                break
            time.sleep(min(1.0, left))
            lost = fw.check_links()
            line = status.update(fw.stats())
            if line and not quiet:
                print(line, flush=True)
        fw.stop()
        print(_summary(fw.stats()), flush=True)
        signalled = fw.signalled
    if lost:
        print(f"xpfdp: stopped: interface {', '.join(lost)} was deleted", file=sys.stderr)
        return EXIT_LINK_LOST
    return 128 + signalled if signalled else 0


def detach(args) -> int:
    """Body of `xpfdp detach`: one line per interface."""
    from xpfdp import bpf
    from xpfdp.netns import inside

    status = 0
    try:
        with inside(args.namespace):
            for name in args.interfaces:
                try:
                    found = bpf.detach(name, force=args.force)
                except (XpfdpError, ValueError) as exc:
                    print(f"xpfdp: {_message(exc)}", file=sys.stderr)
                    status = EXIT_NOT_DETACHED
                    continue
                if found.state == "none":
                    print(f"{name}: no XDP program attached")
                else:
                    print(f"{name}: detached XDP program id {found.prog_id} "
                          f"({found.prog_name!r}, {found.mode} mode)")  # fmt: skip
    except (XpfdpError, OSError) as exc:  # missing namespace, no privileges
        print(f"xpfdp: {_message(exc)}", file=sys.stderr)
        return EXIT_START
    return status


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `xpfdp` console script."""
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="xpfdp: %(levelname)s: %(message)s")
    if args.command == "forward":
        return forward(args)
    if args.command == "detach":
        return detach(args)
    from xpfdp.demo.run import main_demo

    return main_demo(args)


if __name__ == "__main__":
    sys.exit(main())

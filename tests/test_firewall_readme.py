"""The README example of the firewall section runs as written (no root)."""

from __future__ import annotations


def test_readme_firewall_example(capsys):
    from scapy.all import IP, TCP, Ether

    from xpfdp.firewall import build_pipeline, parse_config
    from xpfdp.pcap import FrameBatch
    from xpfdp.ports import MemPort, Umem
    from xpfdp.stats import StatusLine, render_prometheus

    config = parse_config(
        {
            "lan": {"interface": "lan0", "addresses": ["10.10.1.1/24"], "mac": "02:00:00:00:01:01"},
            "wan": {"interface": "wan0", "addresses": ["10.10.2.1/24"], "mac": "02:00:00:00:02:01"},
            "neighbours": [
                {"interface": "lan", "address": "10.10.1.2", "mac": "02:00:00:00:01:02"},
                {"interface": "wan", "address": "10.10.2.2", "mac": "02:00:00:00:02:02"},
            ],
            "routes": [{"destination": "0.0.0.0/0", "interface": "wan", "gateway": "10.10.2.2"}],
            "mss": {"clamp_bytes": 1360},
            "cos": {"rate_mbps": 100},
        }
    )
    syn = (
        Ether(src="02:00:00:00:01:02", dst="02:00:00:00:01:01")
        / IP(src="10.10.1.2", dst="10.10.2.2")
        / TCP(sport=40000, dport=80, flags="S", options=[("MSS", 1460)])
    )
    umem = Umem(1024)
    lan = MemPort(umem, FrameBatch.from_frames([bytes(syn)]))
    wan = MemPort(umem, None, capture=16)
    pipe = build_pipeline(config, lan, wan)  # the same stages `xpfdp forward` runs
    status = StatusLine()
    status.update(pipe.stats(), now_s=0.0)
    pipe.run(until_idle=True)
    for _ in range(10):  # let the shaper release what it holds
        pipe.poll()
    out = Ether(wan.captured()[0])
    print(out[IP].src, out[TCP].sport, dict(out[TCP].options)["MSS"])  # 10.10.2.1 20xxx 1360
    print(status.update(pipe.stats(), now_s=1.0))
    print("\n".join(m for m in render_prometheus(pipe.stats()).splitlines() if "sessions" in m))
    pipe.close()
    umem.check_frames()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "10.10.2.1 20000 1360"
    assert "sessions 2" in lines[1] and "xpfdp_sessions_created_total 1.0" in lines

"""Hostile use of the public API: a Python stage attacking the loop's memory, views that
outlive their UMEM, values that would be truncated, CoS packets larger than a bucket.
Each must give a clear exception or a counted drop, never a crash or a silent change."""

import math

import numpy as np
import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from xpfdp import XpfdpError, csum, parse
from xpfdp._fast.icmp import IcmpRateLimit
from xpfdp.cos import XDP_DESC, FifoQueue, FlowFairQueue, Scheduler, TokenBucket
from xpfdp.firewall import SESSIONS_MAX, ConfigError, parse_config
from xpfdp.pcap import FrameBatch
from xpfdp.pipeline import CountStage, FlowCache, MssClampStage, ParseStage, Pipeline, PyStage
from xpfdp.ports import Burst, FrameLeakError, MemPort, RingSizeError, Umem, UmemBusyError
from xpfdp.route import RouteTable

FRAME = bytes(
    Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(flags="S", options=[("MSS", 1460)])
)


def one_stage_pipeline(fn, frames=4):
    umem = Umem(256)
    port = MemPort(umem, FrameBatch.from_frames([FRAME] * frames), capture=16)
    return umem, port, Pipeline([port], [ParseStage(), PyStage(fn), CountStage()])


def run_failing(pipe, exc_type, match):
    with pytest.raises(RuntimeError, match="user stage failed") as info:
        pipe.run(until_idle=True)
    assert isinstance(info.value.__cause__, exc_type)
    assert match in str(info.value.__cause__)
    assert pipe.stats()["drops"]["user_error"] >= 1


@pytest.mark.parametrize("value", [None, "other"])
def test_a_stage_cannot_replace_the_bursts_umem(value):
    other = Umem(16)

    def attack(burst):
        burst.umem = other if value == "other" else None

    umem, _port, pipe = one_stage_pipeline(attack)
    run_failing(pipe, AttributeError, "not writable")
    pipe.close(close_ports=True)
    umem.check_frames()


def test_a_stage_cannot_close_the_umem_or_a_port_under_the_loop():
    ports = []

    def close_umem(burst):
        burst.umem.close()

    def close_port(burst):
        ports[0].close()

    for attack, what in ((close_umem, "a UMEM"), (close_port, "a MemPort")):
        umem, port, pipe = one_stage_pipeline(attack)
        ports[:] = [port]
        run_failing(pipe, UmemBusyError, f"cannot close {what} while a pipeline is polling")
        assert not umem.closed and not port.closed
        pipe.close(close_ports=True)
        umem.check_frames()
        umem.close()  # allowed once the loop returned


def test_a_stage_cannot_close_or_reenter_its_pipeline():
    pipes = []

    def close_pipe(burst):
        pipes[0].close()

    def poll_again(burst):
        pipes[0].poll()

    for attack, match in ((close_pipe, "cannot close a pipeline"), (poll_again, "already")):
        umem, _port, pipe = one_stage_pipeline(attack)
        pipes[:] = [pipe]
        run_failing(pipe, RuntimeError, match)
        pipe.close(close_ports=True)
        umem.check_frames()


def test_views_keep_the_umem_memory_alive_after_close():
    seen = []

    def keep_views(burst):
        seen.append((burst.frame(0), burst.umem.buf))

    umem, port, pipe = one_stage_pipeline(keep_views, frames=1)
    pipe.run(until_idle=True)
    pipe.close(close_ports=True)
    umem.close()
    frame_view, whole = seen[0]
    assert bytes(frame_view[:14]) == FRAME[:14]  # still mapped: readable
    whole[:4] = 7  # and writable, without touching freed memory
    assert list(whole[:4]) == [7] * 4
    with pytest.raises(ValueError, match="closed"):
        _ = umem.buf
    del umem, port, pipe
    assert whole.sum() > 0  # the view alone keeps the mapping


# ---- values that used to be truncated ---------------------------------------------------


def parsed_batch():
    batch = FrameBatch.from_frames([FRAME])
    meta = np.zeros(1, dtype=parse.PKT_META)
    parse.parse_batch(batch.buf, batch.offsets, batch.lengths, meta)
    return batch.buf, batch.offsets, batch.lengths, meta


def test_per_frame_nat_ports_out_of_range_are_refused():
    args = parsed_batch()
    before = bytes(args[0])
    with pytest.raises(
        ValueError, match=r"per-frame port \(-1 = keep\) must be in -1..65535, not 70000"
    ):
        csum.rewrite_nat_batch(*args, sport=np.array([70000]))
    with pytest.raises(ValueError, match="not -2"):
        csum.rewrite_nat_batch(*args, dport=np.array([-2], np.int64))
    assert bytes(args[0]) == before


@pytest.mark.parametrize("mss", [1.5, "1400", 1400.0])
def test_non_integer_mss_is_a_type_error(mss):
    frame = bytearray(FRAME)
    with pytest.raises(TypeError, match="mss must be an integer, not"):
        csum.clamp_mss(frame, mss)
    with pytest.raises(TypeError, match="mss must be an integer"):
        csum.clamp_mss_batch(*parsed_batch(), mss)
    assert frame == FRAME


def test_integer_arguments_reject_floats_and_ranges():
    with pytest.raises(TypeError, match="hc must be an integer"):
        csum.incremental_update(1.5, 0, 0)
    with pytest.raises(ValueError, match=r"new must be in 0\.\.65535, not 65536"):
        csum.incremental_update(0, 0, 65536)
    with pytest.raises(TypeError, match="seed must be an integer"):
        csum.checksum_partial(b"ab", 0.5)
    assert csum.clamp_mss(bytearray(FRAME), np.uint16(1200))  # numpy integers are integers


BASE = {
    "lan": {"interface": "lan0", "addresses": ["10.10.1.1/24"], "mac": "02:00:00:00:01:01"},
    "wan": {"interface": "wan0", "addresses": ["10.10.2.1/24"], "mac": "02:00:00:00:02:01"},
}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"cos": {"rate_mbps": math.nan}}, "cos.rate_mbps: must be a finite number, got nan"),
        ({"cos": {"rate_mbps": math.inf}}, "cos.rate_mbps: must be a finite number, got inf"),
        (
            {"forwarder": {"sessions": 1099511627776}},
            f"forwarder.sessions: must be <= {SESSIONS_MAX}, got 1099511627776",
        ),
    ],
)
def test_config_values_that_cannot_work_are_config_errors(extra, message):
    with pytest.raises(ConfigError) as info:
        parse_config({**BASE, **extra})
    assert str(info.value) == message


def test_every_error_shares_one_base_class():
    for cls in (ConfigError, FrameLeakError, RingSizeError, UmemBusyError):
        assert issubclass(cls, XpfdpError)
    assert issubclass(ConfigError, ValueError) and issubclass(FrameLeakError, AssertionError)


# ---- CoS: a packet larger than a bucket -------------------------------------------------


def test_token_bucket_serves_an_oversize_packet_into_debt():
    tb = TokenBucket(1_000_000, 10_000)  # 1 MB/s, 10 kB deep
    tb.refill(0)
    assert tb.ns_until(50_000) == 0  # a full bucket is enough for any packet
    assert tb.try_consume(50_000, 0)
    assert (tb.tokens, tb.debt_bytes) == (0, 40_000)
    assert not tb.try_consume(1, 0)
    assert tb.ns_until(1) == 40_001_000  # debt repaid, then one byte: truthful
    tb.refill(40_001_000)
    assert (tb.tokens, tb.debt_bytes) == (1, 0) and tb.try_consume(1, 40_001_000)


def test_oversize_packet_does_not_block_a_fifo_class():
    sched = Scheduler(shaping_rate_bytes_per_s=1_000_000)  # 1 MB/s, 96 kB root bucket
    bulk = sched.add_queue(1, priority=5, transmit_rate_bytes_per_s=1_000_000, buffer_bytes=400_000)
    assert isinstance(bulk, FifoQueue)
    assert bulk.enqueue(200_000, addr=0) == 0  # admitted: larger than the root bucket
    assert bulk.enqueue(100, addr=4096) == 0
    out = np.zeros(64, XDP_DESC)
    now, sent = 0, []
    for _ in range(10):
        n = sched.drain(out, now_ns=now)
        sent += list(out["addr"][:n])
        if len(sent) == 2:
            break
        if n == 0:  # nothing eligible now: the scheduler must name a time, and keep it
            wake = sched.next_wakeup_ns()
            assert wake is not None and wake > now
            now = wake
    assert sent == [0, 4096]
    assert now == 104_100_000  # the root's 104 kB debt and the next packet at 1 MB/s


@pytest.mark.parametrize(
    "make",
    [
        lambda: Umem(64.5),
        lambda: Umem(64, frame_size=4096.0),
        lambda: Burst(1.5),
        lambda: MemPort(Umem(64), ring_size=64.0),
        lambda: RouteTable().add("10.0.0.0/8", 1.5),
        lambda: MssClampStage(1400.5),
        lambda: FlowCache(sets=8.0),
    ],
)
def test_constructors_reject_non_integer_sizes(make):
    with pytest.raises(TypeError, match="must be an integer, not float"):
        make()


def test_clock_and_count_arguments_reject_floats():
    """Times and counts given to the Python API are integers: a float (a clock read with
    time.time() * 1e9, say) is refused, never silently truncated."""
    umem = Umem(64)
    port = MemPort(umem, None)
    with pytest.raises(TypeError, match="burst_size must be an integer, not float"):
        Pipeline([port], [], burst_size=64.0)
    pipe = Pipeline([port], [])
    with pytest.raises(TypeError, match="now_ns must be an integer, not float"):
        pipe.poll(1.5e9)
    with pytest.raises(ValueError, match="now_ns must be in"):
        pipe.poll(-1)
    with pytest.raises(TypeError, match="max_packets must be an integer, not float"):
        pipe.run(max_packets=10.0)
    assert pipe.poll(10**9) == 0  # an integer clock still works
    pipe.close()
    bucket = TokenBucket(1000, 100)
    for call, name in ((lambda: bucket.refill(2.5), "now_ns"),
                       (lambda: bucket.try_consume(64, 2.5), "now_ns"),
                       (lambda: bucket.cost(64.7), "packet_len"),
                       (lambda: bucket.ns_until(3.0), "need_bytes")):  # fmt: skip
        with pytest.raises(TypeError, match=f"{name} must be an integer, not float"):
            call()
    sched = Scheduler(shaping_rate_bytes_per_s=10**6)
    with pytest.raises(TypeError, match="now_ns must be an integer, not float"):
        sched.drain(np.zeros(4, dtype=XDP_DESC), 1.0)
    with pytest.raises(TypeError, match="interval_ns must be an integer"):
        IcmpRateLimit(1e9, 6)
    with pytest.raises(ValueError, match="burst must be in"):
        IcmpRateLimit(10**9, 0)
    port.close()
    umem.check_frames()
    umem.close()


def test_cos_lengths_are_integers_and_rates_whole_numbers():
    queue = FlowFairQueue(seed=0)
    with pytest.raises(TypeError, match="packet length must be an integer, not float"):
        queue.enqueue(1500.5)
    with pytest.raises(TypeError, match="packet length must be an integer"):
        queue.push(1500.0)
    with pytest.raises(ValueError, match=r"rate_bytes_per_s must be a whole number, not 1\.5"):
        TokenBucket(1.5, 1000)
    with pytest.raises(ValueError, match="shaping_rate_bytes_per_s must be a whole number"):
        Scheduler(shaping_rate_bytes_per_s=math.nan)
    sched = Scheduler(shaping_rate_bytes_per_s=1e9 / 8)  # a whole float rate is fine
    with pytest.raises(ValueError, match="transmit_rate_bytes_per_s must be a whole number"):
        sched.add_queue(0, transmit_rate_bytes_per_s=1e6 / 3)
    with pytest.raises(TypeError, match="queue_id must be an integer"):
        sched.add_queue(0.0)
    assert sched.add_queue(0, transmit_rate_bytes_per_s=62.5e6, exact=True).n_items == 0

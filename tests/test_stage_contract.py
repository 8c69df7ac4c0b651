"""The stage contract (docs/stages.md): named verdicts and drop reasons, user-named drops,
what a user stage may set, and the stage-order check at construction. MemPort, no root;
frames are conserved after every test (umem_factory)."""

from __future__ import annotations

import numpy as np
import pytest
from scapy.all import IP, TCP, UDP, Ether

from xpfdp.cos import Scheduler
from xpfdp.pcap import FrameBatch
from xpfdp.pipeline import (
    DROP_REASONS,
    CosStage,
    CountStage,
    DropReason,
    Forwarder,
    L2Stage,
    NatStage,
    ParseStage,
    Pipeline,
    PyStage,
    RouteStage,
    SessionStage,
    Stage,
    TtlStage,
    Verdict,
    drop_reason,
    drop_reason_name,
    drop_reasons,
)
from xpfdp.ports import Burst, MemPort
from xpfdp.route import RouteTable


def udp_frames(n, dport=53):
    return FrameBatch.from_frames(
        [
            bytes(Ether() / IP(src="10.0.0.2", dst="192.0.2.1") / UDP(sport=1000 + i, dport=dport))
            for i in range(n)
        ]
    )


def two_ports(umem, n=8):
    a = MemPort(umem, udp_frames(n))
    b = MemPort(umem, None, capture=64)
    return a, b


def routed(a, b, stages, **kw):
    rt = RouteTable()
    rt.add("0.0.0.0/0", 0)
    return Pipeline([a, b], stages, routes=rt, next_hops=[(1, None, None)], **kw)


# ------------------------------------------------------------------ names


def test_verdicts_and_builtin_reasons_have_names():
    assert (Verdict.DROP, Verdict.PASS) == (-1, -2)
    assert Verdict.QUEUED < Verdict.PASS and Verdict.PENDING < Verdict.PASS
    assert drop_reasons()[: len(DROP_REASONS)] == DROP_REASONS
    assert len(set(DROP_REASONS)) == len(DROP_REASONS) == len(DropReason)
    assert drop_reason_name(DropReason.NO_ROUTE) == "no_route"
    assert drop_reason_name(DropReason.PARSE_TRUNC_L2) == "parse_error:trunc_l2"
    assert drop_reason_name(DropReason.COS_DROP_FLOW_SHARE) == "cos_drop:flow_share"
    for member in DropReason:
        assert drop_reason(drop_reason_name(member)) == member


def test_the_registry_gives_one_code_per_name_and_rejects_bad_names():
    code = drop_reason("test_contract_policer")
    assert code >= len(DROP_REASONS)
    assert drop_reason("test_contract_policer") == code
    assert drop_reason_name(code) == "test_contract_policer"
    assert drop_reasons()[code] == "test_contract_policer"
    for bad in ("", "Upper", "with space", "x" * 65):
        with pytest.raises(ValueError, match="drop reason"):
            drop_reason(bad)
    with pytest.raises(ValueError, match="unknown drop reason"):
        drop_reason_name(255)


# ------------------------------------------------------------------ user drops


def test_burst_drop_counts_under_the_named_reason(umem_factory):
    u = umem_factory(1024)
    a, b = two_ports(u, 8)

    def police(burst):
        ports = burst.meta["sport"][: burst.n]
        assert burst.drop(ports % 2 == 1, reason="test_policer") == 4
        assert burst.drop(np.array([0]), reason="test_other") == 1
        assert burst.drop(np.array([1]), reason="test_other") == 0  # already dropped

    pipe = routed(a, b, [ParseStage(), PyStage(police), RouteStage()])
    pipe.run(until_idle=True)
    st = pipe.stats()
    assert st["drops"] == {"test_policer": 4, "test_other": 1}
    assert st["stages"]["police"] == {"packets": 8, "drops": 5}
    assert st["stages"]["route"]["packets"] == 3 and len(b.captured()) == 3
    assert Forwarder([pipe], handle_signals=False).stats()["total"]["drops"] == st["drops"]
    pipe.close()


def test_burst_drop_validates_its_mask():
    burst = Burst(4)
    burst.n = 3
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        burst.drop(np.zeros(4, dtype=bool))
    with pytest.raises(IndexError, match="out of range"):
        burst.drop(np.array([3]))
    with pytest.raises(TypeError, match="bool or integer"):
        burst.drop(np.zeros(3))
    with pytest.raises(ValueError, match="drop reason"):
        burst.drop(np.array([0]), reason="Bad Name")
    assert burst.drop(np.array([0, 2]), reason="test_direct") == 2
    assert list(burst.verdict[:3]) == [Verdict.DROP, 0, Verdict.DROP]
    assert burst.reason[0] == burst.reason[2] == drop_reason("test_direct")


@pytest.mark.parametrize("bad", [Verdict.QUEUED, -7, -32768])
def test_a_user_stage_setting_an_internal_verdict_is_a_user_error(umem_factory, bad):
    u = umem_factory(1024)
    a, b = two_ports(u, 6)

    def sneaky(burst):
        burst.verdict[: burst.n] = 1
        burst.verdict[0] = bad
        burst.verdict[1] = Verdict.PASS

    pipe = Pipeline([a, b], [ParseStage(), PyStage(sneaky)])
    pipe.run(until_idle=True)
    st = pipe.stats()
    assert st["drops"] == {"user_error": 1, "pass_unsupported": 1}
    assert len(b.captured()) == 4 and st["stages"]["sneaky"]["drops"] == 1
    pipe.close()


def test_a_user_stage_cannot_undo_a_drop_or_take_a_queued_frame(umem_factory):
    u = umem_factory(1024)
    a = MemPort(u, udp_frames(6))
    b = MemPort(u, None, capture=64)
    sch = Scheduler(10**9)
    sch.add_queue(0, buffer_bytes=10**6)

    def first_dropped(burst):
        burst.drop(np.array([0]), reason="test_first")

    def meddle(burst):
        burst.verdict[: burst.n] = 1  # tries to revive packet 0 and to re-route queued ones
        burst.drop(np.arange(burst.n), reason="test_meddle")  # tries to drop queued ones

    stages = [ParseStage(), PyStage(first_dropped), RouteStage(), CosStage({1: sch})]
    pipe = routed(a, b, [*stages, PyStage(meddle)])
    pipe.run(until_idle=True)
    st = pipe.stats()
    assert st["drops"] == {"test_first": 1}
    assert st["stages"]["cos"]["admitted"] == 5 and len(b.captured()) == 5
    pipe.close()


# ------------------------------------------------------------------ stage order


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        (
            lambda: [RouteStage(), ParseStage()],
            "RouteStage needs 'parsed', provided by ParseStage, which must come before it",
        ),
        (
            lambda: [ParseStage(), L2Stage()],
            "L2Stage needs 'routed', which no stage provides (add a RouteStage before it)",
        ),
        (
            lambda: [ParseStage(), NatStage(), SessionStage(), RouteStage()],
            "NatStage needs 'has_decision', provided by SessionStage, which must come before it",
        ),
        (
            lambda: [ParseStage(), RouteStage(), PyStage(lambda b: None, "mark", needs=["x"])],
            "PyStage 'mark' needs 'x', which no stage provides",
        ),
    ],
)
def test_an_impossible_stage_order_is_refused(umem_factory, stages, message):
    u = umem_factory(64)
    a, b = MemPort(u, None), MemPort(u, None)
    rt = RouteTable()
    with pytest.raises(ValueError) as err:
        Pipeline([a, b], stages(), routes=rt, sessions=None)
    assert str(err.value).startswith(message)


def test_missing_resources_are_named(umem_factory):
    u = umem_factory(64)
    a = MemPort(u, None)
    with pytest.raises(ValueError, match="SessionStage needs 'sessions': pass Pipeline"):
        Pipeline([a], [ParseStage(), SessionStage()], routes=RouteTable())
    with pytest.raises(ValueError, match="RouteStage needs 'routes'"):
        Pipeline([a], [ParseStage(), RouteStage()])


def test_user_facts_and_python_stage_subclasses(umem_factory):
    u = umem_factory(1024)
    a, b = two_ports(u, 4)
    seen = []

    class Tagger(Stage):
        def __init__(self):
            super().__init__("tagger", needs=("gil", "parsed"), provides=("tagged",))

        def process(self, burst):
            burst.verdict[: burst.n] = 1

    def check(burst):
        seen.append(burst.n)

    pipe = Pipeline(
        [a, b],
        [ParseStage(), Tagger(), PyStage(check, needs=["tagged"]), TtlStage(), CountStage()],
    )
    pipe.run(until_idle=True)
    assert seen == [4] and len(b.captured()) == 4
    assert pipe.stats()["stages"]["count"]["packets"] == 4
    with pytest.raises(ValueError, match="PyStage 'check' needs 'tagged', provided by Tagger"):
        Pipeline([a, b], [ParseStage(), PyStage(check, needs=["tagged"]), Tagger()])
    pipe.close()


def test_a_python_stage_must_declare_the_gil(umem_factory):
    u = umem_factory(64)
    a = MemPort(u, None)

    class Silent(Stage):
        def __init__(self):
            super().__init__("silent")

        def process(self, burst):
            pass

    with pytest.raises(TypeError, match="needs 'gil'"):
        Pipeline([a], [Silent()])
    with pytest.raises(TypeError, match="abstract"):
        Stage()


def test_a_user_stage_before_routing_sees_pending_verdicts(umem_factory):
    u = umem_factory(1024)
    a, b = two_ports(u, 3)
    seen = []

    def look(burst):
        seen.extend(burst.verdict[: burst.n].tolist())

    pipe = routed(a, b, [ParseStage(), PyStage(look), RouteStage()])
    pipe.run(until_idle=True)
    assert seen == [Verdict.PENDING] * 3 and len(b.captured()) == 3
    pipe.close()


def test_tcp_frames_keep_their_meaning_across_stages(umem_factory):
    # Guards the named TCP flag bits: a SYN is clamped, an ACK is not.
    from xpfdp.pipeline import MssClampStage

    u = umem_factory(1024)
    syn = Ether() / IP(src="10.0.0.2", dst="192.0.2.1") / TCP(flags="S", options=[("MSS", 1460)])
    ack = Ether() / IP(src="10.0.0.2", dst="192.0.2.1") / TCP(flags="A", options=[("MSS", 1460)])
    a = MemPort(u, FrameBatch.from_frames([bytes(syn), bytes(ack)]))
    b = MemPort(u, None, capture=4)
    clamp = MssClampStage(1200)
    pipe = routed(a, b, [ParseStage(), RouteStage(), clamp])
    pipe.run(until_idle=True)
    out = [dict(Ether(x)[TCP].options)["MSS"] for x in b.captured()]
    assert out == [1200, 1460] and clamp.clamped == 1
    pipe.close()

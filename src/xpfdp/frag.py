"""Fragments through NAT: the per-worker table that gives later fragments their datagram's
decision.

Only a datagram's first fragment carries the L4 header, so only it can be matched to a
session. `FragTable` remembers that match under (source, destination, protocol, fragment
ID) for the datagram's later fragments, holds later fragments that arrive before the first
(up to `max_held_frames`) and hands them back once it arrives, and forgets a datagram once
all its bytes have passed or 30 s after it was first seen. A `Pipeline` with a
`SessionStage` uses one (`fragments=`, a default one otherwise); this module exposes the
same operations for tests and tools. `fragment_info(frame)` reads a frame's fragment
fields. With several workers, a table also records datagrams whose first fragment another
worker resolved, from the decision that worker sends in a note (`note_fragment`; later
fragments then get `NOTED` and that decision). See docs/fragments.md.
"""

from xpfdp._fast.frag import HELD, LIMIT, NOTED, STAT_NAMES, FragTable, fragment_info

__all__ = ["HELD", "LIMIT", "NOTED", "STAT_NAMES", "FragTable", "fragment_info"]

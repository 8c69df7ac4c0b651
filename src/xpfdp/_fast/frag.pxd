# Per-worker fragment table: which session decision the fragments of one IP datagram take.
#
# Only a datagram's first fragment carries the L4 header, so only it can be matched to a
# session. The table remembers that match under the fragment key (family, protocol, source,
# destination, fragment ID: 16 bits for IPv4, 32 from the IPv6 Fragment header) so every
# later fragment of the datagram gets the same NAT. Fragments that arrive before the first
# are held (their frames stay with the table) and handed back once the first is recorded.
#
# A plain struct and nogil functions: no allocation after frag_table_init, every slot in
# fixed arrays, limits on entries and held frames, time passed in as now_ns. Frames are
# opaque (addr, len, port) here; the pipeline owns what they mean.
#
# With several workers a datagram's first fragment may be resolved by another worker than
# the one its later fragments go to (docs/fragments.md); that worker sends a note with the
# session decision itself, which the table stores beside the entry (frag_noted) instead of
# a handle into a session table it does not have.

from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

from xpfdp._fast.lib.hash cimport mix64
from xpfdp._fast.meta cimport pkt_meta_t
from xpfdp._fast.session cimport sdecision_t

# frag_later results besides a session handle (>= 0).
cdef enum:
    FRAG_HELD = -1           # no decision yet: the frame is held by the table
    FRAG_LIMIT = -2          # refused: entry or held-frame limit reached
    FRAG_NOTED = -3          # the decision a note brought (copied to the caller's dec)

# Lists of frames the table hands back (frag_pop).
cdef enum:
    FRAG_LIST_RELEASED = 0   # their first fragment arrived: process them again
    FRAG_LIST_DROPPED = 1    # their entry timed out (or the table was drained)

ctypedef struct frag_key_t:
    uint8_t src[16]          # IPv4 in bytes 0..3, the rest zero
    uint8_t dst[16]
    uint32_t id              # IPv4 identification (16 bits) or IPv6 fragment ID
    uint8_t family           # 4 or 6
    uint8_t proto            # upper-layer protocol
    uint16_t pad             # zero (keys compare and hash as five 64-bit words)

ctypedef struct frag_info_t:
    frag_key_t key
    uint32_t offset_bytes    # where this fragment's data sits in the fragmentable part
    uint32_t data_bytes      # how many bytes of the fragmentable part it carries
    bint more                # more fragments follow (MF / M flag)

ctypedef struct frag_frame_t:
    uint64_t addr
    uint32_t len
    uint16_t port
    int32_t next             # next frame of the same list, -1 at the end

ctypedef struct frag_entry_t:
    frag_key_t key
    int64_t handle           # the first fragment's session handle; -1 until it arrives;
                             # FRAG_NOTED: the decision a note brought is in dec[entry]
    uint64_t created_ns      # the timeout runs from here and is never extended (as Linux)
    uint32_t seen_bytes      # data bytes of the fragments that took the decision
    uint32_t total_bytes     # the datagram's fragmentable length once the last is seen, or 0
    int32_t hnext            # hash chain
    int32_t older            # age list (creation order)
    int32_t newer
    int32_t held_head        # frames held for this datagram, arrival order
    int32_t held_tail
    uint32_t n_held

ctypedef struct frag_stats_t:
    uint64_t recorded        # first fragments recorded
    uint64_t translated      # later fragments given their first fragment's decision
    uint64_t held            # later fragments held because their first had not arrived
    uint64_t released        # held fragments handed back when their first arrived
    uint64_t timed_out       # held fragments dropped when their entry timed out
    uint64_t dropped_limit   # fragments refused at the entry or held-frame limit
    uint64_t completed       # entries removed because every byte had passed
    uint64_t expired         # entries removed at the timeout
    uint64_t noted           # first fragments recorded from another worker's note

ctypedef struct frag_table_t:
    frag_entry_t* e
    sdecision_t* dec         # per entry slot: the decision of a noted entry (else unused)
    int32_t* buckets
    uint32_t bucket_mask
    uint32_t max_entries
    uint32_t n_entries
    int32_t free_entry
    int32_t oldest
    int32_t newest
    frag_frame_t* frames
    uint32_t max_held
    uint32_t n_held          # frames held for entries (not counting the out lists)
    int32_t free_frame
    int32_t out_head[2]      # FRAG_LIST_* lists of frames to hand back
    int32_t out_tail[2]
    uint32_t n_out[2]
    uint64_t timeout_ns
    frag_stats_t st


cdef int frag_table_init(frag_table_t* t, uint32_t max_entries, uint32_t max_held,
                         uint64_t timeout_ns) noexcept nogil
cdef void frag_table_free(frag_table_t* t) noexcept nogil
cdef bint frag_info_from(const uint8_t* frame, uint32_t frame_len, const pkt_meta_t* m,
                         frag_info_t* out) noexcept nogil
cdef int frag_first(frag_table_t* t, const frag_info_t* f, int64_t handle,
                    uint64_t now_ns) noexcept nogil
cdef int frag_noted(frag_table_t* t, const frag_info_t* f, const sdecision_t* dec,
                    uint64_t now_ns) noexcept nogil
cdef int64_t frag_later(frag_table_t* t, const frag_info_t* f, uint64_t addr, uint32_t length,
                        uint16_t port, uint64_t now_ns, sdecision_t* dec) noexcept nogil
cdef uint32_t frag_expire(frag_table_t* t, uint64_t now_ns) noexcept nogil
cdef void frag_drain(frag_table_t* t) noexcept nogil
cdef bint frag_pop(frag_table_t* t, int which, uint64_t* addr, uint32_t* length,
                   uint16_t* port) noexcept nogil




cdef inline uint64_t frag_key_hash(const frag_key_t* k) noexcept nogil:
    """Hash of a fragment key (40 bytes: five words, pad zeroed): the table's buckets and,
    with several workers, the datagram's fragment owner (the same on every worker)."""
    cdef const uint64_t* w = <const uint64_t*>k
    return mix64(w[0] * 0x9E3779B97F4A7C15ULL + w[1] * 0xC2B2AE3D27D4EB4FULL
                 + w[2] * 0x165667B19E3779F9ULL + w[3] * 0xD6E8FEB86659FD93ULL
                 + w[4] * 0xFF51AFD7ED558CCDULL)


cdef class FragTable:
    cdef frag_table_t t

# Included by pipeline.pyx (one extension module, so stage calls stay direct C calls).

@cython.final
cdef class L2Stage(Stage):
    """Rewrite Ethernet source and destination MACs from the packet's next hop.

    Needs "routed" (ctx `nh`); a next hop without MACs leaves the frame as it is. A next
    hop resolved through the NeighbourTable whose neighbour has no MAC yet asks the control
    thread to have the kernel resolve it; the packet waits in the pipeline's bounded hold
    (sent when the MAC arrives) or, when that is full, is dropped (neighbour_unresolved).
    """

    def __init__(self):
        self.name = "l2"
        self.needs = ("routed",)
        self.provides = ()

    cdef int run(self, Pipeline p, Burst b, uint32_t ingress) noexcept nogil:
        cdef uint32_t i
        cdef int32_t nh
        cdef int64_t slot
        cdef uint64_t word
        cdef uint8_t* f
        cdef const uint8_t* addr
        cdef uint8_t af
        cdef nexthop_t* hop
        for i in range(b.n):
            if verdict_settled(b.v[i]):
                continue
            self.c_packets += 1
            nh = p.ctx[i].nh
            if nh < 0 or b.d[i].len < 14:
                continue
            hop = &p.nh[nh]
            if not hop.has_macs:
                continue
            f = b.umem.area + b.d[i].addr
            if hop.kind == NH_STATIC:
                memcpy(f, hop.dst_mac, 6)
            else:
                if hop.kind == NH_GATEWAY:
                    slot = hop.neigh
                    addr = p.neighbours.e[slot].addr
                    af = p.neighbours.e[slot].af
                else:
                    addr = b.m[i].dst
                    af = b.m[i].ip_version
                    slot = p.neighbours.find(<uint8_t>hop.port, af, addr)
                word = xpfdp_load_u64(&p.neighbours.e[slot].lladdr) if slot >= 0 else 0
                if not neigh_valid(word):
                    p.want_neighbour(<uint8_t>hop.port, af, addr)
                    if not p.hold(b, i, ingress, nh, hop.neigh if hop.kind == NH_GATEWAY
                                  else -1, af, addr):
                        drop_packet(b, i, DROP_NEIGH_UNRESOLVED)
                        self.c_drops += 1
                    continue
                memcpy(f, &word, 6)
            memcpy(f + 6, hop.src_mac, 6)
        return 0

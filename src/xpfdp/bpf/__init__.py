"""Load, attach and drive the xpfdp XDP redirect program through libbpf (cffi).

One `XdpProgram` owns one loaded copy of `xsk_redirect.o` attached to one interface, so
every interface has its own XSKMAP keyed by RX queue and its own counters. Attach tries
native mode and falls back to generic for that interface only. Closing the program
detaches it (only if it is still ours) and clears the map entries it wrote.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

from xpfdp._libbpf_cffi import ffi, lib
from xpfdp.bpf.owner import OwnerLock, XdpOwnership, is_our_program
from xpfdp.errors import XpfdpError
from xpfdp.netns import effective_caps as _effective_caps
from xpfdp.netns import enter_fd

log = logging.getLogger(__name__)

OBJECT_PATH = Path(__file__).with_name("xsk_redirect.o")
PROGRAM_NAME = "xpfdp_xsk_redirect"
ABI_VERSION = lib.XPFDP_XSK_ABI_VERSION
MAX_QUEUES = lib.XPFDP_XSK_MAX_QUEUES

COUNTER_NAMES = (
    "redirected", "no_socket", "pass_arp", "pass_nd", "pass_non_ip", "pass_off", "pass_local",
    "pass_multicast", "port_forward",
)  # fmt: skip
LOCAL_MAX = lib.XPFDP_LOCAL_MAX
FORWARDED_PORTS_MAX = lib.XPFDP_FWD_MAX
FORWARD_PROTOCOLS = {6: "tcp", 17: "udp"}  # the L4 protocols a port forward can hold
MODES = ("auto", "native", "generic")

# Capability bits (linux/capability.h) needed to attach XDP and create AF_XDP sockets.
_CAP_NET_ADMIN = 12
_CAP_NET_RAW = 13
_CAP_SYS_ADMIN = 21
_CAP_BPF = 39


@contextlib.contextmanager
def _inside_netns(netns_fd: int) -> Iterator[None]:
    """Run the body in the program's namespace: rtnetlink (attach, query, detach) works in
    the calling thread's namespace and ifindexes are per namespace."""
    with enter_fd(netns_fd, "the XDP program's network namespace"):
        yield


class XdpError(XpfdpError, OSError):
    """An XDP or BPF operation failed; the message says which and why."""


class ForeignXdpProgramError(XdpError):
    """The interface already runs an XDP program that this forwarder may not replace:
    another tool's, or one a running xpfdp process owns (the message names its pid)."""


def require_capabilities() -> None:
    """Raise PermissionError naming the missing capability before any BPF or XDP syscall."""
    caps = _effective_caps()
    if not caps >> _CAP_NET_ADMIN & 1:
        raise PermissionError(
            "xpfdp needs CAP_NET_ADMIN to attach XDP programs (run as root or grant it)"
        )
    if not caps >> _CAP_NET_RAW & 1:
        raise PermissionError("xpfdp needs CAP_NET_RAW to create AF_XDP sockets")
    if not (caps >> _CAP_BPF & 1 or caps >> _CAP_SYS_ADMIN & 1):
        raise PermissionError("xpfdp needs CAP_BPF (or CAP_SYS_ADMIN) to load BPF programs")


def ifindex_of(ifname: str) -> int:
    """Index of `ifname` in the calling thread's network namespace, or ValueError."""
    try:
        return socket.if_nametoindex(ifname)
    except OSError:
        raise ValueError(f"unknown interface {ifname!r} (not in this network namespace)") from None


def _strerror(err: int) -> str:
    buf = ffi.new("char[128]")
    lib.libbpf_strerror(err, buf, 128)
    return ffi.string(buf).decode()


def _check(ret: int, what: str) -> int:
    if ret < 0:
        raise XdpError(-ret, f"{what}: {_strerror(ret)}")
    return ret


def query_xdp(ifindex: int) -> tuple[int, str]:
    """(program id, attach mode name) of the XDP program on `ifindex`; (0, "none") if none."""
    opts = ffi.new("struct bpf_xdp_query_opts *")
    opts.sz = ffi.sizeof("struct bpf_xdp_query_opts")
    _check(lib.bpf_xdp_query(ifindex, 0, opts), f"query XDP on ifindex {ifindex}")
    mode = {
        lib.XDP_ATTACHED_NONE: "none",
        lib.XDP_ATTACHED_DRV: "native",
        lib.XDP_ATTACHED_SKB: "generic",
        lib.XDP_ATTACHED_HW: "offload",
        lib.XDP_ATTACHED_MULTI: "multi",
    }.get(opts.attach_mode, "unknown")
    return opts.prog_id, mode


def _prog_id_of_fd(fd: int) -> int:
    info = ffi.new("struct bpf_prog_info *")
    size = ffi.new("uint32_t *", ffi.sizeof("struct bpf_prog_info"))
    _check(lib.bpf_obj_get_info_by_fd(fd, info, size), "read BPF program info")
    return info.id


def _prog_name_of_id(prog_id: int) -> str:
    fd = lib.bpf_prog_get_fd_by_id(prog_id)
    if fd < 0:
        return "?"
    try:
        info = ffi.new("struct bpf_prog_info *")
        size = ffi.new("uint32_t *", ffi.sizeof("struct bpf_prog_info"))
        if lib.bpf_obj_get_info_by_fd(fd, info, size) < 0:
            return "?"
        return ffi.string(info.name).decode(errors="replace")
    finally:
        lib.close(fd)


def _inspect(ifname: str, ifindex: int, lock: OwnerLock) -> XdpOwnership:
    """Classify what is attached to `ifname`, taking `lock` if nobody alive holds it (the
    caller keeps it when it goes on to attach, closes it otherwise)."""
    free = lock.acquire()
    prog_id, mode = query_xdp(ifindex)
    name = _prog_name_of_id(prog_id) if prog_id else ""
    if not free:
        state = "live"
    elif not prog_id:
        state = "none"
    else:
        state = "stale" if is_our_program(name, PROGRAM_NAME) else "foreign"
    pid = lock.recorded_pid() if state == "live" else None
    return XdpOwnership(ifname, prog_id, mode, name, state, pid)


def inspect(ifname: str) -> XdpOwnership:
    """What is attached to `ifname` (in the calling thread's namespace) and who owns it.
    Takes nothing: the ownership lock is released again before returning."""
    ifindex = ifindex_of(ifname)
    lock = OwnerLock(ifindex, ifname)
    try:
        return _inspect(ifname, ifindex, lock)
    finally:
        lock.close()


def check_interfaces(ifnames) -> list[XdpOwnership]:
    """Inspect every interface before anything is attached; raise one
    ForeignXdpProgramError listing each interface a forwarder cannot take."""
    found = [inspect(name) for name in ifnames]
    problems = [p for p in (f.problem() for f in found) if p]
    if problems:
        raise ForeignXdpProgramError(errno.EEXIST, "; ".join(problems))
    return found


def _xdp_opts_with_old(prog_id: int):
    fd = lib.bpf_prog_get_fd_by_id(prog_id)
    if fd < 0:
        raise XdpError(-fd, f"open XDP program id {prog_id}: {_strerror(fd)}")
    opts = ffi.new("struct bpf_xdp_attach_opts *")
    opts.sz = ffi.sizeof("struct bpf_xdp_attach_opts")
    opts.old_prog_fd = fd
    return opts, fd


def _replace_exactly(ifindex: int, prog_fd: int, mode_flag: int, old_prog_id: int) -> int:
    """Attach `prog_fd` in place of program `old_prog_id` in one step (XDP_FLAGS_REPLACE:
    the kernel refuses if another program is attached by then). Returns libbpf's code."""
    opts, fd = _xdp_opts_with_old(old_prog_id)
    try:
        return lib.bpf_xdp_attach(ifindex, prog_fd, mode_flag | lib.XDP_FLAGS_REPLACE, opts)
    finally:
        lib.close(fd)


_MODE_FLAGS = {"native": "XDP_FLAGS_DRV_MODE", "generic": "XDP_FLAGS_SKB_MODE"}


def _detach_exactly(ifindex: int, found: XdpOwnership) -> None:
    """Detach program `found.prog_id` only if it is still the one attached."""
    flag = getattr(lib, _MODE_FLAGS[found.mode]) if found.mode in _MODE_FLAGS else 0
    opts, fd = _xdp_opts_with_old(found.prog_id)
    try:
        _check(lib.bpf_xdp_detach(ifindex, flag | lib.XDP_FLAGS_REPLACE, opts),
               f"detach XDP program id {found.prog_id} from {found.ifname}")  # fmt: skip
    finally:
        lib.close(fd)


def detach(ifname: str, *, force: bool = False) -> XdpOwnership:
    """Remove the XDP program from `ifname` (calling thread's namespace) if a dead xpfdp
    left it, or any program with `force`; never one a live xpfdp process owns. Returns
    what was there; raises ForeignXdpProgramError when it is not removable."""
    ifindex = ifindex_of(ifname)
    lock = OwnerLock(ifindex, ifname)
    try:
        found = _inspect(ifname, ifindex, lock)
        if found.state == "live" or (found.state == "foreign" and not force):
            raise ForeignXdpProgramError(errno.EBUSY, found.problem())
        if found.state != "none":
            _detach_exactly(ifindex, found)
        return found
    finally:
        lock.close()


def object_abi_version(path: Path = OBJECT_PATH) -> int:
    """The ABI version compiled into a BPF object (its `xpfdp_abi_version` in .rodata)."""
    obj = _open(path)
    try:
        return _rodata_abi(obj)
    finally:
        lib.bpf_object__close(obj)


def _open(path: Path):
    if not path.exists():
        raise FileNotFoundError(
            f"BPF object {path} is missing: run `make build` (clang compiles bpf/*.bpf.c)"
        )
    obj = lib.bpf_object__open_file(str(path).encode(), ffi.NULL)
    err = lib.libbpf_get_error(obj)
    if err:
        raise XdpError(-err, f"open BPF object {path}: {_strerror(err)}")
    return obj


def _rodata_abi(obj) -> int:
    rodata = lib.bpf_object__find_map_by_name(obj, b".rodata")
    if rodata == ffi.NULL:
        raise XdpError(errno.ENOENT, "BPF object has no .rodata ABI version")
    size = ffi.new("size_t *")
    value = lib.bpf_map__initial_value(rodata, size)
    if value == ffi.NULL or size[0] < 4:
        raise XdpError(errno.ENOENT, "BPF object has no .rodata ABI version")
    return ffi.cast("uint32_t *", value)[0]


def check_forwarded_port(proto: int, port: int) -> None:
    """ValueError unless (`proto`, `port`) can be a port forward's: TCP (6) or UDP (17), an
    integer port in 1..65535."""
    if isinstance(proto, bool) or proto not in FORWARD_PROTOCOLS:
        raise ValueError(f"proto must be 6 (TCP) or 17 (UDP), got {proto!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be an integer in 1..65535, got {port!r}")


class XdpProgram:
    """The redirect program loaded and attached to one interface.

    `mode` is "native", "generic" or "auto" (native, falling back to generic for this
    interface only). The program starts with redirection on, non-IP traffic passed to
    the kernel and local delivery off. Use as a context manager: leaving detaches it and
    clears the XSKMAP.
    """

    def __init__(
        self,
        ifname: str,
        mode: str = "auto",
        *,
        pass_non_ip: bool = True,
        object_path: Path = OBJECT_PATH,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        require_capabilities()
        self.ifname = ifname
        self.ifindex = ifindex_of(ifname)
        self._obj = ffi.NULL
        self._attached_flags: int | None = None
        self._queues: set[int] = set()
        self.mode = ""
        self._owner = OwnerLock(self.ifindex, ifname)
        self.replaced: XdpOwnership | None = None  # a dead xpfdp's program we took over
        try:
            found = _inspect(ifname, self.ifindex, self._owner)
            if found.problem():
                raise ForeignXdpProgramError(errno.EEXIST, found.problem())
            self._obj = _open(object_path)
        except BaseException:
            self._owner.close()
            raise
        if found.state == "stale":
            self.replaced = found
        # Detach must happen in this namespace, whichever thread closes the program.
        self._netns_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            abi = _rodata_abi(self._obj)
            if abi != ABI_VERSION:
                raise XdpError(
                    errno.EPROTO,
                    f"BPF object ABI {abi} != extension ABI {ABI_VERSION}: "
                    "stale build, run `make build`",
                )
            _check(lib.bpf_object__load(self._obj), f"load {object_path.name}")
            prog = lib.bpf_object__find_program_by_name(self._obj, PROGRAM_NAME.encode())
            self._prog_fd = lib.bpf_program__fd(prog)
            self._xsks_fd = self._map_fd("xsks_map")
            self._ctrl_fd = self._map_fd("xsk_ctrl")
            self._counters_fd = self._map_fd("xsk_counters")
            self._local_fd = self._map_fd("local_addrs")
            self._fwd_fd = self._map_fd("fwd_ports")
            self._ctrl = {"redirect": True, "pass_non_ip": pass_non_ip, "local_delivery": False}
            self.set_ctrl()
            self.prog_id = _prog_id_of_fd(self._prog_fd)
            self._attach(mode)
        except BaseException:
            self.close()
            raise

    def _map_fd(self, name: str) -> int:
        m = lib.bpf_object__find_map_by_name(self._obj, name.encode())
        if m == ffi.NULL:
            raise XdpError(errno.ENOENT, f"BPF object has no map {name!r}")
        return lib.bpf_map__fd(m)

    def _attach(self, mode: str) -> None:
        tries = {"native": ["native"], "generic": ["generic"], "auto": ["native", "generic"]}
        errors = []
        stale = self.replaced
        if stale is not None and stale.mode in tries[mode]:
            tries[mode] = [stale.mode]  # the kernel replaces in place only in the same mode
        elif stale is not None:
            _detach_exactly(self.ifindex, stale)  # dead owner, other mode: not atomic
            stale = None
        for attempt in tries[mode]:
            flag = lib.XDP_FLAGS_DRV_MODE if attempt == "native" else lib.XDP_FLAGS_SKB_MODE
            if stale is not None:
                ret = _replace_exactly(self.ifindex, self._prog_fd, flag, stale.prog_id)
            else:
                flags = flag | lib.XDP_FLAGS_UPDATE_IF_NOEXIST
                ret = lib.bpf_xdp_attach(self.ifindex, self._prog_fd, flags, ffi.NULL)
            if ret == 0:
                self._attached_flags = flag
                self.mode = attempt
                self._owner.record(self.prog_id)
                if self.replaced is not None:
                    log.warning(
                        "%s: replaced XDP program id %d left by a dead xpfdp process "
                        "(%s mode) with id %d", self.ifname, self.replaced.prog_id,
                        self.replaced.mode, self.prog_id,
                    )  # fmt: skip
                return
            errors.append(f"{attempt}: {_strerror(ret)}")
        raise XdpError(
            errno.EOPNOTSUPP,
            f"cannot attach XDP to {self.ifname} in {mode} mode ({'; '.join(errors)})",
        )

    def set_ctrl(
        self,
        *,
        redirect: bool | None = None,
        pass_non_ip: bool | None = None,
        local_delivery: bool | None = None,
    ) -> None:
        """Switch redirection on/off, choose whether non-IP frames go to the kernel, and
        whether packets for the host itself do (its addresses in the local map, IP
        multicast/broadcast, IPv6 link-local destinations). None keeps a setting."""
        for name, value in (("redirect", redirect), ("pass_non_ip", pass_non_ip),
                            ("local_delivery", local_delivery)):  # fmt: skip
            if value is not None:
                self._ctrl[name] = bool(value)
        ctrl = ffi.new("struct xpfdp_xsk_ctrl *")
        ctrl.abi_version = ABI_VERSION
        ctrl.redirect = int(self._ctrl["redirect"])
        ctrl.pass_non_ip = int(self._ctrl["pass_non_ip"])
        ctrl.local_delivery = int(self._ctrl["local_delivery"])
        key = ffi.new("uint32_t *", 0)
        _check(lib.bpf_map_update_elem(self._ctrl_fd, key, ctrl, 0), "update ctrl map")

    @staticmethod
    def _local_key(address):
        ip = ipaddress.ip_address(address)
        key = ffi.new("struct xpfdp_local_key *")
        key.family = ip.version
        ffi.memmove(key.addr, ip.packed, len(ip.packed))
        return key

    def set_local(self, address, nat_ports: tuple[int, int] | None = None) -> None:
        """Mark `address` as the host's own: with local delivery on, packets to it go to
        the kernel. `nat_ports` (lo, hi): the address is also a SNAT address, so TCP/UDP
        replies to those ports (and ICMP other than echo requests) stay with the
        forwarder."""
        value = ffi.new("struct xpfdp_local_value *")
        if nat_ports is not None:
            lo, hi = nat_ports
            if not 1 <= lo <= hi <= 65535:
                raise ValueError(f"nat_ports must be 1 <= lo <= hi <= 65535, got {nat_ports}")
            value.nat_port_lo, value.nat_port_hi = lo, hi
        ret = lib.bpf_map_update_elem(self._local_fd, self._local_key(address), value, 0)
        if ret == -errno.E2BIG:
            raise XdpError(errno.E2BIG, f"local address map full ({LOCAL_MAX} addresses)")
        _check(ret, f"add local address {address}")

    def remove_local(self, address) -> None:
        """Forget `address` as one of the host's own (no error if it was not there)."""
        ret = lib.bpf_map_delete_elem(self._local_fd, self._local_key(address))
        if ret < 0 and ret != -errno.ENOENT:
            _check(ret, f"remove local address {address}")

    def is_local(self, address) -> tuple[int, int] | None:
        """None if `address` is not in the local map, else its NAT port range ((0, 0):
        not a NAT address)."""
        value = ffi.new("struct xpfdp_local_value *")
        if lib.bpf_map_lookup_elem(self._local_fd, self._local_key(address), value) < 0:
            return None
        return value.nat_port_lo, value.nat_port_hi

    @staticmethod
    def _forward_key(address, proto: int, port: int):
        ip = ipaddress.ip_address(address)
        check_forwarded_port(proto, port)
        key = ffi.new("struct xpfdp_fwd_key *")
        key.family = ip.version
        key.proto = proto
        key.port = port
        ffi.memmove(key.addr, ip.packed, len(ip.packed))
        return key

    def set_forwarded_port(self, address, proto: int, port: int) -> None:
        """Keep TCP (`proto` 6) or UDP (17) packets to `address`:`port` with the AF_XDP
        socket although `address` is the host's own: a port forward (DNAT) listens there.
        ICMP errors quoting packets sent from that port stay with the socket too. Only
        matters while local delivery is on and `address` is in the local map."""
        value = ffi.new("uint32_t *", 1)
        ret = lib.bpf_map_update_elem(self._fwd_fd, self._forward_key(address, proto, port),
                                      value, 0)  # fmt: skip
        if ret == -errno.E2BIG:
            raise XdpError(errno.E2BIG,
                           f"forwarded port map full ({FORWARDED_PORTS_MAX} entries)")  # fmt: skip
        _check(ret, f"add forwarded port {FORWARD_PROTOCOLS[proto]} {address} {port}")

    def clear_forwarded_port(self, address, proto: int, port: int) -> None:
        """Give `address`:`port` (`proto` 6 or 17) back to the host (no error if it was
        not forwarded)."""
        ret = lib.bpf_map_delete_elem(self._fwd_fd, self._forward_key(address, proto, port))
        if ret < 0 and ret != -errno.ENOENT:
            _check(ret, f"remove forwarded port {FORWARD_PROTOCOLS[proto]} {address} {port}")

    def is_forwarded_port(self, address, proto: int, port: int) -> bool:
        """True if `address`:`port` (`proto` 6 or 17) is in the forwarded port map."""
        value = ffi.new("uint32_t *")
        key = self._forward_key(address, proto, port)
        return lib.bpf_map_lookup_elem(self._fwd_fd, key, value) == 0

    def _check_queue(self, queue: int) -> None:
        if not 0 <= queue < MAX_QUEUES:
            raise ValueError(f"queue {queue} out of range [0, {MAX_QUEUES})")

    def set_socket(self, queue: int, xsk_fd: int) -> None:
        """Redirect frames arriving on RX `queue` to the AF_XDP socket `xsk_fd`."""
        self._check_queue(queue)
        key = ffi.new("uint32_t *", queue)
        value = ffi.new("uint32_t *", xsk_fd)
        _check(
            lib.bpf_map_update_elem(self._xsks_fd, key, value, 0),
            f"insert socket for queue {queue} into XSKMAP",
        )
        self._queues.add(queue)

    def clear_socket(self, queue: int) -> None:
        """Remove `queue`'s socket from the XSKMAP; its frames go back to the kernel."""
        self._check_queue(queue)
        key = ffi.new("uint32_t *", queue)
        ret = lib.bpf_map_delete_elem(self._xsks_fd, key)
        if ret < 0 and ret != -errno.ENOENT:
            _check(ret, f"delete queue {queue} from XSKMAP")
        self._queues.discard(queue)

    def counters(self) -> dict[str, int]:
        """Per-CPU counters of the program, summed over CPUs."""
        ncpu = lib.libbpf_num_possible_cpus()
        values = ffi.new("uint64_t[]", ncpu)
        key = ffi.new("uint32_t *")
        out = {}
        for idx, name in enumerate(COUNTER_NAMES):
            key[0] = idx
            _check(lib.bpf_map_lookup_elem(self._counters_fd, key, values), "read counters")
            out[name] = sum(values[i] for i in range(ncpu))
        return out

    @property
    def attached(self) -> bool:
        """True while this program is the one attached to the interface."""
        return self._attached_flags is not None and query_xdp(self.ifindex)[0] == self.prog_id

    def close(self) -> None:
        """Clear our XSKMAP entries, detach (if still ours) and unload. Idempotent."""
        if self._obj == ffi.NULL:
            return
        for queue in sorted(self._queues):
            self.clear_socket(queue)
        if self._attached_flags is not None:
            with _inside_netns(self._netns_fd):
                try:
                    current, _ = query_xdp(self.ifindex)
                except XdpError:
                    current = 0  # the interface is gone
                if current == self.prog_id:
                    lib.bpf_xdp_detach(self.ifindex, self._attached_flags, ffi.NULL)
            self._attached_flags = None
        lib.bpf_object__close(self._obj)
        self._obj = ffi.NULL
        os.close(self._netns_fd)
        self._owner.close()

    def __enter__(self) -> XdpProgram:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        if hasattr(self, "_obj"):
            self.close()

    def __repr__(self) -> str:
        prog_id = getattr(self, "prog_id", 0)
        return f"XdpProgram({self.ifname!r}, mode={self.mode!r}, prog_id={prog_id})"


class ProgramRegistry:
    """Attached XdpPrograms keyed by (network namespace, ifindex), reference counted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[int, int], list] = {}

    @staticmethod
    def _key(ifname: str) -> tuple[int, int]:
        return os.stat("/proc/thread-self/ns/net").st_ino, ifindex_of(ifname)

    def acquire(self, ifname: str, mode: str) -> XdpProgram:
        """The program on `ifname`, attaching it in `mode` if this process has none there."""
        key = self._key(ifname)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                program = XdpProgram(ifname, mode)
                entry = self._entries[key] = [program, 0]
            elif mode != "auto" and entry[0].mode != mode:
                raise ValueError(
                    f"{ifname} already runs the program in {entry[0].mode} mode, not {mode}"
                )
            entry[1] += 1
            return entry[0]

    def check_interfaces(self, ifnames) -> None:
        """Before anything is attached: every interface this process has no program on
        must be free or hold a dead xpfdp's program (replaced on attach); one
        ForeignXdpProgramError lists every one that is not (live owner's pid, or the
        `ip link` command for another tool's program)."""
        with self._lock:
            ours = set(self._entries)
        check_interfaces([name for name in ifnames if self._key(name) not in ours])

    def release(self, program: XdpProgram) -> None:
        """Drop one reference; detach the program when none remain."""
        with self._lock:
            for key, entry in list(self._entries.items()):
                if entry[0] is program:
                    entry[1] -= 1
                    if entry[1] == 0:
                        del self._entries[key]
                        program.close()
                    return

    def attached(self) -> list[XdpProgram]:
        """Programs currently attached by this process."""
        with self._lock:
            return [entry[0] for entry in self._entries.values()]


programs = ProgramRegistry()


__all__ = [
    "ABI_VERSION",
    "COUNTER_NAMES",
    "FORWARDED_PORTS_MAX",
    "FORWARD_PROTOCOLS",
    "MAX_QUEUES",
    "ForeignXdpProgramError",
    "ProgramRegistry",
    "XdpError",
    "XdpOwnership",
    "XdpProgram",
    "check_forwarded_port",
    "check_interfaces",
    "detach",
    "ifindex_of",
    "inspect",
    "object_abi_version",
    "programs",
    "query_xdp",
    "require_capabilities",
]

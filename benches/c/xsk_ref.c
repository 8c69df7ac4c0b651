// SPDX-License-Identifier: Apache-2.0
/* C reference for the xpfdp end-to-end benchmarks: the same work as examples/rxdrop.py,
 * txgen.py and l2fwd.py (MAC-swap reflector), written directly on libxdp + libbpf.
 *
 * It loads the same XDP program as xpfdp (src/xpfdp/bpf/xsk_redirect.o), uses the same
 * UMEM geometry (4096-byte frames, 256 B headroom), rings (1024, fill 2048), batch (64)
 * and copy-mode kick loop, and prints one line per second:
 *   <mode> <Mpps> Mpps cpu <percent of one CPU>% total <packets>
 *
 * usage: xsk_ref rxdrop|txgen|l2fwd IFNAME SECONDS BPF_OBJECT [DST_MAC SIZE]
 * build: cc -O2 -I bpf -o xsk_ref benches/c/xsk_ref.c -lxdp -lbpf
 */
#include <errno.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <xdp/xsk.h>

#include "xsk_abi.h"

#define FRAME_SIZE 4096u
#define HEADROOM 256u
#define RING 1024u
#define FILL_TARGET 2048u
#define NUM_FRAMES 4096u
#define BATCH 64u
#define COPY_TX_PER_KICK 32u

struct port {
	struct xsk_ring_prod fill, tx;
	struct xsk_ring_cons comp, rx;
	struct xsk_umem *umem;
	struct xsk_socket *xsk;
	uint8_t *area;
	uint64_t free_frames[NUM_FRAMES];
	uint32_t n_free;
	uint32_t outstanding;
	int fd;
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "xsk_ref: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

static int load_program(const char *path, int ifindex, struct bpf_object **out, int *xsks_fd)
{
	struct bpf_object *obj = bpf_object__open_file(path, NULL);
	struct xpfdp_xsk_ctrl ctrl = { .abi_version = XPFDP_XSK_ABI_VERSION, .redirect = 1,
				      .pass_non_ip = 1 };
	uint32_t zero = 0;
	int err;

	if (libbpf_get_error(obj))
		die("open BPF object", (int)libbpf_get_error(obj));
	err = bpf_object__load(obj);
	if (err)
		die("load BPF object", err);
	err = bpf_map_update_elem(bpf_map__fd(bpf_object__find_map_by_name(obj, "xsk_ctrl")),
				  &zero, &ctrl, 0);
	if (err)
		die("ctrl map", err);
	err = bpf_xdp_attach(ifindex,
			     bpf_program__fd(bpf_object__find_program_by_name(obj,
									      "xpfdp_xsk_redirect")),
			     XDP_FLAGS_DRV_MODE | XDP_FLAGS_UPDATE_IF_NOEXIST, NULL);
	if (err)
		die("attach XDP", err);
	*xsks_fd = bpf_map__fd(bpf_object__find_map_by_name(obj, "xsks_map"));
	*out = obj;
	return 0;
}

static void open_port(struct port *p, const char *ifname, uint32_t rx_frames)
{
	struct xsk_umem_config ucfg = { .fill_size = NUM_FRAMES, .comp_size = NUM_FRAMES,
					.frame_size = FRAME_SIZE, .frame_headroom = HEADROOM };
	struct xsk_socket_config scfg = { .rx_size = RING, .tx_size = RING,
					  .libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD,
					  .bind_flags = XDP_COPY | XDP_USE_NEED_WAKEUP };
	uint32_t idx, i;
	int err;

	p->area = mmap(NULL, (size_t)NUM_FRAMES * FRAME_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (p->area == MAP_FAILED)
		die("mmap", errno);
	err = xsk_umem__create(&p->umem, p->area, (uint64_t)NUM_FRAMES * FRAME_SIZE, &p->fill,
			       &p->comp, &ucfg);
	if (err)
		die("xsk_umem__create", err);
	/* Frames [0, rx_frames) prime the fill ring; the rest are TX frames. */
	if (xsk_ring_prod__reserve(&p->fill, rx_frames, &idx) != rx_frames)
		die("prime fill ring", ENOSPC);
	for (i = 0; i < rx_frames; i++)
		*xsk_ring_prod__fill_addr(&p->fill, idx + i) = (uint64_t)i * FRAME_SIZE;
	xsk_ring_prod__submit(&p->fill, rx_frames);
	for (i = rx_frames; i < NUM_FRAMES; i++)
		p->free_frames[p->n_free++] = (uint64_t)i * FRAME_SIZE;
	for (i = 0; i < 200; i++) { /* rebinding right after a previous run can see EBUSY */
		err = xsk_socket__create(&p->xsk, ifname, 0, p->umem, &p->rx, &p->tx, &scfg);
		if (err != -EBUSY)
			break;
		usleep(10000);
	}
	if (err)
		die("xsk_socket__create", err);
	p->fd = xsk_socket__fd(p->xsk);
}

static void kick_tx(struct port *p)
{
	uint32_t tries = (p->outstanding + COPY_TX_PER_KICK - 1) / COPY_TX_PER_KICK + 1;

	while (tries--) {
		if (sendto(p->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) >= 0)
			return;
		if (errno != EAGAIN && errno != EBUSY)
			return;
	}
}

/* Completed TX frames go straight back to the fill ring (l2fwd) or the free stack. */
static void reap(struct port *p, int to_fill)
{
	uint32_t idx_c, idx_f = 0, n, i;

	if (!p->outstanding)
		return;
	n = xsk_ring_cons__peek(&p->comp, p->outstanding, &idx_c);
	if (!n)
		return;
	if (to_fill)
		while (xsk_ring_prod__reserve(&p->fill, n, &idx_f) != n)
			;
	for (i = 0; i < n; i++) {
		uint64_t addr = *xsk_ring_cons__comp_addr(&p->comp, idx_c + i);

		if (to_fill)
			*xsk_ring_prod__fill_addr(&p->fill, idx_f + i) = addr;
		else
			p->free_frames[p->n_free++] = addr & ~(uint64_t)(FRAME_SIZE - 1);
	}
	if (to_fill)
		xsk_ring_prod__submit(&p->fill, n);
	xsk_ring_cons__release(&p->comp, n);
	p->outstanding -= n;
}

static void idle(struct port *p, uint32_t *empty)
{
	struct pollfd pfd = { .fd = p->fd, .events = POLLIN };

	if (++*empty >= 64) {
		poll(&pfd, 1, 1);
		*empty = 0;
	}
}

static uint64_t run_rxdrop(struct port *p)
{
	uint32_t idx_rx, idx_f, n, i;
	static uint32_t empty;

	n = xsk_ring_cons__peek(&p->rx, BATCH, &idx_rx);
	if (!n) {
		if (xsk_ring_prod__needs_wakeup(&p->fill))
			poll(&(struct pollfd){ .fd = p->fd, .events = POLLIN }, 1, 0);
		idle(p, &empty);
		return 0;
	}
	while (xsk_ring_prod__reserve(&p->fill, n, &idx_f) != n)
		;
	for (i = 0; i < n; i++)
		*xsk_ring_prod__fill_addr(&p->fill, idx_f + i) =
			xsk_ring_cons__rx_desc(&p->rx, idx_rx + i)->addr;
	xsk_ring_prod__submit(&p->fill, n);
	xsk_ring_cons__release(&p->rx, n);
	empty = 0;
	return n;
}

static uint64_t run_l2fwd(struct port *p)
{
	uint32_t idx_rx, idx_tx, n, i;
	static uint32_t empty;

	reap(p, 1);
	n = xsk_ring_cons__peek(&p->rx, BATCH, &idx_rx);
	if (!n) {
		if (p->outstanding)
			kick_tx(p);
		idle(p, &empty);
		return 0;
	}
	empty = 0;
	while (xsk_ring_prod__reserve(&p->tx, n, &idx_tx) != n) {
		kick_tx(p);
		reap(p, 1);
	}
	for (i = 0; i < n; i++) {
		const struct xdp_desc *in = xsk_ring_cons__rx_desc(&p->rx, idx_rx + i);
		struct xdp_desc *out = xsk_ring_prod__tx_desc(&p->tx, idx_tx + i);
		uint8_t *pkt = p->area + in->addr, tmp[6];

		memcpy(tmp, pkt, 6);
		memcpy(pkt, pkt + 6, 6);
		memcpy(pkt + 6, tmp, 6);
		out->addr = in->addr;
		out->len = in->len;
		out->options = 0;
	}
	xsk_ring_prod__submit(&p->tx, n);
	xsk_ring_cons__release(&p->rx, n);
	p->outstanding += n;
	kick_tx(p);
	reap(p, 1);
	return n;
}

static uint8_t template_frame[FRAME_SIZE];
static uint32_t template_len;

static uint64_t run_txgen(struct port *p)
{
	uint32_t idx, n = BATCH, i;

	reap(p, 0);
	if (n > p->n_free)
		n = p->n_free;
	if (!n || xsk_ring_prod__reserve(&p->tx, n, &idx) != n) {
		kick_tx(p);
		return 0;
	}
	for (i = 0; i < n; i++) {
		struct xdp_desc *d = xsk_ring_prod__tx_desc(&p->tx, idx + i);
		uint64_t addr = p->free_frames[--p->n_free];

		memcpy(p->area + addr, template_frame, template_len);
		d->addr = addr;
		d->len = template_len;
		d->options = 0;
	}
	xsk_ring_prod__submit(&p->tx, n);
	p->outstanding += n;
	kick_tx(p);
	reap(p, 0);
	return n;
}

static void build_template(const char *dst_mac, uint32_t size)
{
	static const uint8_t src_mac[6] = { 0x02, 0, 0, 0, 0, 1 };
	uint8_t *f = template_frame;
	uint32_t sum = 0, i;

	if (size < 42 || size > 3584 ||
	    sscanf(dst_mac, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &f[0], &f[1], &f[2], &f[3], &f[4],
		   &f[5]) != 6)
		die("bad DST_MAC or SIZE", EINVAL);
	memcpy(f + 6, src_mac, 6);
	f[12] = 0x08;
	f[13] = 0x00;
	f[14] = 0x45; /* IPv4, 20-byte header, UDP, 10.0.0.1 -> 10.0.0.2 */
	f[16] = (uint8_t)((size - 14) >> 8);
	f[17] = (uint8_t)(size - 14);
	f[20] = 0x40;
	f[22] = 64;
	f[23] = 17;
	memcpy(f + 26, (uint8_t[]){ 10, 0, 0, 1, 10, 0, 0, 2 }, 8);
	for (i = 14; i < 34; i += 2)
		sum += (uint32_t)f[i] << 8 | f[i + 1];
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	f[24] = (uint8_t)(~sum >> 8);
	f[25] = (uint8_t)~sum;
	f[34] = 0x27; /* sport 10000, dport 9, UDP checksum 0 (none) */
	f[35] = 0x10;
	f[37] = 9;
	f[38] = (uint8_t)((size - 34) >> 8);
	f[39] = (uint8_t)(size - 34);
	template_len = size;
}

int main(int argc, char **argv)
{
	static struct port port;
	struct bpf_object *obj;
	uint64_t (*step)(struct port *);
	uint64_t total = 0, last_total = 0, iterations = 0, start, next_report, end, last_cpu;
	int ifindex, xsks_fd, fd;
	uint32_t zero = 0, rx_frames;

	if (argc < 5) {
		fprintf(stderr, "usage: %s rxdrop|txgen|l2fwd IFNAME SECONDS BPF_OBJECT "
				"[DST_MAC SIZE]\n", argv[0]);
		return 2;
	}
	if (!strcmp(argv[1], "rxdrop"))
		step = run_rxdrop, rx_frames = FILL_TARGET;
	else if (!strcmp(argv[1], "l2fwd"))
		step = run_l2fwd, rx_frames = FILL_TARGET;
	else if (!strcmp(argv[1], "txgen") && argc >= 7)
		step = run_txgen, rx_frames = 0, build_template(argv[5], (uint32_t)atoi(argv[6]));
	else
		die("unknown mode or missing txgen arguments", EINVAL);
	ifindex = (int)if_nametoindex(argv[2]);
	if (!ifindex)
		die(argv[2], ENODEV);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	load_program(argv[4], ifindex, &obj, &xsks_fd);
	open_port(&port, argv[2], rx_frames);
	fd = port.fd;
	if (bpf_map_update_elem(xsks_fd, &zero, &fd, 0))
		die("XSKMAP insert", errno);
	start = now_ns();
	next_report = start + 1000000000ull;
	last_cpu = cpu_ns();
	end = start + (uint64_t)(atof(argv[3]) * 1e9);
	printf("%s on %s: ready\n", argv[1], argv[2]);
	fflush(stdout);
	while (!stop_flag) {
		total += step(&port);
		if ((++iterations & 63) == 0) {
			uint64_t now = now_ns();

			if (now >= next_report) {
				double secs = (double)(now - next_report) / 1e9 + 1.0;
				uint64_t cpu = cpu_ns();

				printf("%s %7.3f Mpps cpu %.0f%% total %llu\n", argv[1],
				       (double)(total - last_total) / 1e6 / secs,
				       (double)(cpu - last_cpu) / 1e7 / secs,
				       (unsigned long long)total);
				fflush(stdout);
				last_total = total;
				last_cpu = cpu;
				next_report = now + 1000000000ull;
			}
			if (now >= end)
				break;
		}
	}
	bpf_map_delete_elem(xsks_fd, &zero);
	xsk_socket__delete(port.xsk);
	xsk_umem__delete(port.umem);
	bpf_xdp_detach(ifindex, XDP_FLAGS_DRV_MODE, NULL);
	bpf_object__close(obj);
	printf("done total %llu\n", (unsigned long long)total);
	return 0;
}

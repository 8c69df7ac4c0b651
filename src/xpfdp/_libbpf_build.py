"""cffi build script for `xpfdp._libbpf_cffi`: the slice of libbpf that xpfdp.bpf needs.

API mode, so struct layouts and constants come from the installed libbpf headers rather
than from hand-copied declarations.
"""

from pathlib import Path

from cffi import FFI

ABI_HEADER = Path(__file__).resolve().parents[2] / "bpf" / "xsk_abi.h"

ffibuilder = FFI()
ffibuilder.cdef(
    """
    struct bpf_object;
    struct bpf_program;
    struct bpf_map;

    struct bpf_xdp_query_opts {
        size_t sz;
        uint32_t prog_id;
        uint32_t drv_prog_id;
        uint32_t hw_prog_id;
        uint32_t skb_prog_id;
        uint8_t attach_mode;
        ...;
    };
    struct bpf_xdp_attach_opts {
        size_t sz;
        int old_prog_fd;
        ...;
    };
    struct bpf_prog_info {
        uint32_t id;
        char name[16];
        ...;
    };

    #define XDP_FLAGS_UPDATE_IF_NOEXIST ...
    #define XDP_FLAGS_REPLACE ...
    #define XDP_FLAGS_SKB_MODE ...
    #define XDP_FLAGS_DRV_MODE ...
    #define XDP_ATTACHED_NONE ...
    #define XDP_ATTACHED_DRV ...
    #define XDP_ATTACHED_SKB ...
    #define XDP_ATTACHED_HW ...
    #define XDP_ATTACHED_MULTI ...

    #define XPFDP_XSK_ABI_VERSION ...
    #define XPFDP_XSK_MAX_QUEUES ...
    #define XPFDP_CNT_COUNT ...
    struct xpfdp_xsk_ctrl {
        unsigned int abi_version;
        unsigned int redirect;
        unsigned int pass_non_ip;
        unsigned int local_delivery;
    };
    #define XPFDP_LOCAL_MAX ...
    struct xpfdp_local_key {
        unsigned char family;
        unsigned char addr[16];
        ...;
    };
    struct xpfdp_local_value {
        unsigned short nat_port_lo;
        unsigned short nat_port_hi;
        ...;
    };
    #define XPFDP_FWD_MAX ...
    struct xpfdp_fwd_key {
        unsigned char family;
        unsigned char proto;
        unsigned short port;
        unsigned char addr[16];
    };

    struct bpf_object *bpf_object__open_file(const char *path, const void *opts);
    int bpf_object__load(struct bpf_object *obj);
    void bpf_object__close(struct bpf_object *obj);
    struct bpf_program *bpf_object__find_program_by_name(const struct bpf_object *obj,
                                                         const char *name);
    struct bpf_map *bpf_object__find_map_by_name(const struct bpf_object *obj,
                                                 const char *name);
    int bpf_program__fd(const struct bpf_program *prog);
    int bpf_map__fd(const struct bpf_map *map);
    const void *bpf_map__initial_value(struct bpf_map *map, size_t *psize);
    long libbpf_get_error(const void *ptr);
    int libbpf_strerror(int err, char *buf, size_t size);

    int bpf_xdp_attach(int ifindex, int prog_fd, uint32_t flags, const void *opts);
    int bpf_xdp_detach(int ifindex, uint32_t flags, const void *opts);
    int bpf_xdp_query(int ifindex, int flags, struct bpf_xdp_query_opts *opts);
    int bpf_prog_get_fd_by_id(uint32_t id);
    int bpf_obj_get_info_by_fd(int bpf_fd, void *info, uint32_t *info_len);

    int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags);
    int bpf_map_lookup_elem(int fd, const void *key, void *value);
    int bpf_map_delete_elem(int fd, const void *key);
    int libbpf_num_possible_cpus(void);

    int close(int fd);
    """
)
ffibuilder.set_source(
    "xpfdp._libbpf_cffi",
    f"""
    #include <unistd.h>
    #include <linux/if_link.h>
    #include <bpf/libbpf.h>
    #include <bpf/bpf.h>
    #include "{ABI_HEADER}"
    """,
    libraries=["bpf"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)

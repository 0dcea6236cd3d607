/* The boundary's contract: every bad pointer, length, handle and value gets the documented
 * code and a message naming it; short buffers are left untouched and report the size needed;
 * bad firmware tables are named by entry or offset; the gate's tokens keep it alive; codes
 * have names. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

#include <stdbool.h>

#define G (1ull << 30)
#define SZ_4K 0x1000ull

#ifdef TDMR_TEST_HOST_HOOKS
extern long host_live_allocations;
#endif

/* A pointer `off` bytes past an 8-byte aligned static buffer (never dereferenced in C). */
static void *misaligned(size_t off)
{
    static _Alignas(512) unsigned char buf[8192];
    return (void *)((uintptr_t)buf + off);
}

static bool says(const tdmr_error *e, const char *what)
{
    return strstr(e->message, what) != NULL;
}

/* A 2-node machine: [1 MiB, 2 GiB) and [4 GiB, 8 GiB) on node 0, [8 GiB, 12 GiB) on node 1. */
static const tdmr_region regions[] = {
    {0x100000, 2 * G - 0x100000, 0}, {4 * G, 4 * G, 0}, {8 * G, 4 * G, 1}};
static const tdmr_cmr cmrs[] = {{0x100000, 2 * G - 0x100000}, {4 * G, 8 * G}};

static tdmr_memory *good_memory(void)
{
    tdmr_memory *m = NULL;
    tdmr_error e;
    CHECK_CODE(tdmr_memory_new(regions, 3, cmrs, 2, &m, &e), TDMR_OK, &e);
    return m;
}

static void memory_errors(void)
{
    tdmr_error e;
    tdmr_memory *m = NULL;

    CHECK_CODE(tdmr_memory_new(NULL, 3, cmrs, 2, &m, &e), TDMR_ERR_NULL_POINTER, &e);
    CHECK(says(&e, "`regions` is NULL but its length is 3"), "%s", e.message);
    CHECK_CODE(tdmr_memory_new(regions, 3, cmrs, 2, NULL, &e), TDMR_ERR_NULL_POINTER, &e);
    CHECK(says(&e, "`out`"), "%s", e.message);
    CHECK_CODE(tdmr_memory_new(regions, 3, NULL, 2, &m, &e), TDMR_ERR_NULL_POINTER, &e);
    CHECK_CODE(tdmr_memory_new(misaligned(4), 1, cmrs, 2, &m, &e), TDMR_ERR_MISALIGNED, &e);
    CHECK(says(&e, "`regions`") && says(&e, "8-byte aligned"), "%s", e.message);
    CHECK_CODE(tdmr_memory_new(regions, 3, misaligned(12), 2, &m, &e), TDMR_ERR_MISALIGNED, &e);
    CHECK_CODE(tdmr_memory_new(regions, SIZE_MAX / 8, cmrs, 2, &m, &e), TDMR_ERR_TOO_LARGE, &e);
    /* One entry that would wrap around the end of the address space. */
    CHECK_CODE(tdmr_memory_new((const tdmr_region *)(UINTPTR_MAX & ~(uintptr_t)7), 1, cmrs, 2, &m,
                               &e),
               TDMR_ERR_TOO_LARGE, &e);
    CHECK(m == NULL, "out written on failure");

    tdmr_region bad[3];
    memcpy(bad, regions, sizeof bad);
    bad[1].base += 0x800;
    CHECK_CODE(tdmr_memory_new(bad, 3, cmrs, 2, &m, &e), TDMR_ERR_MEMORY_MAP, &e);
    CHECK(says(&e, "range 1") && says(&e, "not 4 KiB aligned"), "%s", e.message);
    tdmr_region unsorted[2] = {regions[1], regions[0]};
    CHECK_CODE(tdmr_memory_new(unsorted, 2, cmrs, 2, &m, &e), TDMR_ERR_MEMORY_MAP, &e);
    CHECK(says(&e, "starts before the previous range"), "%s", e.message);
    tdmr_cmr small[1] = {{0x100000, G}};
    CHECK_CODE(tdmr_memory_new(regions, 3, small, 1, &m, &e), TDMR_ERR_MEMORY_MAP, &e);
    CHECK(says(&e, "not convertible"), "%s", e.message);
    CHECK_CODE(tdmr_memory_new(regions, 0, cmrs, 2, &m, &e), TDMR_ERR_MEMORY_MAP, &e);
    tdmr_cmr many[33];
    for (int i = 0; i < 33; i++)
        many[i] = (tdmr_cmr){(uint64_t)i * G, SZ_4K};
    CHECK_CODE(tdmr_memory_new(regions, 3, many, 33, &m, &e), TDMR_ERR_CMRS, &e);
    CHECK(says(&e, "33 CMRs"), "%s", e.message);

    /* No CMR list: the memory stands in. */
    CHECK_CODE(tdmr_memory_new(regions, 3, NULL, 0, &m, &e), TDMR_OK, &e);
#ifdef TDMR_TEST_HOST_HOOKS
    CHECK(host_live_allocations > 0, "the handle was not allocated through tdmr_host_alloc");
#endif
    size_t n = 0;
    CHECK_CODE(tdmr_memory_cmrs(m, NULL, 0, &n, &e), TDMR_OK, &e);
    tdmr_cmr covering[3];
    uint64_t covered = 0;
    CHECK_CODE(tdmr_memory_cmrs(m, covering, 3, &n, &e), TDMR_OK, &e);
    for (size_t i = 0; i < n && i < 3; i++)
        covered += covering[i].size;
    CHECK(n >= 1 && n <= 3 && covered == 2 * G - 0x100000 + 8 * G, "%zu covering CMRs, %" PRIu64,
          n, covered);
    tdmr_region back[3];
    CHECK_CODE(tdmr_memory_regions(m, back, 3, &n, &e), TDMR_OK, &e);
    CHECK(n == 3 && memcmp(back, regions, sizeof back) == 0, "regions differ");
    tdmr_memory_free(m);
    tdmr_memory_free(NULL);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* An SRAT with one x2APIC structure per PXM in `pxms` and one memory affinity structure per
 * range (PXM, base, length, flags), length and checksum set; returns its length. */
struct affinity {
    uint32_t pxm;
    uint64_t base, len;
    uint32_t flags;
};

static size_t make_srat(uint8_t *t, const uint32_t *pxms, size_t n_pxms,
                        const struct affinity *mem, size_t n_mem)
{
    size_t len = 48 + 24 * n_pxms + 40 * n_mem;
    memset(t, 0, len);
    memcpy(t, "SRAT", 4);
    put32(t + 4, (uint32_t)len);
    t[8] = 3;
    uint8_t *s = t + 48;
    for (size_t i = 0; i < n_pxms; i++, s += 24) {
        s[0] = 2, s[1] = 24;
        put32(s + 4, pxms[i]);
        put32(s + 12, 1);
    }
    for (size_t i = 0; i < n_mem; i++, s += 40) {
        s[0] = 1, s[1] = 40;
        put32(s + 2, mem[i].pxm);
        put64(s + 8, mem[i].base);
        put64(s + 16, mem[i].len);
        put32(s + 28, mem[i].flags);
    }
    uint8_t sum = 0;
    for (size_t i = 0; i < len; i++)
        sum = (uint8_t)(sum + t[i]);
    t[9] = (uint8_t)(0x100 - sum);
    return len;
}

/* RAM [0, 640 KiB), [1 MiB, 2 GiB), [4 GiB, 12 GiB); a reserved hole at [3 GiB, 4 GiB). */
static const tdmr_e820_entry e820[] = {
    {0, 0xa0000, TDMR_E820_USABLE},
    {0x100000, 2 * G - 0x100000, TDMR_E820_USABLE},
    {3 * G, G, TDMR_E820_RESERVED},
    {4 * G, 8 * G, TDMR_E820_USABLE},
};

static void firmware_errors(void)
{
    tdmr_error e;
    tdmr_memory *m = NULL;
    uint32_t warn = 77;
    static uint8_t srat[4096];
    const uint32_t pxms[] = {7, 3};
    const struct affinity two_nodes[] = {{7, 0, 8 * G, 1}, {3, 8 * G, 4 * G, 1}};
    size_t srat_len = make_srat(srat, pxms, 2, two_nodes, 2);

    /* Pointers and lengths. */
    CHECK_CODE(tdmr_memory_from_e820(NULL, 4, NULL, 0, NULL, 0, &m, &warn, &e),
               TDMR_ERR_NULL_POINTER, &e);
    CHECK(says(&e, "`entries` is NULL but its length is 4"), "%s", e.message);
    CHECK_CODE(tdmr_memory_from_e820(e820, 4, NULL, 0, NULL, 0, NULL, &warn, &e),
               TDMR_ERR_NULL_POINTER, &e);
    CHECK(says(&e, "`out`"), "%s", e.message);
    CHECK_CODE(tdmr_memory_from_e820(e820, 4, NULL, 0, NULL, 0, &m, misaligned(2), &e),
               TDMR_ERR_MISALIGNED, &e);
    CHECK(says(&e, "`warnings`") && says(&e, "4-byte aligned"), "%s", e.message);
    CHECK_CODE(tdmr_memory_from_e820(e820, SIZE_MAX / 16, NULL, 0, NULL, 0, &m, &warn, &e),
               TDMR_ERR_TOO_LARGE, &e);
    CHECK(says(&e, "`entries`") && says(&e, "20 bytes"), "%s", e.message);
    CHECK_CODE(tdmr_memory_from_e820((const tdmr_e820_entry *)(UINTPTR_MAX - 7), 1, NULL, 0, NULL,
                                     0, &m, &warn, &e),
               TDMR_ERR_TOO_LARGE, &e);
    CHECK_CODE(tdmr_memory_from_e820(e820, 4, NULL, 5, NULL, 0, &m, &warn, &e),
               TDMR_ERR_NULL_POINTER, &e);
    CHECK(says(&e, "`srat` is NULL but its length is 5"), "%s", e.message);
    CHECK_CODE(tdmr_memory_from_e820(e820, 4, srat, SIZE_MAX, NULL, 0, &m, &warn, &e),
               TDMR_ERR_TOO_LARGE, &e);
    CHECK_CODE(tdmr_memory_from_e820(e820, 4, NULL, 0, NULL, 3, &m, &warn, &e),
               TDMR_ERR_NULL_POINTER, &e);
    CHECK_CODE(tdmr_memory_from_e820(e820, 4, NULL, 0, misaligned(4), 1, &m, &warn, &e),
               TDMR_ERR_MISALIGNED, &e);
    CHECK(m == NULL && warn == 77, "out or warnings written on failure");

    /* The E820 map: an entry whose end overflows is named; no RAM is no map. */
    tdmr_e820_entry bad[3] = {e820[1], {UINT64_MAX - 0xfff, 0x2000, TDMR_E820_RESERVED}, e820[3]};
    CHECK_CODE(tdmr_memory_from_e820(bad, 3, NULL, 0, NULL, 0, &m, &warn, &e),
               TDMR_ERR_MEMORY_TABLE, &e);
    CHECK(says(&e, "E820 entry 1 (address 0xfffffffffffff000, length 0x2000, type 2) overflows"),
          "%s", e.message);
    CHECK_CODE(tdmr_memory_from_e820(NULL, 0, NULL, 0, NULL, 0, &m, &warn, &e),
               TDMR_ERR_MEMORY_MAP, &e);
    tdmr_e820_entry low[1] = {e820[0]}; /* RAM below 1 MiB only */
    CHECK_CODE(tdmr_memory_from_e820(low, 1, NULL, 0, NULL, 0, &m, &warn, &e),
               TDMR_ERR_MEMORY_MAP, &e);
    tdmr_e820_entry beyond[1] = {{1ull << 52, G, TDMR_E820_USABLE}};
    CHECK_CODE(tdmr_memory_from_e820(beyond, 1, NULL, 0, NULL, 0, &m, &warn, &e),
               TDMR_ERR_MEMORY_MAP, &e);
    CHECK(says(&e, "beyond the 52-bit physical address space"), "%s", e.message);

    /* Packed entries need no alignment: the table one byte off works. */
    static unsigned char odd[1 + sizeof e820];
    memcpy(odd + 1, e820, sizeof e820);
    CHECK_CODE(tdmr_memory_from_e820((const tdmr_e820_entry *)(void *)(odd + 1), 4, NULL, 0, NULL,
                                     0, &m, NULL, &e),
               TDMR_OK, &e);
    tdmr_region r[4];
    size_t n = 0;
    CHECK_CODE(tdmr_memory_regions(m, r, 4, &n, &e), TDMR_OK, &e);
    CHECK(n == 2 && r[0].base == 0x100000 && r[0].size == 2 * G - 0x100000 && r[1].base == 4 * G &&
              r[1].size == 8 * G && r[0].node == 0 && r[1].node == 0,
          "%zu regions from the E820 map", n);
    tdmr_memory_free(m);
    m = NULL;

    /* The SRAT: nodes numbered as Linux numbers them (PXM 7 first: node 0). */
    warn = 77;
    CHECK_CODE(tdmr_memory_from_e820(e820, 4, srat, srat_len, NULL, 0, &m, &warn, &e), TDMR_OK,
               &e);
    CHECK_CODE(tdmr_memory_regions(m, r, 4, &n, &e), TDMR_OK, &e);
    CHECK(n == 3 && warn == 0 && r[1].base == 4 * G && r[1].size == 4 * G && r[1].node == 0 &&
              r[2].base == 8 * G && r[2].node == 1,
          "%zu regions, warnings %#x", n, warn);
    tdmr_memory_free(m);
    m = NULL;
    /* A non-NULL SRAT of length 0 is a table too short to be one. */
    warn = 77;
    CHECK_CODE(tdmr_memory_from_e820(e820, 4, srat, 0, NULL, 0, &m, &warn, &e), TDMR_ERR_SRAT, &e);
    CHECK(says(&e, "SRAT of 0 bytes is shorter than its 48-byte header"), "%s", e.message);
    srat[0] = 'X';
    CHECK_CODE(tdmr_memory_from_e820(e820, 4, srat, srat_len, NULL, 0, &m, &warn, &e),
               TDMR_ERR_SRAT, &e);
    CHECK(says(&e, "not an SRAT"), "%s", e.message);
    srat[0] = 'S';
    srat[100] ^= 1;
    CHECK_CODE(tdmr_memory_from_e820(e820, 4, srat, srat_len, NULL, 0, &m, &warn, &e),
               TDMR_ERR_SRAT, &e);
    CHECK(says(&e, "checksum"), "%s", e.message);
    srat[100] ^= 1;
    CHECK_CODE(tdmr_memory_from_e820(e820, 4, srat, srat_len - 1, NULL, 0, &m, &warn, &e),
               TDMR_ERR_SRAT, &e);
    CHECK(says(&e, "length field"), "%s", e.message);
    /* A structure too short for its type, named by offset. */
    const struct affinity one[] = {{7, 0, 8 * G, 1}};
    size_t len = make_srat(srat, pxms, 1, one, 1);
    srat[48 + 24 + 1] = 39;
    srat[9] = (uint8_t)(srat[9] + 1);
    CHECK_CODE(tdmr_memory_from_e820(e820, 4, srat, len, NULL, 0, &m, &warn, &e), TDMR_ERR_SRAT,
               &e);
    CHECK(says(&e, "SRAT structure at offset 72 (type 1) has a bad length 39"), "%s", e.message);
    const struct affinity huge[] = {{7, UINT64_MAX - 0xfff, 0x2000, 1}};
    len = make_srat(srat, pxms, 1, huge, 1);
    CHECK_CODE(tdmr_memory_from_e820(e820, 4, srat, len, NULL, 0, &m, &warn, &e), TDMR_ERR_SRAT,
               &e);
    CHECK(says(&e, "offset 72") && says(&e, "overflows"), "%s", e.message);
    /* Overlapping structures of two nodes: named by index. */
    const struct affinity overlap[] = {{7, 0, 8 * G, 1}, {3, 6 * G, 6 * G, 1}};
    len = make_srat(srat, pxms, 2, overlap, 2);
    CHECK_CODE(tdmr_memory_from_e820(e820, 4, srat, len, NULL, 0, &m, &warn, &e), TDMR_ERR_SRAT,
               &e);
    CHECK(says(&e, "SRAT memory affinity structure 1 ([0x180000000, 0x300000000)) overlaps a "
                   "range of node 0"),
          "%s", e.message);
    /* An SRAT boundary inside a page. */
    const struct affinity ragged[] = {{7, 0, 8 * G + 0x800, 1}, {3, 8 * G + 0x800, 4 * G, 1}};
    len = make_srat(srat, pxms, 2, ragged, 2);
    CHECK_CODE(tdmr_memory_from_e820(e820, 4, srat, len, NULL, 0, &m, &warn, &e),
               TDMR_ERR_MEMORY_MAP, &e);
    CHECK(says(&e, "4 KiB"), "%s", e.message);
    CHECK(m == NULL && warn == 77, "out or warnings written on failure");

    /* Warnings: 4 GiB in no node turns NUMA off; a page in no node does not. */
    const struct affinity partial[] = {{7, 0, 8 * G, 1}};
    len = make_srat(srat, pxms, 2, partial, 1);
    CHECK_CODE(tdmr_memory_from_e820(e820, 4, srat, len, NULL, 0, &m, &warn, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_memory_regions(m, r, 4, &n, &e), TDMR_OK, &e);
    CHECK(warn == TDMR_MAP_WARN_NUMA_OFF && n == 2 && r[1].node == 0 && r[1].size == 8 * G,
          "warnings %#x, %zu regions", warn, n);
    tdmr_memory_free(m);
    m = NULL;
    const struct affinity all_but_a_page[] = {{7, 0, 8 * G, 1}, {3, 8 * G + SZ_4K, 4 * G, 1}};
    len = make_srat(srat, pxms, 2, all_but_a_page, 2);
    CHECK_CODE(tdmr_memory_from_e820(e820, 4, srat, len, NULL, 0, &m, &warn, &e), TDMR_OK, &e);
    CHECK(warn == TDMR_MAP_WARN_RAM_WITHOUT_NODE, "warnings %#x", warn);
    tdmr_memory_free(m);
    m = NULL;

    /* CMRs: checked as tdmr_memory_new checks them. */
    const tdmr_cmr short_cmrs[] = {{0x100000, 2 * G - 0x100000}, {4 * G, 4 * G}};
    CHECK_CODE(tdmr_memory_from_e820(e820, 4, NULL, 0, short_cmrs, 2, &m, &warn, &e),
               TDMR_ERR_MEMORY_MAP, &e);
    CHECK(says(&e, "not convertible"), "%s", e.message);
    tdmr_cmr many[33];
    for (int i = 0; i < 33; i++)
        many[i] = (tdmr_cmr){(uint64_t)i * G, SZ_4K};
    CHECK_CODE(tdmr_memory_from_e820(e820, 4, NULL, 0, many, 33, &m, &warn, &e), TDMR_ERR_CMRS, &e);
    const tdmr_cmr all[] = {{0x100000, 2 * G - 0x100000}, {4 * G, 8 * G}};
    CHECK_CODE(tdmr_memory_from_e820(e820, 4, NULL, 0, all, 2, &m, &warn, &e), TDMR_OK, &e);
    tdmr_cmr back[2];
    CHECK_CODE(tdmr_memory_cmrs(m, back, 2, &n, &e), TDMR_OK, &e);
    CHECK(n == 2 && memcmp(back, all, sizeof back) == 0, "%zu CMRs back", n);
    tdmr_memory_free(m);
    m = NULL;

    /* The UEFI memory map: the stride is the firmware's, bytes need no alignment. */
    enum { STRIDE = 56 };
    static unsigned char map[1 + 4 * STRIDE];
    unsigned char *d = map + 1;
    const struct {
        uint32_t type;
        uint64_t start, pages, attr;
    } descs[4] = {
        {7, 0x100000, (2 * G - 0x100000) / SZ_4K, 0xf},      /* conventional */
        {4, 4 * G, 4 * G / SZ_4K, 0xf},                      /* boot services data */
        {7, 8 * G, 4 * G / SZ_4K, 0xf | (1ull << 18)},       /* specific purpose: not RAM */
        {0, 3 * G, G / SZ_4K, 0},                            /* reserved */
    };
    memset(map, 0, sizeof map);
    for (int i = 0; i < 4; i++) {
        put32(d + i * STRIDE, descs[i].type);
        put64(d + i * STRIDE + 8, descs[i].start);
        put64(d + i * STRIDE + 24, descs[i].pages);
        put64(d + i * STRIDE + 32, descs[i].attr);
    }
    warn = 77;
    CHECK_CODE(tdmr_memory_from_uefi(d, 4 * STRIDE, STRIDE, NULL, 0, NULL, 0, &m, &warn, &e),
               TDMR_OK, &e);
    CHECK_CODE(tdmr_memory_regions(m, r, 4, &n, &e), TDMR_OK, &e);
    CHECK(n == 2 && warn == 0 && r[1].base == 4 * G && r[1].size == 4 * G,
          "%zu regions from the UEFI map", n);
    tdmr_memory_free(m);
    m = NULL;
    warn = 77;
    CHECK_CODE(tdmr_memory_from_uefi(d, 4 * STRIDE, 36, NULL, 0, NULL, 0, &m, &warn, &e),
               TDMR_ERR_MEMORY_TABLE, &e);
    CHECK(says(&e, "UEFI descriptor size 36"), "%s", e.message);
    CHECK_CODE(tdmr_memory_from_uefi(d, 4 * STRIDE, 44, NULL, 0, NULL, 0, &m, &warn, &e),
               TDMR_ERR_MEMORY_TABLE, &e);
    CHECK_CODE(tdmr_memory_from_uefi(d, 4 * STRIDE - 8, STRIDE, NULL, 0, NULL, 0, &m, &warn, &e),
               TDMR_ERR_MEMORY_TABLE, &e);
    CHECK(says(&e, "is not a whole number of 56-byte descriptors"), "%s", e.message);
    put64(d + STRIDE + 8, 4 * G + 0x800);
    CHECK_CODE(tdmr_memory_from_uefi(d, 4 * STRIDE, STRIDE, NULL, 0, NULL, 0, &m, &warn, &e),
               TDMR_ERR_MEMORY_TABLE, &e);
    CHECK(says(&e, "UEFI descriptor 1 (type 4, start 0x100000800"), "%s", e.message);
    put64(d + STRIDE + 8, 4 * G);
    put64(d + STRIDE + 24, UINT64_MAX / 2);
    CHECK_CODE(tdmr_memory_from_uefi(d, 4 * STRIDE, STRIDE, NULL, 0, NULL, 0, &m, &warn, &e),
               TDMR_ERR_MEMORY_TABLE, &e);
    CHECK(says(&e, "UEFI descriptor 1"), "%s", e.message);
    CHECK_CODE(tdmr_memory_from_uefi(NULL, 48, 48, NULL, 0, NULL, 0, &m, &warn, &e),
               TDMR_ERR_NULL_POINTER, &e);
    CHECK(says(&e, "`map` is NULL but its length is 48"), "%s", e.message);
    CHECK_CODE(tdmr_memory_from_uefi(NULL, 0, 48, NULL, 0, NULL, 0, &m, &warn, &e),
               TDMR_ERR_MEMORY_MAP, &e);
    CHECK_CODE(tdmr_memory_from_uefi(d, SIZE_MAX, STRIDE, NULL, 0, NULL, 0, &m, &warn, &e),
               TDMR_ERR_TOO_LARGE, &e);
    CHECK_CODE(tdmr_memory_from_uefi(d, 4 * STRIDE, STRIDE, NULL, 0, NULL, 0, NULL, &warn, &e),
               TDMR_ERR_NULL_POINTER, &e);
    CHECK_CODE(tdmr_memory_from_uefi(d, 4 * STRIDE, STRIDE, NULL, 0, NULL, 0, &m, misaligned(1), &e),
               TDMR_ERR_MISALIGNED, &e);
    CHECK_CODE(tdmr_memory_from_uefi(d, 4 * STRIDE, STRIDE, NULL, 7, NULL, 0, &m, &warn, &e),
               TDMR_ERR_NULL_POINTER, &e);
    CHECK_CODE(tdmr_memory_from_uefi(d, 4 * STRIDE, STRIDE, NULL, 0, misaligned(8 + 4), 2, &m,
                                     &warn, &e),
               TDMR_ERR_MISALIGNED, &e);
    CHECK(m == NULL && warn == 77, "out or warnings written on failure");
}

static int32_t refuse_all(void *ctx, uint64_t size, uint32_t node, uint64_t *base)
{
    (void)ctx, (void)size, (void)node, (void)base;
    return 0;
}

/* Hands out PAMT blocks top-down from [ctx[0], ctx[1]), and counts calls in ctx[2]. */
static int32_t carveout(void *ctx, uint64_t size, uint32_t node, uint64_t *base)
{
    uint64_t *c = ctx;
    (void)node;
    c[2]++;
    if (c[1] - c[0] < size)
        return 0;
    c[1] -= size;
    *base = c[1];
    return 1;
}

static int32_t misaligned_block(void *ctx, uint64_t size, uint32_t node, uint64_t *base)
{
    (void)ctx, (void)size, (void)node;
    *base = 8 * G + 0x800;
    return 1;
}

static void plan_errors(void)
{
    tdmr_error e;
    tdmr_memory *m = good_memory();
    tdmr_plan *p = NULL;
    tdmr_plan_options o;
    uint64_t not_a_handle[8] = {0};

    CHECK_CODE(tdmr_plan_new(NULL, NULL, &p, &e), TDMR_ERR_NULL_POINTER, &e);
    CHECK_CODE(tdmr_plan_new((tdmr_memory *)not_a_handle, NULL, &p, &e), TDMR_ERR_INVALID_HANDLE,
               &e);
    CHECK(says(&e, "not a live tdmr_memory handle"), "%s", e.message);
    CHECK_CODE(tdmr_plan_new(m, misaligned(4), &p, &e), TDMR_ERR_MISALIGNED, &e);

    tdmr_plan_options_default(&o, &e);
    o.strategy = 7;
    CHECK_CODE(tdmr_plan_new(m, &o, &p, &e), TDMR_ERR_INVALID_ARGUMENT, &e);
    CHECK(says(&e, "`options.strategy` has no meaning for 7"), "%s", e.message);
    tdmr_plan_options_default(&o, &e);
    o.holes = 9;
    CHECK_CODE(tdmr_plan_new(m, &o, &p, &e), TDMR_ERR_INVALID_ARGUMENT, &e);
    tdmr_plan_options_default(&o, &e);
    o.allow_exclusions = 2;
    CHECK_CODE(tdmr_plan_new(m, &o, &p, &e), TDMR_ERR_INVALID_ARGUMENT, &e);
    tdmr_plan_options_default(&o, &e);
    o.limits.max_tdmrs = 0;
    CHECK_CODE(tdmr_plan_new(m, &o, &p, &e), TDMR_ERR_LIMITS, &e);
    tdmr_plan_options_default(&o, &e);
    o.limits.pamt_2m_entry_size = 0;
    CHECK_CODE(tdmr_plan_new(m, &o, &p, &e), TDMR_ERR_LIMITS, &e);
    tdmr_plan_options_default(&o, &e);
    o.limits.dynamic_pamt_bits = 300;
    CHECK_CODE(tdmr_plan_new(m, &o, &p, &e), TDMR_ERR_INVALID_ARGUMENT, &e);
    tdmr_plan_options_default(&o, &e);
    o.strategy = TDMR_STRATEGY_LINUX;
    o.limits.max_tdmrs = 1;
    CHECK_CODE(tdmr_plan_new(m, &o, &p, &e), TDMR_ERR_NO_LAYOUT, &e);
    CHECK(says(&e, "TDMRs exhausted"), "%s", e.message);
    CHECK(p == NULL, "out written on failure");

    /* The caller's PAMT allocator: none, a bad block, then a carve-out the plan uses. */
    tdmr_plan_options_default(&o, &e);
    o.pamt_alloc = refuse_all;
    CHECK_CODE(tdmr_plan_new(m, &o, &p, &e), TDMR_ERR_PAMT_ALLOCATION, &e);
    o.pamt_alloc = misaligned_block;
    CHECK_CODE(tdmr_plan_new(m, &o, &p, &e), TDMR_ERR_PAMT_ALLOCATION, &e);
    CHECK(says(&e, "not the size asked for") || says(&e, "not 4 KiB aligned"), "%s", e.message);
    uint64_t carve[3] = {11 * G, 12 * G, 0};
    o.pamt_alloc = carveout;
    o.pamt_alloc_ctx = carve;
    CHECK_CODE(tdmr_plan_new(m, &o, &p, &e), TDMR_OK, &e);
    tdmr_plan_summary s;
    CHECK_CODE(tdmr_plan_get_summary(p, &s, &e), TDMR_OK, &e);
    CHECK(s.pamt_carved == 0 && carve[2] > 0 && s.pamt_bytes == 12 * G - carve[1],
          "carved %u, %" PRIu64 " calls, %" PRIu64 " PAMT bytes", s.pamt_carved, carve[2],
          s.pamt_bytes);

    /* Nothing left out unless asked. */
    size_t n_ex = 9;
    CHECK_CODE(tdmr_plan_excluded(p, NULL, 0, &n_ex, &e), TDMR_OK, &e);
    CHECK(n_ex == 0 && s.excluded_bytes == 0, "%zu excluded ranges", n_ex);

    /* TDMR_INFO out: count, NULL, short, misaligned, overflowing. */
    size_t n = 0, count = 99;
    CHECK_CODE(tdmr_plan_tdmr_infos(p, NULL, 0, NULL, &e), TDMR_ERR_NULL_POINTER, &e);
    CHECK(says(&e, "`count`"), "%s", e.message);
    CHECK_CODE(tdmr_plan_tdmr_infos(p, NULL, 0, &n, &e), TDMR_OK, &e);
    CHECK(n == s.tdmr_count && n >= 2, "%zu TDMR_INFOs", n);
    CHECK_CODE(tdmr_plan_tdmr_infos(p, NULL, n, &count, &e), TDMR_ERR_NULL_POINTER, &e);
    tdmr_tdmr_info *buf = aligned_alloc(TDMR_INFO_ALIGNMENT, (n + 1) * sizeof *buf);
    memset(buf, 0x5a, (n + 1) * sizeof *buf);
    CHECK_CODE(tdmr_plan_tdmr_infos(p, buf, n - 1, &count, &e), TDMR_ERR_BUFFER_TOO_SMALL, &e);
    CHECK(count == n, "count %zu, wanted %zu", count, n);
    bool untouched = true;
    for (size_t i = 0; i < (n + 1) * sizeof *buf; i++)
        untouched &= ((unsigned char *)buf)[i] == 0x5a;
    CHECK(untouched, "a short buffer was written");
    CHECK_CODE(tdmr_plan_tdmr_infos(p, (tdmr_tdmr_info *)((char *)buf + 64), n, &count, &e),
               TDMR_ERR_MISALIGNED, &e);
    CHECK(says(&e, "512-byte aligned"), "%s", e.message);
    CHECK_CODE(tdmr_plan_tdmr_infos(p, buf, SIZE_MAX / 256, &count, &e), TDMR_ERR_TOO_LARGE, &e);
    CHECK_CODE(tdmr_plan_tdmr_infos(p, buf, n + 1, &count, &e), TDMR_OK, &e);
    CHECK(count == n, "count %zu", count);

    /* Validation: arguments, then the module's own answers. */
    uint64_t status = 42;
    CHECK_CODE(tdmr_validate(buf, n, cmrs, 2, NULL, NULL, &e), TDMR_ERR_NULL_POINTER, &e);
    CHECK_CODE(tdmr_validate((tdmr_tdmr_info *)((char *)buf + 8), n, cmrs, 2, NULL, &status, &e),
               TDMR_ERR_MISALIGNED, &e);
    CHECK_CODE(tdmr_validate(NULL, n, cmrs, 2, NULL, &status, &e), TDMR_ERR_NULL_POINTER, &e);
    CHECK(status == 42, "status written on an argument error");
    CHECK_CODE(tdmr_validate(buf, n, cmrs, 2, NULL, &status, &e), TDMR_OK, &e);
    CHECK(status == TDMR_TDX_SUCCESS, "status %#" PRIx64, status);
    CHECK_CODE(tdmr_validate(NULL, 0, cmrs, 2, NULL, &status, &e), TDMR_ERR_CONFIG_REJECTED, &e);
    CHECK(status == (TDMR_TDX_OPERAND_INVALID | 2), "zero TDMRs: %#" PRIx64, status);
    tdmr_validate_options vo;
    tdmr_validate_options_default(&vo, &e);
    vo.limits.max_tdmrs = (uint16_t)(n - 1);
    CHECK_CODE(tdmr_validate(buf, n, cmrs, 2, &vo, &status, &e), TDMR_ERR_CONFIG_REJECTED, &e);
    CHECK(status == (TDMR_TDX_OPERAND_INVALID | 2), "too many TDMRs: %#" PRIx64, status);
    /* A SEAM range whose end overflows. */
    tdmr_validate_options_default(&vo, &e);
    vo.seamrr_base = SZ_4K;
    vo.seamrr_size = UINT64_MAX;
    CHECK_CODE(tdmr_validate(buf, n, cmrs, 2, &vo, &status, &e), TDMR_ERR_INVALID_ARGUMENT, &e);
    CHECK(says(&e, "overflows 64 bits"), "%s", e.message);
    buf[1].pamt_4k_base = buf[0].pamt_4k_base; /* two TDMRs' PAMTs overlap */
    CHECK_CODE(tdmr_validate(buf, n, cmrs, 2, NULL, &status, &e), TDMR_ERR_CONFIG_REJECTED, &e);
    CHECK((status & TDMR_TDX_STATUS_MASK) == TDMR_TDX_PAMT_OVERLAP ||
              (status & TDMR_TDX_STATUS_MASK) == TDMR_TDX_INVALID_PAMT,
          "overlapping PAMT: %#" PRIx64 " (%s)", status, e.message);

    /* Status text, sizes asked first. */
    size_t need = 0;
    CHECK_CODE(tdmr_status_describe(0xC0000A1200010103ull, NULL, 0, &need, &e), TDMR_OK, &e);
    char text[128];
    CHECK(need > 10 && need < sizeof text, "%zu bytes", need);
    CHECK_CODE(tdmr_status_describe(0xC0000A1200010103ull, text, need - 1, &need, &e),
               TDMR_ERR_BUFFER_TOO_SMALL, &e);
    CHECK_CODE(tdmr_status_describe(0xC0000A1200010103ull, text, sizeof text, &need, &e), TDMR_OK,
               &e);
    CHECK(strcmp(text, "TDX_PAMT_OVERLAP (0xc0000a1200010103: TDMR 3, PAMT 2m, other TDMR 1)") ==
              0 && strlen(text) + 1 == need,
          "%s", text);

    /* PA array: a misaligned address is the ABI's error. */
    uint64_t pas[2] = {0x1000, 0x1100};
    CHECK_CODE(tdmr_tdmr_info_pa_array(pas, 2, misaligned(8), 64, &need, &e), TDMR_ERR_MISALIGNED,
               &e);
    uint64_t *aligned = aligned_alloc(512, 64 * sizeof *aligned);
    CHECK_CODE(tdmr_tdmr_info_pa_array(pas, 2, aligned, 64, &need, &e), TDMR_ERR_ABI, &e);
    CHECK(says(&e, "TDMR_INFO 1 at 0x1100"), "%s", e.message);
    free(aligned);

    /* A handle of the wrong kind. */
    CHECK_CODE(tdmr_plan_get_summary((tdmr_plan *)m, &s, &e), TDMR_ERR_INVALID_HANDLE, &e);
    CHECK_CODE(tdmr_memory_total_bytes((tdmr_memory *)p, &status, &e), TDMR_ERR_INVALID_HANDLE,
               &e);
    CHECK_CODE(tdmr_cpu_online_finish((tdmr_cpu_online *)p), TDMR_ERR_INVALID_HANDLE,
               &(tdmr_error){.code = TDMR_ERR_INVALID_HANDLE});
    tdmr_plan_free((tdmr_plan *)m); /* ignored: not a plan */
    CHECK_CODE(tdmr_memory_total_bytes(m, &status, &e), TDMR_OK, &e);
    free(buf);
    tdmr_plan_free(p);
    tdmr_memory_free(m);
}

static void gate_errors(void)
{
    tdmr_error e;
    tdmr_gate *g = NULL;
    tdmr_cpu_online *on = NULL;
    tdmr_memory_admission *adm = NULL;
    tdmr_init_ticket *t = NULL;
    tdmr_gate_info gi;
    tdmr_gate_options go;

    CHECK_CODE(tdmr_gate_new(cmrs, 2, 2, 0, NULL, &g, &e), TDMR_ERR_GATE_CONFIG, &e);
    CHECK(says(&e, "2 CPUs in 0 packages"), "%s", e.message);
    CHECK_CODE(tdmr_gate_new(cmrs, 2, 2, 3, NULL, &g, &e), TDMR_ERR_GATE_CONFIG, &e);
    tdmr_gate_options_default(&go, &e);
    go.pre_init = 5;
    CHECK_CODE(tdmr_gate_new(cmrs, 2, 2, 1, &go, &g, &e), TDMR_ERR_INVALID_ARGUMENT, &e);
    CHECK_CODE(tdmr_gate_new(cmrs, 2, 2, 1, NULL, NULL, &e), TDMR_ERR_NULL_POINTER, &e);
    CHECK_CODE(tdmr_gate_new(cmrs, 2, 4, 2, NULL, &g, &e), TDMR_OK, &e);

    CHECK_CODE(tdmr_gate_admit_memory(g, 4 * G, 0, &adm, &e), TDMR_ERR_BAD_RANGE, &e);
    CHECK_CODE(tdmr_gate_admit_memory(g, 4 * G + 8, SZ_4K, &adm, &e), TDMR_ERR_BAD_RANGE, &e);
    CHECK_CODE(tdmr_gate_admit_memory(g, UINT64_MAX - SZ_4K + 1, 2 * SZ_4K, &adm, &e),
               TDMR_ERR_BAD_RANGE, &e);
    CHECK(says(&e, "overflows 64 bits"), "%s", e.message);
    CHECK_CODE(tdmr_gate_admit_memory(g, 4 * G, SZ_4K, NULL, &e), TDMR_ERR_NULL_POINTER, &e);
    CHECK_CODE(tdmr_gate_admit_memory(NULL, 4 * G, SZ_4K, &adm, &e), TDMR_ERR_NULL_POINTER, &e);

    CHECK_CODE(tdmr_gate_cpu_online(g, 99, 0, &on, NULL, &e), TDMR_ERR_NO_SUCH_CPU, &e);
    CHECK_CODE(tdmr_gate_cpu_online(g, 0, 7, &on, NULL, &e), TDMR_ERR_NO_SUCH_CPU, &e);
    CHECK_CODE(tdmr_gate_cpu_online(g, 0, 0, &on, NULL, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_gate_cpu_online(g, 0, 0, &on, NULL, &e), TDMR_ERR_BUSY, &e); /* in progress */
    CHECK_CODE(tdmr_cpu_online_finish(on), TDMR_OK, &(tdmr_error){0});
    CHECK_CODE(tdmr_cpu_online_finish(NULL), TDMR_ERR_NULL_POINTER,
               &(tdmr_error){.code = TDMR_ERR_NULL_POINTER});
    CHECK_CODE(tdmr_gate_cpu_online(g, 0, 0, &on, NULL, &e), TDMR_ERR_CPU_STATE, &e);
    CHECK_CODE(tdmr_gate_cpu_offline(g, 0, 1, &e), TDMR_ERR_CPU_STATE, &e);
    CHECK(says(&e, "online in package 0, not in package 1"), "%s", e.message);
    CHECK_CODE(tdmr_gate_cpu_online(g, 2, 1, &on, NULL, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_cpu_online_abandon(on), TDMR_OK, &(tdmr_error){0});
    CHECK_CODE(tdmr_gate_begin_init(g, &t, &e), TDMR_ERR_PACKAGE_OFFLINE, &e);
    CHECK(says(&e, "package 1"), "%s", e.message);
    CHECK_CODE(tdmr_gate_cpu_online(g, 2, 1, &on, NULL, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_cpu_online_finish(on), TDMR_OK, &(tdmr_error){0});

    /* Publish with a bad plan keeps the ticket; failing it lets initialization be retried. */
    tdmr_memory *m = good_memory();
    tdmr_plan *p = NULL;
    CHECK_CODE(tdmr_plan_new(m, NULL, &p, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_gate_begin_init(g, &t, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_init_ticket_publish(t, (tdmr_plan *)m, NULL, &e), TDMR_ERR_INVALID_HANDLE, &e);
    CHECK_CODE(tdmr_init_ticket_publish(t, p, misaligned(3), &e), TDMR_ERR_MISALIGNED, &e);
    CHECK_CODE(tdmr_gate_get_info(g, &gi, &e), TDMR_OK, &e);
    CHECK(gi.state == TDMR_STATE_INITIALIZING, "state %u", gi.state);
    CHECK_CODE(tdmr_init_ticket_fail(t), TDMR_OK, &(tdmr_error){0});
    CHECK_CODE(tdmr_gate_get_info(g, &gi, &e), TDMR_OK, &e);
    CHECK(gi.state == TDMR_STATE_FAILED, "state %u", gi.state);

    /* The caller frees the gate while an admission is out: the token keeps it alive, and the
     * freed pointer is refused while its memory is. */
    CHECK_CODE(tdmr_gate_admit_memory(g, 4 * G, SZ_4K, &adm, &e), TDMR_OK, &e);
    tdmr_gate_free(g);
    tdmr_gate_free(g); /* ignored */
    CHECK_CODE(tdmr_gate_get_info(g, &gi, &e), TDMR_ERR_INVALID_HANDLE, &e);
    CHECK(says(&e, "freed"), "%s", e.message);
    CHECK_CODE(tdmr_memory_admission_finish(adm), TDMR_OK, &(tdmr_error){0});

    /* Tokens outlive the caller's gate handle whatever they end with (ASan sees any
     * use after free): a CPU online finished, a ticket failed, a ticket published. */
    CHECK_CODE(tdmr_gate_new(cmrs, 2, 2, 1, NULL, &g, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_gate_cpu_online(g, 0, 0, &on, NULL, &e), TDMR_OK, &e);
    tdmr_gate_free(g);
    CHECK_CODE(tdmr_cpu_online_finish(on), TDMR_OK, &(tdmr_error){0});
    for (int publish = 0; publish < 2; publish++) {
        CHECK_CODE(tdmr_gate_new(cmrs, 2, 2, 1, NULL, &g, &e), TDMR_OK, &e);
        CHECK_CODE(tdmr_gate_cpu_online(g, 1, 0, &on, NULL, &e), TDMR_OK, &e);
        CHECK_CODE(tdmr_cpu_online_finish(on), TDMR_OK, &(tdmr_error){0});
        CHECK_CODE(tdmr_gate_begin_init(g, &t, &e), TDMR_OK, &e);
        tdmr_gate_free(g);
        if (publish)
            CHECK_CODE(tdmr_init_ticket_publish(t, p, NULL, &e), TDMR_OK, &e);
        else
            CHECK_CODE(tdmr_init_ticket_fail(t), TDMR_OK, &(tdmr_error){0});
    }

    /* Removal: arguments, tokens, and what it holds off. */
    tdmr_memory_removal *rem = NULL;
    tdmr_removal_refusal why;
    uint32_t was = 9;
    CHECK_CODE(tdmr_gate_new(cmrs, 2, 2, 1, NULL, &g, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_gate_cpu_online(g, 0, 0, &on, NULL, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_cpu_online_finish(on), TDMR_OK, &(tdmr_error){0});
    CHECK_CODE(tdmr_gate_admit_removal(NULL, 4 * G, SZ_4K, &rem, NULL, &e), TDMR_ERR_NULL_POINTER,
               &e);
    CHECK_CODE(tdmr_gate_admit_removal(g, 4 * G, SZ_4K, NULL, NULL, &e), TDMR_ERR_NULL_POINTER, &e);
    CHECK(says(&e, "`out`"), "%s", e.message);
    CHECK_CODE(tdmr_gate_admit_removal(g, 4 * G, SZ_4K, &rem, misaligned(4), &e),
               TDMR_ERR_MISALIGNED, &e);
    CHECK(says(&e, "`refusal`"), "%s", e.message);
    CHECK_CODE(tdmr_gate_admit_removal(g, 4 * G, 0, &rem, NULL, &e), TDMR_ERR_BAD_RANGE, &e);
    CHECK_CODE(tdmr_gate_admit_removal(g, 4 * G + 8, SZ_4K, &rem, NULL, &e), TDMR_ERR_BAD_RANGE,
               &e);
    CHECK(says(&e, "not 4 KiB aligned"), "%s", e.message);
    CHECK_CODE(tdmr_gate_admit_removal(g, UINT64_MAX - SZ_4K + 1, 2 * SZ_4K, &rem, NULL, &e),
               TDMR_ERR_BAD_RANGE, &e);
    CHECK(says(&e, "overflows 64 bits"), "%s", e.message);
    uint64_t not_a_gate[8] = {0};
    CHECK_CODE(tdmr_gate_admit_removal((tdmr_gate *)not_a_gate, 4 * G, SZ_4K, &rem, NULL, &e),
               TDMR_ERR_INVALID_HANDLE, &e);
    CHECK_CODE(tdmr_gate_admit_removal((tdmr_gate *)misaligned(4), 4 * G, SZ_4K, &rem, NULL, &e),
               TDMR_ERR_INVALID_HANDLE, &e);
    CHECK(rem == NULL, "out written on failure");
    CHECK_CODE(tdmr_memory_removal_finish(NULL), TDMR_OK, &(tdmr_error){0});
    CHECK_CODE(tdmr_memory_removal_abandon(NULL), TDMR_OK, &(tdmr_error){0});
    CHECK_CODE(tdmr_memory_removal_finish((tdmr_memory_removal *)not_a_gate),
               TDMR_ERR_INVALID_HANDLE, &(tdmr_error){.code = TDMR_ERR_INVALID_HANDLE});
    CHECK_CODE(tdmr_memory_removal_abandon((tdmr_memory_removal *)p), TDMR_ERR_INVALID_HANDLE,
               &(tdmr_error){.code = TDMR_ERR_INVALID_HANDLE});
    /* Any memory may leave before initialization; the removal holds it off. */
    CHECK_CODE(tdmr_gate_admit_removal(g, 64 * G, SZ_4K, &rem, NULL, &e), TDMR_OK, &e);
    CHECK(rem != NULL, "no removal token before init");
    CHECK_CODE(tdmr_cpu_online_finish((tdmr_cpu_online *)rem), TDMR_ERR_INVALID_HANDLE,
               &(tdmr_error){.code = TDMR_ERR_INVALID_HANDLE});
    CHECK_CODE(tdmr_gate_begin_init(g, &t, &e), TDMR_ERR_BUSY, &e);
    CHECK(says(&e, "1 hotplug operations in flight"), "%s", e.message);
    CHECK_CODE(tdmr_memory_removal_abandon(rem), TDMR_OK, &(tdmr_error){0});

    /* Cancelling: arguments; what it answers. */
    CHECK_CODE(tdmr_gate_cancel_init(NULL, &was, &e), TDMR_ERR_NULL_POINTER, &e);
    CHECK_CODE(tdmr_gate_cancel_init(g, misaligned(2), &e), TDMR_ERR_MISALIGNED, &e);
    CHECK(says(&e, "`was_pending`"), "%s", e.message);
    CHECK_CODE(tdmr_gate_cancel_init((tdmr_gate *)not_a_gate, &was, &e), TDMR_ERR_INVALID_HANDLE,
               &e);
    CHECK(was == 9, "was_pending written on failure");
    CHECK_CODE(tdmr_gate_cancel_init(g, NULL, &e), TDMR_OK, &e); /* was pending: withdrawn */
    CHECK_CODE(tdmr_gate_cancel_init(g, &was, &e), TDMR_OK, &e);
    CHECK(was == 0, "still pending");
    CHECK_CODE(tdmr_gate_cancel_update(NULL, &was, &e), TDMR_ERR_NULL_POINTER, &e);
    CHECK_CODE(tdmr_gate_cancel_update(g, misaligned(1), &e), TDMR_ERR_MISALIGNED, &e);
    CHECK_CODE(tdmr_gate_cancel_update((tdmr_gate *)not_a_gate, &was, &e), TDMR_ERR_INVALID_HANDLE,
               &e);
    CHECK_CODE(tdmr_gate_cancel_update((tdmr_gate *)p, &was, &e), TDMR_ERR_INVALID_HANDLE, &e);
    CHECK(says(&e, "not a live tdmr_gate handle"), "%s", e.message);
    was = 9;
    CHECK_CODE(tdmr_gate_cancel_update(g, &was, &e), TDMR_OK, &e);
    CHECK(was == 0, "an update pending before init");

    /* Updates: arguments, state, tokens. */
    tdmr_update_ticket *u = NULL;
    CHECK_CODE(tdmr_gate_begin_update(NULL, &u, &e), TDMR_ERR_NULL_POINTER, &e);
    CHECK_CODE(tdmr_gate_begin_update(g, NULL, &e), TDMR_ERR_NULL_POINTER, &e);
    CHECK_CODE(tdmr_gate_begin_update(g, misaligned(4), &e), TDMR_ERR_MISALIGNED, &e);
    CHECK(says(&e, "`out`"), "%s", e.message);
    CHECK_CODE(tdmr_gate_begin_update((tdmr_gate *)not_a_gate, &u, &e), TDMR_ERR_INVALID_HANDLE,
               &e);
    CHECK_CODE(tdmr_gate_begin_update(g, &u, &e), TDMR_ERR_STATE, &e);
    CHECK(says(&e, "only an initialized one is updated"), "%s", e.message);
    CHECK(u == NULL, "out written on failure");
    CHECK_CODE(tdmr_update_ticket_finish(NULL), TDMR_ERR_NULL_POINTER,
               &(tdmr_error){.code = TDMR_ERR_NULL_POINTER});
    CHECK_CODE(tdmr_update_ticket_finish((tdmr_update_ticket *)p), TDMR_ERR_INVALID_HANDLE,
               &(tdmr_error){.code = TDMR_ERR_INVALID_HANDLE});
    CHECK_CODE(tdmr_gate_begin_init(g, &t, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_update_ticket_finish((tdmr_update_ticket *)t), TDMR_ERR_INVALID_HANDLE,
               &(tdmr_error){.code = TDMR_ERR_INVALID_HANDLE});
    CHECK_CODE(tdmr_init_ticket_publish(t, p, NULL, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_gate_begin_update(g, &u, &e), TDMR_OK, &e);
    tdmr_update_ticket *u2 = NULL;
    CHECK_CODE(tdmr_gate_begin_update(g, &u2, &e), TDMR_ERR_BUSY, &e);
    CHECK(says(&e, "already in progress"), "%s", e.message);
    CHECK_CODE(tdmr_init_ticket_fail((tdmr_init_ticket *)u), TDMR_ERR_INVALID_HANDLE,
               &(tdmr_error){.code = TDMR_ERR_INVALID_HANDLE});
    CHECK_CODE(tdmr_gate_admit_removal(g, 4 * G, SZ_4K, &rem, NULL, &e), TDMR_ERR_BUSY, &e);
    CHECK(says(&e, "retry the memory removal later"), "%s", e.message);
    /* The update ticket outlives the caller's gate handle, which every call then refuses. */
    tdmr_gate_free(g);
    CHECK_CODE(tdmr_gate_begin_update(g, &u2, &e), TDMR_ERR_INVALID_HANDLE, &e);
    CHECK(says(&e, "freed"), "%s", e.message);
    CHECK_CODE(tdmr_gate_cancel_update(g, &was, &e), TDMR_ERR_INVALID_HANDLE, &e);
    CHECK_CODE(tdmr_gate_cancel_init(g, &was, &e), TDMR_ERR_INVALID_HANDLE, &e);
    CHECK_CODE(tdmr_gate_admit_removal(g, 4 * G, SZ_4K, &rem, NULL, &e), TDMR_ERR_INVALID_HANDLE,
               &e);
    CHECK_CODE(tdmr_update_ticket_finish(u), TDMR_OK, &(tdmr_error){0});

    /* After initialization: a PAMT block is refused, with the TDMR and level named. */
    size_t n_infos = 0;
    CHECK_CODE(tdmr_plan_tdmr_infos(p, NULL, 0, &n_infos, &e), TDMR_OK, &e);
    tdmr_tdmr_info *infos = aligned_alloc(TDMR_INFO_ALIGNMENT, n_infos * sizeof *infos);
    CHECK_CODE(tdmr_plan_tdmr_infos(p, infos, n_infos, &n_infos, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_gate_new(cmrs, 2, 0, 0, NULL, &g, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_gate_begin_init(g, &t, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_init_ticket_publish(t, p, NULL, &e), TDMR_OK, &e);
    const tdmr_tdmr_info *last = &infos[n_infos - 1];
    /* A range from below the PAMT_2M block into it: the overlap is the block's part. */
    uint64_t from = last->pamt_2m_base - SZ_4K;
    memset(&why, 0xa5, sizeof why);
    CHECK_CODE(tdmr_gate_admit_removal(g, from, 2 * SZ_4K, &rem, &why, &e),
               TDMR_ERR_HOLDS_TDX_METADATA, &e);
    /* The first block the range touches: the one holding the page below, if one does. */
    size_t want_tdmr = n_infos - 1;
    uint32_t want_level = TDMR_PAMT_LEVEL_2M;
    uint64_t want_base = from + SZ_4K;
    for (size_t i = 0; i < n_infos; i++) {
        const uint64_t b[3] = {infos[i].pamt_4k_base, infos[i].pamt_2m_base, infos[i].pamt_1g_base};
        const uint64_t z[3] = {infos[i].pamt_4k_size, infos[i].pamt_2m_size, infos[i].pamt_1g_size};
        for (uint32_t l = 0; l < 3; l++)
            if (from >= b[l] && from < b[l] + z[l])
                want_tdmr = i, want_level = l, want_base = from;
    }
    CHECK(why.holder == TDMR_HOLDER_PAMT && why.tdmr == want_tdmr && why.pamt_level == want_level &&
              why.overlap.base == want_base && why.overlap.base + why.overlap.size <= from + 2 * SZ_4K,
          "holder %u, TDMR %u, level %u, overlap %#" PRIx64 "+%#" PRIx64, why.holder, why.tdmr,
          why.pamt_level, why.overlap.base, why.overlap.size);
    static const char *const levels[3] = {"PAMT_4K", "PAMT_2M", "PAMT_1G"};
    char want[64];
    snprintf(want, sizeof want, "is the %s block of TDMR %zu", levels[want_level], want_tdmr);
    CHECK(says(&e, want) && says(&e, "holds TDX metadata"), "%s (wanted `%s`)", e.message, want);
    /* A refusal with a NULL `refusal` is the same answer. */
    CHECK_CODE(tdmr_gate_admit_removal(g, last->pamt_2m_base, SZ_4K, &rem, NULL, &e),
               TDMR_ERR_HOLDS_TDX_METADATA, &e);
    tdmr_gate_free(g);

    /* Fails closed: a refusal set too small for the plan, and Dynamic PAMT, which this ABI
     * does not track. */
    tdmr_gate_options_default(&go, &e);
    CHECK(go.metadata_capacity == 256, "default metadata capacity %zu", go.metadata_capacity);
    go.metadata_capacity = 1;
    CHECK_CODE(tdmr_gate_new(cmrs, 2, 0, 0, &go, &g, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_gate_begin_init(g, &t, &e), TDMR_OK, &e);
    size_t frozen_ranges = 321;
    CHECK_CODE(tdmr_init_ticket_publish(t, p, &frozen_ranges, &e), TDMR_ERR_METADATA_UNTRACKED,
               &e);
    CHECK(says(&e, "no memory removal will be admitted") && frozen_ranges == 321, "%s", e.message);
    CHECK_CODE(tdmr_gate_get_info(g, &gi, &e), TDMR_OK, &e);
    CHECK(gi.state == TDMR_STATE_INITIALIZED, "state %u", gi.state);
    CHECK_CODE(tdmr_gate_admit_removal(g, 4 * G, SZ_4K, &rem, NULL, &e),
               TDMR_ERR_METADATA_UNTRACKED, &e);
    CHECK(says(&e, "may hold TDX metadata"), "%s", e.message);
    tdmr_gate_free(g);
    tdmr_plan_options po;
    tdmr_plan_options_default(&po, &e);
    po.limits.dynamic_pamt_bits = 1;
    tdmr_plan *dp = NULL;
    CHECK_CODE(tdmr_plan_new(m, &po, &dp, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_gate_new(cmrs, 2, 0, 0, NULL, &g, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_gate_begin_init(g, &t, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_init_ticket_publish(t, dp, NULL, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_gate_admit_removal(g, 4 * G, SZ_4K, &rem, NULL, &e),
               TDMR_ERR_METADATA_UNTRACKED, &e);
    CHECK(says(&e, "Dynamic PAMT pages"), "%s", e.message);
    tdmr_gate_free(g);
    tdmr_plan_free(dp);
    free(infos);

    /* A removal token outlives the caller's gate handle. */
    CHECK_CODE(tdmr_gate_new(cmrs, 2, 0, 0, NULL, &g, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_gate_admit_removal(g, 4 * G, SZ_4K, &rem, NULL, &e), TDMR_OK, &e);
    tdmr_gate_free(g);
    CHECK_CODE(tdmr_memory_removal_finish(rem), TDMR_OK, &(tdmr_error){0});

    /* A gate that cannot hold the frozen memory initializes and admits nothing. */
    tdmr_gate_options_default(&go, &e);
    go.snapshot_capacity = 0;
    CHECK_CODE(tdmr_gate_new(cmrs, 2, 0, 0, &go, &g, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_gate_begin_init(g, &t, &e), TDMR_OK, &e);
    size_t frozen = 123;
    CHECK_CODE(tdmr_init_ticket_publish(t, p, &frozen, &e), TDMR_ERR_SNAPSHOT_TOO_LARGE, &e);
    CHECK(frozen == 123, "frozen written on failure");
    CHECK_CODE(tdmr_gate_get_info(g, &gi, &e), TDMR_OK, &e);
    CHECK(gi.state == TDMR_STATE_INITIALIZED, "state %u", gi.state);
    CHECK_CODE(tdmr_gate_admit_memory(g, 4 * G, SZ_4K, &adm, &e), TDMR_ERR_NOT_TDX_MEMORY, &e);
    tdmr_gate_free(g);
    tdmr_plan_free(p);
    tdmr_memory_free(m);
}

static void codes_and_err(void)
{
    tdmr_error e;
    for (int c = 0; c >= -31; c--) {
        const char *n = tdmr_error_name(c), *d = tdmr_error_message(c);
        CHECK(n != NULL && strncmp(n, "TDMR_", 5) == 0 && strcmp(n, "TDMR_ERR_UNKNOWN") != 0,
              "code %d: %s", c, n);
        CHECK(d != NULL && strlen(d) > 3, "code %d", c);
    }
    CHECK(strcmp(tdmr_error_name(TDMR_ERR_BUSY), "TDMR_ERR_BUSY") == 0, "busy");
    CHECK(strcmp(tdmr_error_name(TDMR_ERR_METADATA_UNTRACKED), "TDMR_ERR_METADATA_UNTRACKED") == 0,
          "the last code");
    CHECK(strcmp(tdmr_error_name(-32), "TDMR_ERR_UNKNOWN") == 0, "-32");
    CHECK(strcmp(tdmr_error_name(1), "TDMR_ERR_UNKNOWN") == 0, "1");
    CHECK(strcmp(tdmr_error_message(12345), "unknown error code") == 0, "12345");

    /* A misaligned err: the code alone. A NULL err: fine. Success clears a stale message. */
    tdmr_limits l;
    CHECK(tdmr_limits_default(&l, misaligned(1)) == TDMR_ERR_MISALIGNED, "misaligned err");
    CHECK(tdmr_limits_default(&l, NULL) == TDMR_OK && l.max_tdmrs == 64 &&
              l.max_reserved_per_tdmr == 16 && l.pamt_4k_entry_size == 16 &&
              l.dynamic_pamt_bits == 0,
          "limits %u %u", l.max_tdmrs, l.max_reserved_per_tdmr);
    CHECK(tdmr_limits_default(NULL, &e) == TDMR_ERR_NULL_POINTER && e.code == TDMR_ERR_NULL_POINTER,
          "NULL out");
    CHECK(tdmr_limits_default(&l, &e) == TDMR_OK && e.code == 0 && e.message[0] == '\0' &&
              e.tdx_status == 0,
          "stale err: %s", e.message);
    CHECK(e.truncated == 0, "truncated");
    const char *v = tdmr_version();
    CHECK(v != NULL && strchr(v, '.') != NULL, "version %s", v ? v : "(null)");
}

int main(void)
{
    memory_errors();
    firmware_errors();
    plan_errors();
    gate_errors();
    codes_and_err();
#ifdef TDMR_TEST_HOST_HOOKS
    CHECK(host_live_allocations == 0, "%ld allocations leaked", host_live_allocations);
#endif
    return checks_finish();
}

/* The C ABI over every fixture: reads each kernel log's firmware lines back into the tables a
 * C kernel has (its BIOS-e820 lines as E820 entries of every type, its ACPI SRAT node lines
 * as SRAT bytes, its CMR lines as CMRs) and builds the memory map with
 * tdmr_memory_from_e820, which applies the kernel's rules (and, where every entry is whole
 * pages, with tdmr_memory_from_uefi from the same map written as UEFI descriptors, which must
 * agree); a log with CMR lines but no e820 lines describes its memory by its CMRs
 * (tdmr_memory_new). Then it plans with both strategies, checks the figures Linux printed on
 * those machines (from each fixture's header and ../shared/fixtures/README.md, nothing else),
 * lays out and validates the TDMR_INFO array, and drives the hotplug gate through
 * initialization, removals and a runtime update.
 *
 * Usage: fixtures FIXTURE.log...  (every fixture named in `expected` must be given) */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

#include <stdbool.h>

#ifdef TDMR_TEST_HOST_HOOKS
extern long host_live_allocations;
#endif

#define MAX_RANGES 1024
#define MAX_NODES 1024
#define SZ_4K 0x1000ull
#define SZ_1M 0x100000ull
#define UEFI_STRIDE 48

/* One `ACPI: SRAT: Node N PXM P [mem a-b]` line, end exclusive here. */
struct srat_line {
    uint64_t start, end;
    unsigned node, pxm;
    bool hotplug;
};

struct machine {
    tdmr_e820_entry e820[MAX_RANGES];
    size_t n_e820;
    struct srat_line srat[MAX_RANGES];
    size_t n_srat;
    tdmr_cmr cmrs[64];
    size_t n_cmrs;
    /* What the library made of them. */
    tdmr_region *regions;
    size_t n_regions;
    uint32_t nodes; /* distinct nodes in `regions` */
    uint32_t warnings;
};

/* What Linux mainline does on each machine, as the fixture's header or
 * ../shared/fixtures/README.md says; -1: a figure not stated. */
enum verdict { LINUX_PLANS, LINUX_FAILS, LINUX_UNSTATED };

struct expected {
    const char *file;
    enum verdict linux;
    long linux_kb, linux_tdmrs, linux_areas;
    const char *linux_failure; /* with LINUX_FAILS */
    long ours_kb, ours_tdmrs, ours_areas;
    uint32_t warnings; /* TDMR_MAP_WARN_* the fixture's header says the kernel prints */
    int seen;
};

static struct expected expected[] = {
    {"emr-4s-256g.log", LINUX_FAILS, -1, -1, -1,
     "TDMR [0x0, 0x80000000): reserved areas exhausted", 1050644, 5, 6, 0, 0},
    {"host-2t.log", LINUX_PLANS, 8396820, 3, 6, NULL, 8396820, 3, 3, 0, 0},
    /* "Linux builds three TDMRs ... and prints 32844 KB allocated for PAMT." */
    {"hotplug-srat.log", LINUX_PLANS, 32844, 3, -1, NULL, -1, -1, -1, 0, 0},
    /* "Linux mainline issues TDH.SYS.TDMR.INIT serially over all of it": it plans. */
    {"hp-16s-12t.log", LINUX_PLANS, -1, -1, -1, NULL, -1, -1, -1, 0, 0},
    {"icx-2s-256g.log", LINUX_PLANS, 1050632, 2, 5, NULL, 1050632, 2, 3, 0, 0},
    /* "all four land at 4 GiB, in TDMR [4 GiB, 5 GiB): ... reserved areas exhausted" (where
     * alloc_contig_pages() puts them, which the Linux strategy models). */
    {"linux-pamt-flip.log", LINUX_FAILS, -1, -1, -1,
     "TDMR [0x100000000, 0x140000000): reserved areas exhausted", -1, -1, -1, 0, 0},
    {"numa-256.log", LINUX_UNSTATED, -1, -1, -1, NULL, -1, -1, -1, 0, 0},
    /* "x86 Linux finds more than 1 MiB of RAM uncovered ... runs with NUMA off" */
    {"numa-off.log", LINUX_UNSTATED, -1, -1, -1, NULL, -1, -1, -1, TDMR_MAP_WARN_NUMA_OFF, 0},
    {"spr-1t.log", LINUX_PLANS, 4202516, 5, 11, NULL, 4202516, 2, 6, 0, 0},
    {"spr-tdx10.log", LINUX_PLANS, 3677208, 4, 7, NULL, 3677208, 4, 3, 0, 0},
    {"spr-512g.log", LINUX_PLANS, 2101260, -1, -1, NULL, -1, -1, -1, 0, 0},
};
#define N_EXPECTED (sizeof expected / sizeof expected[0])

/* Linux's e820 type names (e820_print_type). */
static bool e820_kind(const char *name, uint32_t *kind)
{
    unsigned t;
    if (strcmp(name, "usable") == 0)
        *kind = TDMR_E820_USABLE;
    else if (strcmp(name, "reserved") == 0)
        *kind = TDMR_E820_RESERVED;
    else if (strcmp(name, "ACPI data") == 0)
        *kind = TDMR_E820_ACPI;
    else if (strcmp(name, "ACPI NVS") == 0)
        *kind = TDMR_E820_NVS;
    else if (strcmp(name, "unusable") == 0)
        *kind = TDMR_E820_UNUSABLE;
    else if (strcmp(name, "soft reserved") == 0)
        *kind = 0xefffffff;
    else if (sscanf(name, "persistent (type %u)", &t) == 1 || sscanf(name, "type %u", &t) == 1)
        *kind = t;
    else
        return false;
    return true;
}

static bool parse_line(struct machine *m, const char *line)
{
    const char *p;
    uint64_t a, b;
    char type[64];
    unsigned node, pxm;

    if ((p = strstr(line, "BIOS-e820: [mem ")) != NULL) {
        uint32_t kind;
        if (sscanf(p, "BIOS-e820: [mem %" SCNx64 "-%" SCNx64 "] %63[^\n]", &a, &b, type) != 3 ||
            b < a || !e820_kind(type, &kind) || m->n_e820 >= MAX_RANGES)
            return false;
        m->e820[m->n_e820++] = (tdmr_e820_entry){.addr = a, .size = b - a + 1, .kind = kind};
        return true;
    }
    if ((p = strstr(line, "ACPI: SRAT: Node ")) != NULL) {
        int used = 0;
        if (sscanf(p, "ACPI: SRAT: Node %u PXM %u [mem %" SCNx64 "-%" SCNx64 "]%n", &node, &pxm,
                   &a, &b, &used) != 4 || used == 0 || b < a || m->n_srat >= MAX_RANGES ||
            node >= MAX_NODES)
            return false;
        m->srat[m->n_srat++] =
            (struct srat_line){a, b + 1, node, pxm, strstr(p + used, "hotplug") != NULL};
        return true;
    }
    if ((p = strstr(line, "CMR")) != NULL) {
        p += 3;
        if (*p == '[') { /* CMR[i]: */
            p = strchr(p, ']');
            if (p == NULL)
                return false;
            p++;
        }
        if (strncmp(p, ": [", 3) != 0)
            return true; /* not a CMR line */
        if (sscanf(p, ": [%" SCNx64 ", %" SCNx64 ")", &a, &b) != 2 || m->n_cmrs >= 64 || b < a)
            return false;
        m->cmrs[m->n_cmrs++] = (tdmr_cmr){a, b - a};
        return true;
    }
    return true;
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

/* The SRAT the lines came from (ACPI 6.5, 5.2.16): the 48-byte header, one enabled x2APIC
 * affinity structure per node naming its PXM in node order (so the library numbers the nodes
 * as the log does), then one enabled memory affinity structure per line, hotplug flag kept;
 * length and checksum filled in. NULL (length 0) when the log has no SRAT lines. */
static uint8_t *srat_bytes(const char *name, const struct machine *m, size_t *len)
{
    static unsigned pxm_of[MAX_NODES];
    static bool named[MAX_NODES];
    unsigned nodes = 0;

    *len = 0;
    if (m->n_srat == 0)
        return NULL;
    memset(named, 0, sizeof named);
    for (size_t i = 0; i < m->n_srat; i++) {
        const struct srat_line *l = &m->srat[i];
        CHECK(!named[l->node] || pxm_of[l->node] == l->pxm, "%s: node %u is PXM %u and %u", name,
              l->node, pxm_of[l->node], l->pxm);
        named[l->node] = true;
        pxm_of[l->node] = l->pxm;
        if (l->node + 1 > nodes)
            nodes = l->node + 1;
    }
    for (unsigned n = 0; n < nodes; n++)
        CHECK(named[n], "%s: nodes not numbered densely (no node %u)", name, n);

    size_t total = 48 + 24 * (size_t)nodes + 40 * m->n_srat;
    uint8_t *t = calloc(total, 1);
    if (t == NULL)
        abort();
    memcpy(t, "SRAT", 4);
    put32(t + 4, (uint32_t)total);
    t[8] = 3;              /* revision */
    memcpy(t + 10, "TDMRCT", 6);
    put32(t + 36, 1);      /* reserved, 1 for backward compatibility */
    uint8_t *s = t + 48;
    for (unsigned n = 0; n < nodes; n++, s += 24) {
        s[0] = 2;          /* Processor Local x2APIC Affinity */
        s[1] = 24;
        put32(s + 4, pxm_of[n]);
        put32(s + 8, n);   /* x2APIC id */
        put32(s + 12, 1);  /* enabled */
    }
    for (size_t i = 0; i < m->n_srat; i++, s += 40) {
        const struct srat_line *l = &m->srat[i];
        s[0] = 1;          /* Memory Affinity */
        s[1] = 40;
        put32(s + 2, l->pxm);
        put64(s + 8, l->start);
        put64(s + 16, l->end - l->start);
        put32(s + 28, 1u | (l->hotplug ? 2u : 0u)); /* enabled, hot-pluggable */
    }
    uint8_t sum = 0;
    for (size_t i = 0; i < total; i++)
        sum = (uint8_t)(sum + t[i]);
    t[9] = (uint8_t)(0x100 - sum);
    *len = total;
    return t;
}

/* The e820 map as a UEFI memory map (48-byte descriptors), when every entry is whole pages. */
static uint8_t *uefi_map(const struct machine *m, size_t *len)
{
    for (size_t i = 0; i < m->n_e820; i++)
        if (m->e820[i].addr % SZ_4K != 0 || m->e820[i].size % SZ_4K != 0)
            return NULL;
    uint8_t *map = calloc(m->n_e820 ? m->n_e820 : 1, UEFI_STRIDE);
    if (map == NULL)
        abort();
    for (size_t i = 0; i < m->n_e820; i++) {
        uint8_t *d = map + i * UEFI_STRIDE;
        uint32_t kind = m->e820[i].kind;
        /* Conventional memory, ACPI reclaim, ACPI NVS, unusable, persistent; else reserved. */
        uint32_t efi = kind == TDMR_E820_USABLE ? 7
                       : kind == TDMR_E820_ACPI ? 9
                       : kind == TDMR_E820_NVS ? 10
                       : kind == TDMR_E820_UNUSABLE ? 8
                       : kind == TDMR_E820_PMEM ? 14
                                                : 0;
        put32(d, efi);
        put64(d + 8, m->e820[i].addr);
        put64(d + 16, 0xffff800000000000ull + m->e820[i].addr); /* virtual: ignored */
        put64(d + 24, m->e820[i].size / SZ_4K);
        put64(d + 32, 0xf); /* UC | WC | WT | WB */
    }
    *len = m->n_e820 * UEFI_STRIDE;
    return map;
}

static bool overlaps(uint64_t a, uint64_t a_end, uint64_t b, uint64_t b_end)
{
    return a < b_end && b < a_end;
}

static size_t uefi_checked;

/* Whether [a, b) lies in the union of the ranges `in(i)` selects among n, and in none `out`
 * selects: a walk, fine for the few hundred ranges of a log. */
struct span {
    uint64_t start, end;
};

static bool covered(uint64_t a, uint64_t b, const struct span *in, size_t n)
{
    uint64_t at = a;
    for (bool moved = true; at < b && moved;) {
        moved = false;
        for (size_t i = 0; i < n; i++)
            if (in[i].start <= at && at < in[i].end) {
                at = in[i].end;
                moved = true;
            }
    }
    return at >= b;
}

/* The library's map keeps the tables' facts: each region is whole pages of usable RAM from
 * 1 MiB up that no other entry claims, on the node of the SRAT lines holding it (all on node
 * 0 with NUMA off), and the regions add up to the total. */
static void check_regions(const char *name, const struct machine *m, tdmr_memory *mem)
{
    static struct span usable[MAX_RANGES], node_lines[MAX_RANGES];
    size_t n_usable = 0;
    for (size_t i = 0; i < m->n_e820; i++)
        if (m->e820[i].kind == TDMR_E820_USABLE)
            usable[n_usable++] = (struct span){m->e820[i].addr, m->e820[i].addr + m->e820[i].size};
    uint64_t sum = 0;
    size_t bad = 0;
    for (size_t r = 0; r < m->n_regions; r++) {
        const tdmr_region *g = &m->regions[r];
        uint64_t end = g->base + g->size;
        sum += g->size;
        bool ok = g->base >= SZ_1M && g->base % SZ_4K == 0 && g->size % SZ_4K == 0 && g->size > 0;
        if (m->n_e820 > 0) {
            ok &= covered(g->base, end, usable, n_usable);
            for (size_t i = 0; i < m->n_e820; i++)
                if (m->e820[i].kind != TDMR_E820_USABLE)
                    ok &= !overlaps(g->base, end, m->e820[i].addr, m->e820[i].addr + m->e820[i].size);
        }
        if (m->warnings & TDMR_MAP_WARN_NUMA_OFF || m->n_srat == 0) {
            ok &= g->node == 0;
        } else {
            size_t n = 0;
            for (size_t i = 0; i < m->n_srat; i++)
                if (m->srat[i].node == g->node)
                    node_lines[n++] = (struct span){m->srat[i].start, m->srat[i].end};
            bool on_node = covered(g->base, end, node_lines, n);
            /* Up to 1 MiB outside every node goes to node 0, with a warning. */
            ok &= on_node || (g->node == 0 && (m->warnings & TDMR_MAP_WARN_RAM_WITHOUT_NODE));
        }
        if (!ok && bad++ < 3)
            CHECK(ok, "%s: region [%#" PRIx64 ", %#" PRIx64 ") on node %u breaks the tables' facts",
                  name, g->base, end, g->node);
    }
    CHECK(bad == 0, "%s: %zu regions break the tables' facts", name, bad);
    tdmr_error e;
    uint64_t total = 0;
    CHECK_CODE(tdmr_memory_total_bytes(mem, &total, &e), TDMR_OK, &e);
    CHECK(total == sum && sum > 0, "%s: %" PRIu64 " bytes, regions sum to %" PRIu64, name, total,
          sum);
}

/* The regions of `mem` (caller frees). */
static tdmr_region *regions_of(tdmr_memory *mem, size_t *n)
{
    tdmr_error e;
    *n = 0;
    CHECK_CODE(tdmr_memory_regions(mem, NULL, 0, n, &e), TDMR_OK, &e);
    tdmr_region *r = calloc(*n ? *n : 1, sizeof *r);
    if (r == NULL)
        abort();
    CHECK_CODE(tdmr_memory_regions(mem, r, *n, n, &e), TDMR_OK, &e);
    return r;
}

/* Reads `path` into `m` and builds its memory map from the tables (or the CMRs). */
static tdmr_memory *read_machine(const char *path, const char *name, struct machine *m)
{
    FILE *f = fopen(path, "r");
    char line[512];
    size_t lineno = 0;
    tdmr_error e;
    tdmr_memory *mem = NULL;

    memset(m, 0, sizeof *m);
    if (f == NULL) {
        perror(path);
        return NULL;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        lineno++;
        if (!parse_line(m, line)) {
            fprintf(stderr, "%s:%zu: cannot read this line\n", path, lineno);
            fclose(f);
            return NULL;
        }
    }
    fclose(f);

    const tdmr_cmr *cmrs = m->n_cmrs ? m->cmrs : NULL;
    if (m->n_e820 > 0) {
        size_t srat_len = 0, map_len = 0;
        uint8_t *srat = srat_bytes(name, m, &srat_len);
        m->warnings = 0xdead;
        CHECK_CODE(tdmr_memory_from_e820(m->e820, m->n_e820, srat, srat_len, cmrs, m->n_cmrs, &mem,
                                         &m->warnings, &e),
                   TDMR_OK, &e);
        uint8_t *map = uefi_map(m, &map_len);
        if (mem != NULL && map != NULL) {
            /* The same machine through its UEFI memory map: the same memory and warnings. */
            tdmr_memory *from_uefi = NULL;
            uint32_t warnings = 0xdead;
            CHECK_CODE(tdmr_memory_from_uefi(map, map_len, UEFI_STRIDE, srat, srat_len, cmrs,
                                             m->n_cmrs, &from_uefi, &warnings, &e),
                       TDMR_OK, &e);
            size_t n_e = 0, n_u = 0;
            tdmr_region *re = regions_of(mem, &n_e), *ru = regions_of(from_uefi, &n_u);
            CHECK(n_e == n_u && memcmp(re, ru, n_e * sizeof *re) == 0 && warnings == m->warnings,
                  "%s: UEFI map gives %zu regions (warnings %#x), E820 %zu (%#x)", name, n_u,
                  warnings, n_e, m->warnings);
            free(re);
            free(ru);
            tdmr_memory_free(from_uefi);
            uefi_checked++;
        }
        free(map);
        free(srat);
    } else if (m->n_cmrs > 0) {
        /* No RAM lines: the CMRs describe the memory, on one node. */
        tdmr_region regions[64];
        for (size_t i = 0; i < m->n_cmrs; i++)
            regions[i] = (tdmr_region){m->cmrs[i].base, m->cmrs[i].size, 0};
        CHECK_CODE(tdmr_memory_new(regions, m->n_cmrs, cmrs, m->n_cmrs, &mem, &e), TDMR_OK, &e);
        m->warnings = 0;
    } else {
        fprintf(stderr, "%s: no e820 and no CMR lines\n", path);
    }
    if (mem == NULL)
        return NULL;

    m->regions = regions_of(mem, &m->n_regions);
    uint32_t seen_nodes[MAX_RANGES];
    size_t n_seen = 0;
    for (size_t i = 0; i < m->n_regions; i++) {
        bool known = false;
        for (size_t j = 0; j < n_seen; j++)
            known |= seen_nodes[j] == m->regions[i].node;
        if (!known && n_seen < MAX_RANGES)
            seen_nodes[n_seen++] = m->regions[i].node;
    }
    m->nodes = (uint32_t)n_seen;
    check_regions(name, m, mem);
    return mem;
}

/* Lays out, cross-checks and validates one plan; returns its TDMR_INFO array (caller frees). */
static tdmr_tdmr_info *check_plan(const char *name, const char *strategy, tdmr_plan *plan,
                                  const tdmr_cmr *cmrs, size_t n_cmrs,
                                  const tdmr_plan_summary *s, size_t *n_infos)
{
    tdmr_error e;
    size_t n = 0;

    /* Sizes asked first, then the array into 512-byte aligned memory. */
    CHECK_CODE(tdmr_plan_tdmr_infos(plan, NULL, 0, &n, &e), TDMR_OK, &e);
    CHECK(n == s->tdmr_count, "%s/%s: %zu TDMR_INFOs for %zu TDMRs", name, strategy, n,
          s->tdmr_count);
    tdmr_tdmr_info *infos = aligned_alloc(TDMR_INFO_ALIGNMENT, n * sizeof *infos);
    if (infos == NULL)
        abort();
    memset(infos, 0xa5, n * sizeof *infos);
    size_t written = 0;
    CHECK_CODE(tdmr_plan_tdmr_infos(plan, infos, n, &written, &e), TDMR_OK, &e);
    CHECK(written == n, "%s/%s: wrote %zu of %zu", name, strategy, written, n);

    /* The array agrees with the summary: PAMT bytes, reserved areas, ordering. */
    uint64_t pamt = 0;
    size_t areas = 0;
    for (size_t i = 0; i < n; i++) {
        const tdmr_tdmr_info *t = &infos[i];
        pamt += t->pamt_1g_size + t->pamt_2m_size + t->pamt_4k_size;
        for (size_t j = 0; j < TDMR_INFO_RESERVED_SLOTS; j++)
            areas += t->reserved_areas[j].size != 0;
        bool zero = true;
        for (size_t j = 0; j < sizeof t->padding; j++)
            zero &= t->padding[j] == 0;
        CHECK(zero, "%s/%s: TDMR_INFO %zu padding not zero", name, strategy, i);
        CHECK(i == 0 || infos[i - 1].base + infos[i - 1].size <= t->base,
              "%s/%s: TDMRs out of order", name, strategy);
    }
    CHECK(pamt == s->pamt_bytes, "%s/%s: TDMR_INFO PAMT %" PRIu64 " vs summary %" PRIu64, name,
          strategy, pamt, s->pamt_bytes);
    CHECK(areas == s->reserved_areas, "%s/%s: %zu reserved entries vs %zu", name, strategy,
          areas, s->reserved_areas);

    /* The PAMT blocks the kernel must claim add up to the same bytes. */
    size_t n_pamt = 0;
    CHECK_CODE(tdmr_plan_pamt_ranges(plan, NULL, 0, &n_pamt, &e), TDMR_OK, &e);
    tdmr_range *pr = calloc(n_pamt ? n_pamt : 1, sizeof *pr);
    CHECK_CODE(tdmr_plan_pamt_ranges(plan, pr, n_pamt, &n_pamt, &e), TDMR_OK, &e);
    uint64_t claimed = 0;
    for (size_t i = 0; i < n_pamt; i++)
        claimed += pr[i].size;
    CHECK(claimed == s->pamt_bytes && s->pamt_carved == 1,
          "%s/%s: PAMT ranges %" PRIu64 " bytes, carved %u", name, strategy, claimed,
          s->pamt_carved);
    free(pr);

    /* TDH.SYS.CONFIG's checks accept it... */
    tdmr_validate_options vo;
    uint64_t status = 1;
    CHECK_CODE(tdmr_validate_options_default(&vo, &e), TDMR_OK, &e);
    vo.limits = s->limits;
    CHECK_CODE(tdmr_validate(infos, n, cmrs, n_cmrs, &vo, &status, &e), TDMR_OK, &e);
    CHECK(status == TDMR_TDX_SUCCESS, "%s/%s: status %#" PRIx64, name, strategy, status);

    /* ...and refuse it, with the module's status naming the TDMR, once one is off 1 GiB. */
    tdmr_tdmr_info *bad = aligned_alloc(TDMR_INFO_ALIGNMENT, n * sizeof *bad);
    if (bad == NULL)
        abort();
    memcpy(bad, infos, n * sizeof *bad);
    bad[n - 1].base += SZ_4K;
    CHECK_CODE(tdmr_validate(bad, n, cmrs, n_cmrs, &vo, &status, &e), TDMR_ERR_CONFIG_REJECTED,
               &e);
    CHECK((status & TDMR_TDX_STATUS_MASK) == TDMR_TDX_INVALID_TDMR && (status & 0xff) == n - 1 &&
              e.tdx_status == status && strstr(e.message, "TDX_INVALID_TDMR") != NULL,
          "%s/%s: status %#" PRIx64 " (%s)", name, strategy, status, e.message);
    free(bad);

    /* The PA array: one 512-byte aligned address per TDMR_INFO, zero padded. */
    uint64_t pas[64];
    for (size_t i = 0; i < n && i < 64; i++)
        pas[i] = (uint64_t)(uintptr_t)&infos[i];
    size_t slots = 0;
    CHECK_CODE(tdmr_tdmr_info_pa_array(pas, n, NULL, 0, &slots, &e), TDMR_OK, &e);
    CHECK(slots == 64, "%s/%s: PA array of %zu slots for %zu addresses", name, strategy, slots, n);
    uint64_t *pa_array = aligned_alloc(TDMR_INFO_ALIGNMENT, slots * sizeof *pa_array);
    if (pa_array == NULL)
        abort();
    CHECK_CODE(tdmr_tdmr_info_pa_array(pas, n, pa_array, slots, &slots, &e), TDMR_OK, &e);
    bool same = true;
    for (size_t i = 0; i < slots; i++)
        same &= pa_array[i] == (i < n ? pas[i] : 0);
    CHECK(same, "%s/%s: PA array differs", name, strategy);
    free(pa_array);

    *n_infos = n;
    return infos;
}

/* A 4 KiB page of TDX memory that no PAMT block or reserved area holds. */
static bool tdx_page(const struct machine *m, tdmr_plan *plan, const tdmr_tdmr_info *infos,
                     size_t n, uint64_t *page)
{
    tdmr_error e;
    size_t n_pamt = 0;
    tdmr_plan_pamt_ranges(plan, NULL, 0, &n_pamt, &e);
    tdmr_range *pr = calloc(n_pamt ? n_pamt : 1, sizeof *pr);
    tdmr_plan_pamt_ranges(plan, pr, n_pamt, &n_pamt, &e);
    bool found = false;
    for (size_t i = 0; i < m->n_regions && !found; i++) {
        uint64_t cands[2] = {m->regions[i].base, m->regions[i].base + m->regions[i].size - SZ_4K};
        for (int c = 0; c < 2 && !found; c++) {
            uint64_t p = cands[c];
            bool ok = false;
            for (size_t t = 0; t < n; t++) {
                if (p < infos[t].base || p >= infos[t].base + infos[t].size)
                    continue;
                ok = true;
                for (size_t j = 0; j < TDMR_INFO_RESERVED_SLOTS; j++) {
                    uint64_t rs = infos[t].base + infos[t].reserved_areas[j].offset;
                    if (overlaps(p, p + SZ_4K, rs, rs + infos[t].reserved_areas[j].size))
                        ok = false;
                }
            }
            for (size_t j = 0; j < n_pamt; j++)
                if (overlaps(p, p + SZ_4K, pr[j].base, pr[j].base + pr[j].size))
                    ok = false;
            if (ok) {
                *page = p;
                found = true;
            }
        }
    }
    if (n_pamt > 0 && found) {
        /* Also hand back a PAMT page through `page[1]`. */
        page[1] = pr[0].base;
    }
    free(pr);
    return found && n_pamt > 0;
}

static const char *const level_names[3] = {"PAMT_4K", "PAMT_2M", "PAMT_1G"};

/* After initialization: a removal of the first page of every PAMT block is refused, naming
 * its TDMR and level (as values and in the message); returns how many were checked. */
static size_t check_pamt_removals(const char *name, tdmr_gate *gate, const tdmr_tdmr_info *infos,
                                  size_t n)
{
    tdmr_error e;
    size_t checked = 0;
    for (size_t t = 0; t < n; t++) {
        const uint64_t base[3] = {infos[t].pamt_4k_base, infos[t].pamt_2m_base,
                                  infos[t].pamt_1g_base};
        const uint64_t size[3] = {infos[t].pamt_4k_size, infos[t].pamt_2m_size,
                                  infos[t].pamt_1g_size};
        for (uint32_t level = 0; level < 3; level++) {
            if (size[level] == 0)
                continue;
            tdmr_memory_removal *rem = (tdmr_memory_removal *)&e; /* must stay unwritten */
            tdmr_removal_refusal why;
            memset(&why, 0xa5, sizeof why);
            CHECK_CODE(tdmr_gate_admit_removal(gate, base[level], SZ_4K, &rem, &why, &e),
                       TDMR_ERR_HOLDS_TDX_METADATA, &e);
            char tdmr_name[32];
            snprintf(tdmr_name, sizeof tdmr_name, "TDMR %zu", t);
            CHECK(why.holder == TDMR_HOLDER_PAMT && why.tdmr == t && why.pamt_level == level &&
                      why.overlap.base == base[level] && why.overlap.size == SZ_4K &&
                      why.dpamt_pages == 0 && why.dpamt_range.size == 0 &&
                      rem == (tdmr_memory_removal *)&e,
                  "%s: removal at the %s block of TDMR %zu: holder %u, TDMR %u, level %u, "
                  "overlap [%#" PRIx64 ", +%#" PRIx64 ")",
                  name, level_names[level], t, why.holder, why.tdmr, why.pamt_level,
                  why.overlap.base, why.overlap.size);
            CHECK(strstr(e.message, tdmr_name) != NULL && strstr(e.message, level_names[level]),
                  "%s: message names neither %s nor %s: %s", name, tdmr_name, level_names[level],
                  e.message);
            checked++;
        }
    }
    return checked;
}

/* The gate through one initialization and an update: admissions and removals before, busy
 * while pending and during, frozen after; busy during the update, the same answers after. */
static void check_gate(const char *name, const struct machine *m, const tdmr_cmr *cmrs,
                       size_t n_cmrs, tdmr_plan *plan, const tdmr_tdmr_info *infos, size_t n)
{
    tdmr_error e;
    tdmr_gate *gate = NULL;
    uint32_t packages = m->nodes, cpus = 2 * m->nodes;
    tdmr_memory_admission *adm = NULL;
    tdmr_memory_removal *rem = NULL, *rem2 = NULL;
    tdmr_cpu_online *on = NULL;
    tdmr_init_ticket *ticket = NULL;
    tdmr_update_ticket *update = NULL;
    tdmr_gate_info gi;
    uint32_t lp = 7, was = 7;

    CHECK_CODE(tdmr_gate_new(cmrs, n_cmrs, cpus, packages, NULL, &gate, &e), TDMR_OK, &e);
    for (uint32_t cpu = 0; cpu < cpus; cpu++) {
        CHECK_CODE(tdmr_gate_cpu_online(gate, cpu, cpu / 2, &on, &lp, &e), TDMR_OK, &e);
        CHECK(lp == 0, "%s: LP.INIT required before init", name);
        CHECK_CODE(tdmr_cpu_online_finish(on), TDMR_OK, &(tdmr_error){0});
    }

    uint64_t inside = cmrs[0].base;
    uint64_t outside = cmrs[n_cmrs - 1].base + cmrs[n_cmrs - 1].size;

    /* Before initialization: an open admission holds initialization off, and the refusal
     * marks it pending. */
    CHECK_CODE(tdmr_gate_admit_memory(gate, inside, SZ_4K, &adm, &e), TDMR_OK, &e);
    CHECK(adm != NULL, "%s: no token before init", name);
    CHECK_CODE(tdmr_gate_begin_init(gate, &ticket, &e), TDMR_ERR_BUSY, &e);
    CHECK_CODE(tdmr_gate_get_info(gate, &gi, &e), TDMR_OK, &e);
    CHECK(gi.state == TDMR_STATE_UNINITIALIZED && gi.in_flight == 1 && gi.init_pending == 1 &&
              gi.update_pending == 0,
          "%s: state %u, %u in flight, pending %u/%u", name, gi.state, gi.in_flight,
          gi.init_pending, gi.update_pending);
    CHECK_CODE(tdmr_memory_admission_finish(adm), TDMR_OK, &(tdmr_error){0});

    /* Pending: hotplug answers busy (so what is in flight can only drain), bar CPUs that are
     * not the last of their package going offline. */
    CHECK_CODE(tdmr_gate_admit_memory(gate, inside, SZ_4K, &adm, &e), TDMR_ERR_BUSY, &e);
    CHECK_CODE(tdmr_gate_admit_memory(gate, outside, SZ_4K, &adm, &e), TDMR_ERR_BUSY, &e);
    CHECK_CODE(tdmr_gate_admit_removal(gate, inside, SZ_4K, &rem, NULL, &e), TDMR_ERR_BUSY, &e);
    CHECK_CODE(tdmr_gate_cpu_offline(gate, 1, 0, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_gate_cpu_online(gate, 1, 0, &on, &lp, &e), TDMR_ERR_BUSY, &e);
    CHECK_CODE(tdmr_gate_cpu_offline(gate, 0, 0, &e), TDMR_ERR_BUSY, &e); /* the last of pkg 0 */

    /* Withdrawn: the pre-initialization rules again. */
    CHECK_CODE(tdmr_gate_cancel_init(gate, &was, &e), TDMR_OK, &e);
    CHECK(was == 1, "%s: cancel_init found nothing pending", name);
    CHECK_CODE(tdmr_gate_cancel_init(gate, &was, &e), TDMR_OK, &e);
    CHECK(was == 0, "%s: cancel_init twice", name);
    CHECK_CODE(tdmr_gate_get_info(gate, &gi, &e), TDMR_OK, &e);
    CHECK(gi.init_pending == 0 && gi.in_flight == 0, "%s: pending %u, %u in flight", name,
          gi.init_pending, gi.in_flight);
    CHECK_CODE(tdmr_gate_cpu_online(gate, 1, 0, &on, &lp, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_cpu_online_finish(on), TDMR_OK, &(tdmr_error){0});
    CHECK_CODE(tdmr_gate_admit_memory(gate, outside, SZ_4K, &adm, &e), TDMR_ERR_NOT_CONVERTIBLE,
               &e);
    CHECK_CODE(tdmr_gate_acquire_guest_keyid(gate, &e), TDMR_ERR_STATE, &e);
    CHECK_CODE(tdmr_gate_begin_update(gate, &update, &e), TDMR_ERR_STATE, &e);

    /* A removal before initialization is admitted (outside the CMRs too) and holds it off;
     * once it ends, the pending initialization begins. */
    CHECK_CODE(tdmr_gate_admit_removal(gate, outside, SZ_4K, &rem, NULL, &e), TDMR_OK, &e);
    CHECK(rem != NULL, "%s: no removal token before init", name);
    CHECK_CODE(tdmr_gate_begin_init(gate, &ticket, &e), TDMR_ERR_BUSY, &e);
    CHECK_CODE(tdmr_gate_admit_removal(gate, inside, SZ_4K, &rem2, NULL, &e), TDMR_ERR_BUSY, &e);
    CHECK_CODE(tdmr_memory_removal_finish(rem), TDMR_OK, &(tdmr_error){0});
    CHECK_CODE(tdmr_gate_begin_init(gate, &ticket, &e), TDMR_OK, &e);

    /* During: busy, at once. */
    CHECK_CODE(tdmr_gate_admit_memory(gate, inside, SZ_4K, &adm, &e), TDMR_ERR_BUSY, &e);
    CHECK_CODE(tdmr_gate_admit_removal(gate, inside, SZ_4K, &rem, NULL, &e), TDMR_ERR_BUSY, &e);
    CHECK_CODE(tdmr_gate_cpu_offline(gate, 1, 0, &e), TDMR_OK, &e); /* not the last of pkg 0 */
    CHECK_CODE(tdmr_gate_cpu_offline(gate, 0, 0, &e), TDMR_ERR_BUSY, &e); /* the last */
    CHECK_CODE(tdmr_gate_cpu_online(gate, 1, 0, &on, &lp, &e), TDMR_ERR_BUSY, &e);
    tdmr_init_ticket *second = NULL;
    CHECK_CODE(tdmr_gate_begin_init(gate, &second, &e), TDMR_ERR_BUSY, &e);
    CHECK_CODE(tdmr_gate_begin_update(gate, &update, &e), TDMR_ERR_STATE, &e);
    CHECK_CODE(tdmr_gate_cancel_init(gate, &was, &e), TDMR_OK, &e);
    CHECK(was == 0, "%s: cancel_init during initialization", name);
    CHECK_CODE(tdmr_gate_get_info(gate, &gi, &e), TDMR_OK, &e);
    CHECK(gi.state == TDMR_STATE_INITIALIZING && gi.init_pending == 0, "%s: state %u, pending %u",
          name, gi.state, gi.init_pending);
    size_t frozen = 0;
    CHECK_CODE(tdmr_init_ticket_publish(ticket, plan, &frozen, &e), TDMR_OK, &e);
    CHECK(frozen > 0, "%s: nothing frozen", name);

    /* After: TDX memory of the plan only; removals anywhere but where the module owns it. */
    uint64_t pages[2] = {0, 0};
    CHECK(tdx_page(m, plan, infos, n, pages), "%s: no TDX page found", name);
    adm = (tdmr_memory_admission *)&e; /* must be overwritten with NULL */
    CHECK_CODE(tdmr_gate_admit_memory(gate, pages[0], SZ_4K, &adm, &e), TDMR_OK, &e);
    CHECK(adm == NULL, "%s: a token after init", name);
    CHECK_CODE(tdmr_memory_admission_finish(adm), TDMR_OK, &(tdmr_error){0});
    CHECK_CODE(tdmr_gate_admit_memory(gate, pages[1], SZ_4K, &adm, &e), TDMR_ERR_NOT_TDX_MEMORY,
               &e);
    CHECK_CODE(tdmr_gate_admit_memory(gate, outside, SZ_4K, &adm, &e), TDMR_ERR_NOT_TDX_MEMORY,
               &e);
    CHECK_CODE(tdmr_gate_begin_init(gate, &ticket, &e), TDMR_ERR_STATE, &e);
    CHECK_CODE(tdmr_gate_get_info(gate, &gi, &e), TDMR_OK, &e);
    CHECK(gi.state == TDMR_STATE_INITIALIZED && gi.in_flight == 0 && gi.frozen_ranges == frozen,
          "%s: state %u, %u in flight, %zu frozen", name, gi.state, gi.in_flight,
          gi.frozen_ranges);
    rem = (tdmr_memory_removal *)&e;
    CHECK_CODE(tdmr_gate_admit_removal(gate, pages[0], SZ_4K, &rem, NULL, &e), TDMR_OK, &e);
    CHECK(rem == NULL, "%s: a removal token after init", name);
    CHECK_CODE(tdmr_memory_removal_finish(rem), TDMR_OK, &(tdmr_error){0});
    CHECK_CODE(tdmr_gate_admit_removal(gate, outside, SZ_4K, &rem, NULL, &e), TDMR_OK, &e);
    size_t blocks = check_pamt_removals(name, gate, infos, n);
    CHECK(blocks >= n, "%s: %zu PAMT blocks for %zu TDMRs", name, blocks, n);

    /* A runtime update, first pending behind a CPU coming online (which runs LP.INIT now). */
    CHECK_CODE(tdmr_gate_cpu_online(gate, 1, 0, &on, &lp, &e), TDMR_OK, &e);
    CHECK(lp == 1, "%s: LP.INIT not required after init", name);
    CHECK_CODE(tdmr_gate_begin_update(gate, &update, &e), TDMR_ERR_BUSY, &e);
    CHECK_CODE(tdmr_gate_get_info(gate, &gi, &e), TDMR_OK, &e);
    CHECK(gi.state == TDMR_STATE_INITIALIZED && gi.update_pending == 1 && gi.init_pending == 0 &&
              gi.in_flight == 1,
          "%s: state %u, update pending %u, %u in flight", name, gi.state, gi.update_pending,
          gi.in_flight);
    CHECK_CODE(tdmr_gate_cpu_offline(gate, 2 * packages - 1, packages - 1, &e), TDMR_ERR_BUSY, &e);
    CHECK_CODE(tdmr_gate_admit_memory(gate, pages[0], SZ_4K, &adm, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_gate_cancel_update(gate, &was, &e), TDMR_OK, &e);
    CHECK(was == 1, "%s: cancel_update found nothing pending", name);
    CHECK_CODE(tdmr_gate_get_info(gate, &gi, &e), TDMR_OK, &e);
    CHECK(gi.update_pending == 0, "%s: update still pending", name);
    CHECK_CODE(tdmr_cpu_online_finish(on), TDMR_OK, &(tdmr_error){0});

    CHECK_CODE(tdmr_gate_begin_update(gate, &update, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_gate_get_info(gate, &gi, &e), TDMR_OK, &e);
    CHECK(gi.state == TDMR_STATE_UPDATING && gi.frozen_ranges == frozen, "%s: state %u, %zu frozen",
          name, gi.state, gi.frozen_ranges);
    CHECK_CODE(tdmr_gate_admit_memory(gate, pages[0], SZ_4K, &adm, &e), TDMR_ERR_BUSY, &e);
    CHECK_CODE(tdmr_gate_admit_memory(gate, outside, SZ_4K, &adm, &e), TDMR_ERR_BUSY, &e);
    CHECK_CODE(tdmr_gate_admit_removal(gate, pages[0], SZ_4K, &rem, NULL, &e), TDMR_ERR_BUSY, &e);
    CHECK_CODE(tdmr_gate_admit_removal(gate, pages[1], SZ_4K, &rem, NULL, &e), TDMR_ERR_BUSY, &e);
    CHECK_CODE(tdmr_gate_cpu_offline(gate, 1, 0, &e), TDMR_ERR_BUSY, &e); /* any CPU */
    CHECK_CODE(tdmr_gate_acquire_guest_keyid(gate, &e), TDMR_ERR_BUSY, &e);
    CHECK_CODE(tdmr_gate_begin_init(gate, &ticket, &e), TDMR_ERR_STATE, &e);
    tdmr_update_ticket *second_update = NULL;
    CHECK_CODE(tdmr_gate_begin_update(gate, &second_update, &e), TDMR_ERR_BUSY, &e);
    CHECK_CODE(tdmr_gate_cancel_update(gate, &was, &e), TDMR_OK, &e);
    CHECK(was == 0, "%s: cancel_update during the update", name);
    CHECK_CODE(tdmr_update_ticket_finish(update), TDMR_OK, &(tdmr_error){0});

    /* After the update: initialized, the same frozen memory and the same answers. */
    CHECK_CODE(tdmr_gate_get_info(gate, &gi, &e), TDMR_OK, &e);
    CHECK(gi.state == TDMR_STATE_INITIALIZED && gi.frozen_ranges == frozen && gi.in_flight == 0,
          "%s: after the update: state %u, %zu frozen", name, gi.state, gi.frozen_ranges);
    CHECK_CODE(tdmr_gate_admit_memory(gate, pages[0], SZ_4K, &adm, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_gate_admit_memory(gate, pages[1], SZ_4K, &adm, &e), TDMR_ERR_NOT_TDX_MEMORY,
               &e);
    CHECK_CODE(tdmr_gate_admit_removal(gate, pages[0], SZ_4K, &rem, NULL, &e), TDMR_OK, &e);
    CHECK(check_pamt_removals(name, gate, infos, n) == blocks, "%s: PAMT refusals changed", name);

    /* CPUs: guest KeyIDs pin the last CPU of a package. */
    CHECK_CODE(tdmr_gate_cpu_offline(gate, 1, 0, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_gate_acquire_guest_keyid(gate, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_gate_cpu_offline(gate, 0, 0, &e), TDMR_ERR_GUEST_KEYIDS_IN_USE, &e);
    CHECK_CODE(tdmr_gate_release_guest_keyid(gate, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_gate_release_guest_keyid(gate, &e), TDMR_ERR_STATE, &e);
    CHECK_CODE(tdmr_gate_cpu_offline(gate, 0, 0, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_gate_cpu_offline(gate, 0, 0, &e), TDMR_ERR_CPU_STATE, &e);
    tdmr_gate_free(gate);
}

static void check_fixture(const char *path)
{
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    struct expected *x = NULL;
    for (size_t i = 0; i < N_EXPECTED; i++)
        if (strcmp(expected[i].file, name) == 0)
            x = &expected[i];
    CHECK(x != NULL, "%s: no expected figures for this fixture", name);
    if (x == NULL)
        return;
    x->seen++;

    static struct machine m;
    tdmr_memory *mem = read_machine(path, name, &m);
    CHECK(mem != NULL, "%s: no memory map", name);
    if (mem == NULL)
        return;
    CHECK(m.warnings == x->warnings, "%s: warnings %#x, the fixture says %#x", name, m.warnings,
          x->warnings);

    /* The CMRs the map was checked against (the memory itself when the log lists none). */
    tdmr_error e;
    size_t n_cmrs = 0;
    CHECK_CODE(tdmr_memory_cmrs(mem, NULL, 0, &n_cmrs, &e), TDMR_OK, &e);
    tdmr_cmr *cmrs = calloc(n_cmrs, sizeof *cmrs);
    CHECK_CODE(tdmr_memory_cmrs(mem, cmrs, n_cmrs, &n_cmrs, &e), TDMR_OK, &e);
    CHECK(m.n_cmrs == 0 || n_cmrs == m.n_cmrs, "%s: %zu CMRs back, %zu given", name, n_cmrs,
          m.n_cmrs);

    long linux_kb = -1;
    for (int pass = 0; pass < 2; pass++) {
        bool linux = pass == 0;
        const char *strategy = linux ? "linux" : "optimal";
        tdmr_plan_options o;
        tdmr_plan *plan = NULL;
        CHECK_CODE(tdmr_plan_options_default(&o, &e), TDMR_OK, &e);
        o.strategy = linux ? TDMR_STRATEGY_LINUX : TDMR_STRATEGY_OPTIMAL;
        tdmr_code rc = tdmr_plan_new(mem, &o, &plan, &e);
        if (linux && x->linux == LINUX_FAILS) {
            CHECK(rc == TDMR_ERR_NO_LAYOUT && strstr(e.message, x->linux_failure) != NULL,
                  "%s/linux: %s (%s), wanted Linux's failure `%s`", name, tdmr_error_name(rc),
                  e.message, x->linux_failure);
            tdmr_plan_free(plan);
            continue;
        }
        if (linux && x->linux == LINUX_UNSTATED && rc != TDMR_OK) {
            /* Whatever Linux does here is not stated; failing, it fails as Linux does. */
            CHECK(rc == TDMR_ERR_NO_LAYOUT, "%s/linux: %s (%s)", name, tdmr_error_name(rc),
                  e.message);
            printf("%-19s %-8s %s\n", name, strategy, e.message);
            continue;
        }
        CHECK(rc == TDMR_OK, "%s/%s: %s (%s)", name, strategy, tdmr_error_name(rc), e.message);
        if (rc != TDMR_OK)
            continue;
        tdmr_plan_summary s;
        CHECK_CODE(tdmr_plan_get_summary(plan, &s, &e), TDMR_OK, &e);
        long kb = (long)(s.pamt_bytes / 1024);
        long want_kb = linux ? x->linux_kb : x->ours_kb;
        long want_tdmrs = linux ? x->linux_tdmrs : x->ours_tdmrs;
        long want_areas = linux ? x->linux_areas : x->ours_areas;
        if (want_kb >= 0)
            CHECK(kb == want_kb, "%s/%s: %ld KB allocated for PAMT, Linux printed %ld", name,
                  strategy, kb, want_kb);
        else if (!linux && linux_kb >= 0) /* not stated: at most Linux's */
            CHECK(kb <= linux_kb, "%s/%s: %ld KB, Linux %ld", name, strategy, kb, linux_kb);
        if (want_tdmrs >= 0)
            CHECK((long)s.tdmr_count == want_tdmrs, "%s/%s: %zu TDMRs; the fixture says %ld",
                  name, strategy, s.tdmr_count, want_tdmrs);
        if (want_areas >= 0)
            CHECK((long)s.reserved_areas == want_areas,
                  "%s/%s: %zu reserved areas; the fixture says %ld", name, strategy,
                  s.reserved_areas, want_areas);
        CHECK(s.strategy == o.strategy, "%s/%s: strategy %u", name, strategy, s.strategy);
        if (linux)
            linux_kb = kb;
        printf("%-19s %-8s %zu TDMRs, %zu areas, %ld KB allocated for PAMT\n", name, strategy,
               s.tdmr_count, s.reserved_areas, kb);

        size_t n = 0;
        tdmr_tdmr_info *infos = check_plan(name, strategy, plan, cmrs, n_cmrs, &s, &n);
        if (!linux)
            check_gate(name, &m, cmrs, n_cmrs, plan, infos, n);
        free(infos);
        tdmr_plan_free(plan);
    }
    free(cmrs);
    free(m.regions);
    tdmr_memory_free(mem);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        check_fixture(argv[i]);
    for (size_t i = 0; i < N_EXPECTED; i++)
        CHECK(expected[i].seen == 1, "fixture %s given %d times", expected[i].file,
              expected[i].seen);
    /* The UEFI path ran on every fixture whose e820 map is whole pages (most with e820). */
    printf("UEFI memory maps checked against E820: %zu\n", uefi_checked);
    CHECK(uefi_checked >= 5, "only %zu fixtures went through tdmr_memory_from_uefi", uefi_checked);
#ifdef TDMR_TEST_HOST_HOOKS
    CHECK(host_live_allocations == 0, "%ld allocations leaked", host_live_allocations);
#endif
    return checks_finish();
}

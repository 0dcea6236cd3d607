/* The C ABI over every fixture: reads each kernel log itself (BIOS-e820, ACPI SRAT and CMR
 * lines, the rules of tests/fixtures/README: usable RAM from 1 MiB trimmed to 4 KiB pages,
 * split at SRAT node boundaries, CMRs as the memory when there is no RAM line, no CMR list
 * when there is no CMR line), builds the memory map from arrays, plans it with both
 * strategies, checks the totals Linux printed on those machines, lays out and validates the
 * TDMR_INFO array, and drives the hotplug gate through initialization.
 *
 * Usage: fixtures FIXTURE.log...  (every fixture named in `expected` must be given) */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

#include <stdbool.h>

#ifdef TDMR_TEST_HOST_HOOKS
extern long host_live_allocations;
#endif

#define MAX_RANGES 1024
#define SZ_4K 0x1000ull
#define SZ_1M 0x100000ull

struct range {
    uint64_t start, end; /* [start, end) */
    uint32_t node;
};

struct machine {
    struct range ram[MAX_RANGES];
    size_t n_ram;
    struct range srat[MAX_RANGES];
    size_t n_srat;
    tdmr_cmr cmrs[64];
    size_t n_cmrs;
    tdmr_region regions[MAX_RANGES];
    size_t n_regions;
    uint32_t nodes; /* distinct nodes in `regions` */
};

/* What Linux printed on each machine (tests/fixtures/README.md, the README's "On real
 * machines" table); -1: not stated. */
struct expected {
    const char *file;
    bool linux_plans;
    long linux_kb, linux_tdmrs, linux_areas;
    const char *linux_failure; /* when it does not plan */
    long ours_kb, ours_tdmrs, ours_areas;
    int seen;
};

static struct expected expected[] = {
    {"emr-4s-256g.log", false, -1, -1, -1, "TDMR [0x0, 0x80000000): reserved areas exhausted",
     1050644, 5, 6, 0},
    {"host-2t.log", true, 8396820, 3, 6, NULL, 8396820, 3, 3, 0},
    {"icx-2s-256g.log", true, 1050632, 2, 5, NULL, 1050632, 2, 3, 0},
    {"spr-1t.log", true, 4202516, 5, 11, NULL, 4202516, 2, 6, 0},
    {"spr-tdx10.log", true, 3677208, 4, 7, NULL, 3677208, 4, 3, 0},
    {"spr-512g.log", true, 2101260, -1, -1, NULL, -1, -1, -1, 0},
    /* A 2015 boot log of a host without TDX: Linux printed no TDX figures; these are the
     * mainline algorithm's (linux-tdx-host.md: "12 TiB fixture -> ~48.1 GiB computed"). */
    {"hp-16s-12t.log", true, 50421940, 17, 35, NULL, -1, -1, -1, 0},
};
#define N_EXPECTED (sizeof expected / sizeof expected[0])

static int by_start(const void *a, const void *b)
{
    const struct range *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

static bool parse_line(struct machine *m, const char *line)
{
    const char *p;
    uint64_t a, b;
    char type[64];
    unsigned node, pxm;

    if ((p = strstr(line, "BIOS-e820: [mem ")) != NULL) {
        if (sscanf(p, "BIOS-e820: [mem %" SCNx64 "-%" SCNx64 "] %63[^\n]", &a, &b, type) != 3)
            return false;
        if (strcmp(type, "usable") != 0)
            return true;
        uint64_t start = (a + SZ_4K - 1) & ~(SZ_4K - 1);
        uint64_t end = (b + 1) & ~(SZ_4K - 1);
        if (start < SZ_1M)
            start = SZ_1M;
        if (start < end && m->n_ram < MAX_RANGES)
            m->ram[m->n_ram++] = (struct range){start, end, 0};
        return true;
    }
    if ((p = strstr(line, "ACPI: SRAT: Node ")) != NULL) {
        if (sscanf(p, "ACPI: SRAT: Node %u PXM %u [mem %" SCNx64 "-%" SCNx64 "]", &node, &pxm,
                   &a, &b) != 4 || m->n_srat >= MAX_RANGES)
            return false;
        m->srat[m->n_srat++] = (struct range){a, b + 1, node};
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

/* Reads `path` into `m`: RAM (or the CMRs), merged, split at SRAT nodes. */
static bool read_machine(const char *path, struct machine *m)
{
    FILE *f = fopen(path, "r");
    char line[512];
    size_t lineno = 0;

    memset(m, 0, sizeof *m);
    if (f == NULL) {
        perror(path);
        return false;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        lineno++;
        if (!parse_line(m, line)) {
            fprintf(stderr, "%s:%zu: cannot read this line\n", path, lineno);
            fclose(f);
            return false;
        }
    }
    fclose(f);
    if (m->n_ram == 0)
        for (size_t i = 0; i < m->n_cmrs; i++)
            m->ram[m->n_ram++] =
                (struct range){m->cmrs[i].base, m->cmrs[i].base + m->cmrs[i].size, 0};
    qsort(m->ram, m->n_ram, sizeof m->ram[0], by_start);
    size_t merged = 0;
    for (size_t i = 0; i < m->n_ram; i++) {
        if (merged > 0 && m->ram[i].start <= m->ram[merged - 1].end) {
            if (m->ram[i].end > m->ram[merged - 1].end)
                m->ram[merged - 1].end = m->ram[i].end;
        } else {
            m->ram[merged++] = m->ram[i];
        }
    }
    m->n_ram = merged;
    qsort(m->srat, m->n_srat, sizeof m->srat[0], by_start);

    uint32_t seen_nodes[MAX_RANGES];
    size_t n_seen = 0;
    for (size_t i = 0; i < m->n_ram; i++) {
        struct range r = m->ram[i];
        if (m->n_srat == 0) {
            m->regions[m->n_regions++] = (tdmr_region){r.start, r.end - r.start, 0};
        } else {
            uint64_t at = r.start;
            for (size_t j = 0; j < m->n_srat && at < r.end; j++) {
                struct range n = m->srat[j];
                if (n.end <= at || n.start >= r.end)
                    continue;
                if (n.start > at) {
                    fprintf(stderr, "%s: RAM at %#" PRIx64 " lies in no SRAT node\n", path, at);
                    return false;
                }
                uint64_t end = n.end < r.end ? n.end : r.end;
                m->regions[m->n_regions++] = (tdmr_region){at, end - at, n.node};
                at = end;
            }
            if (at < r.end) {
                fprintf(stderr, "%s: RAM at %#" PRIx64 " lies in no SRAT node\n", path, at);
                return false;
            }
        }
    }
    for (size_t i = 0; i < m->n_regions; i++) {
        bool known = false;
        for (size_t j = 0; j < n_seen; j++)
            known |= seen_nodes[j] == m->regions[i].node;
        if (!known)
            seen_nodes[n_seen++] = m->regions[i].node;
    }
    m->nodes = (uint32_t)n_seen;
    return m->n_regions > 0;
}

static bool overlaps(uint64_t a, uint64_t a_end, uint64_t b, uint64_t b_end)
{
    return a < b_end && b < a_end;
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

/* The gate through one initialization: admit before, busy during, frozen after. */
static void check_gate(const char *name, const struct machine *m, const tdmr_cmr *cmrs,
                       size_t n_cmrs, tdmr_plan *plan, const tdmr_tdmr_info *infos, size_t n)
{
    tdmr_error e;
    tdmr_gate *gate = NULL;
    uint32_t packages = m->nodes, cpus = 2 * m->nodes;
    tdmr_memory_admission *adm = NULL;
    tdmr_cpu_online *on = NULL;
    tdmr_init_ticket *ticket = NULL;
    tdmr_gate_info gi;
    uint32_t lp = 7;

    CHECK_CODE(tdmr_gate_new(cmrs, n_cmrs, cpus, packages, NULL, &gate, &e), TDMR_OK, &e);
    for (uint32_t cpu = 0; cpu < cpus; cpu++) {
        CHECK_CODE(tdmr_gate_cpu_online(gate, cpu, cpu / 2, &on, &lp, &e), TDMR_OK, &e);
        CHECK(lp == 0, "%s: LP.INIT required before init", name);
        CHECK_CODE(tdmr_cpu_online_finish(on), TDMR_OK, &(tdmr_error){0});
    }

    uint64_t inside = cmrs[0].base;
    uint64_t outside = cmrs[n_cmrs - 1].base + cmrs[n_cmrs - 1].size;

    /* Before initialization: inside the CMRs yes, outside no; an open admission holds
     * initialization off. */
    CHECK_CODE(tdmr_gate_admit_memory(gate, inside, SZ_4K, &adm, &e), TDMR_OK, &e);
    CHECK(adm != NULL, "%s: no token before init", name);
    CHECK_CODE(tdmr_gate_begin_init(gate, &ticket, &e), TDMR_ERR_BUSY, &e);
    CHECK_CODE(tdmr_gate_get_info(gate, &gi, &e), TDMR_OK, &e);
    CHECK(gi.state == TDMR_STATE_UNINITIALIZED && gi.in_flight == 1, "%s: state %u, %u in flight",
          name, gi.state, gi.in_flight);
    CHECK_CODE(tdmr_memory_admission_finish(adm), TDMR_OK, &(tdmr_error){0});
    CHECK_CODE(tdmr_gate_admit_memory(gate, outside, SZ_4K, &adm, &e), TDMR_ERR_NOT_CONVERTIBLE,
               &e);
    CHECK_CODE(tdmr_gate_acquire_guest_keyid(gate, &e), TDMR_ERR_STATE, &e);

    /* During: busy, at once. */
    CHECK_CODE(tdmr_gate_begin_init(gate, &ticket, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_gate_admit_memory(gate, inside, SZ_4K, &adm, &e), TDMR_ERR_BUSY, &e);
    CHECK_CODE(tdmr_gate_cpu_offline(gate, 1, 0, &e), TDMR_OK, &e); /* not the last of pkg 0 */
    CHECK_CODE(tdmr_gate_cpu_offline(gate, 0, 0, &e), TDMR_ERR_BUSY, &e); /* the last */
    CHECK_CODE(tdmr_gate_cpu_online(gate, 1, 0, &on, &lp, &e), TDMR_ERR_BUSY, &e);
    tdmr_init_ticket *second = NULL;
    CHECK_CODE(tdmr_gate_begin_init(gate, &second, &e), TDMR_ERR_BUSY, &e);
    size_t frozen = 0;
    CHECK_CODE(tdmr_init_ticket_publish(ticket, plan, &frozen, &e), TDMR_OK, &e);
    CHECK(frozen > 0, "%s: nothing frozen", name);

    /* After: TDX memory of the plan only. */
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

    /* CPUs: one coming online now runs LP.INIT; guest KeyIDs pin the last CPU of a package. */
    CHECK_CODE(tdmr_gate_cpu_online(gate, 1, 0, &on, &lp, &e), TDMR_OK, &e);
    CHECK(lp == 1, "%s: LP.INIT not required after init", name);
    CHECK_CODE(tdmr_cpu_online_finish(on), TDMR_OK, &(tdmr_error){0});
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
    CHECK(read_machine(path, &m), "%s: unreadable", name);

    tdmr_error e;
    tdmr_memory *mem = NULL;
    CHECK_CODE(tdmr_memory_new(m.regions, m.n_regions, m.n_cmrs ? m.cmrs : NULL, m.n_cmrs, &mem,
                               &e),
               TDMR_OK, &e);
    if (mem == NULL)
        return;
    uint64_t total = 0, sum = 0;
    for (size_t i = 0; i < m.n_regions; i++)
        sum += m.regions[i].size;
    CHECK_CODE(tdmr_memory_total_bytes(mem, &total, &e), TDMR_OK, &e);
    CHECK(total == sum, "%s: %" PRIu64 " bytes, regions sum to %" PRIu64, name, total, sum);

    /* The CMRs the map was checked against (the memory itself when the log lists none). */
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
        if (linux && !x->linux_plans) {
            CHECK(rc == TDMR_ERR_NO_LAYOUT && strstr(e.message, x->linux_failure) != NULL,
                  "%s/linux: %s (%s), wanted Linux's failure `%s`", name, tdmr_error_name(rc),
                  e.message, x->linux_failure);
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
        else /* not stated: at most Linux's */
            CHECK(linux_kb >= 0 && kb <= linux_kb, "%s/%s: %ld KB, Linux %ld", name, strategy,
                  kb, linux_kb);
        if (want_tdmrs >= 0)
            CHECK((long)s.tdmr_count == want_tdmrs && (long)s.reserved_areas == want_areas,
                  "%s/%s: %zu TDMRs, %zu areas; README says %ld, %ld", name, strategy,
                  s.tdmr_count, s.reserved_areas, want_tdmrs, want_areas);
        CHECK(s.strategy == o.strategy, "%s/%s: strategy %u", name, strategy, s.strategy);
        if (linux)
            linux_kb = kb;
        printf("%-16s %-8s %zu TDMRs, %zu areas, %ld KB allocated for PAMT\n", name, strategy,
               s.tdmr_count, s.reserved_areas, kb);

        size_t n = 0;
        tdmr_tdmr_info *infos = check_plan(name, strategy, plan, cmrs, n_cmrs, &s, &n);
        if (!linux)
            check_gate(name, &m, cmrs, n_cmrs, plan, infos, n);
        free(infos);
        tdmr_plan_free(plan);
    }
    free(cmrs);
    tdmr_memory_free(mem);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        check_fixture(argv[i]);
    for (size_t i = 0; i < N_EXPECTED; i++)
        CHECK(expected[i].seen == 1, "fixture %s given %d times", expected[i].file,
              expected[i].seen);
#ifdef TDMR_TEST_HOST_HOOKS
    CHECK(host_live_allocations == 0, "%ld allocations leaked", host_live_allocations);
#endif
    return checks_finish();
}

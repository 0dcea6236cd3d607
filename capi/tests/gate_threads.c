/* The gate from several C threads at once: workers admit memory additions and removals
 * (inside the CMRs, PAMT blocks, outside the CMRs) while the main thread initializes and then
 * runs a module update. Counts violations, which must be 0: a pre-initialization admission
 * outside the CMRs, an admission after initialization of anything but TDX memory of the plan,
 * a removal after initialization admitted at a PAMT block or refused anywhere else, an
 * addition or removal still open while initialization runs, or anything but busy while the
 * update runs. Every loop is bounded. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define G (1ull << 30)
#define SZ_4K 0x1000ull
#define WORKERS 4
#define MAX_OPS 200000
#define WANT 2000 /* admissions wanted before and after initialization */

static const tdmr_region regions[] = {
    {0x100000, 2 * G - 0x100000, 0}, {4 * G, 4 * G, 0}, {8 * G, 4 * G, 1}};
static const tdmr_cmr cmrs[] = {{0x100000, 2 * G - 0x100000}, {4 * G, 8 * G}};

static tdmr_gate *gate;
static tdmr_range pamt[64];
static size_t n_pamt;
static tdmr_tdmr_info *infos;
static size_t n_infos;

static atomic_long open_tokens, pre_admitted, post_admitted, violations, refused_busy;
static atomic_long pre_removed, post_removed, pamt_refused, busy_in_update;
static atomic_bool init_begun, initialized, update_done;
/* Odd while the update runs: set after tdmr_gate_begin_update, cleared before the finish. */
static atomic_long update_seq;

static bool in_cmrs(uint64_t p)
{
    for (size_t i = 0; i < 2; i++)
        if (p >= cmrs[i].base && p + SZ_4K <= cmrs[i].base + cmrs[i].size)
            return true;
    return false;
}

/* TDX memory of the plan: memory, inside a TDMR, in no reserved area and no PAMT block. */
static bool tdx_memory(uint64_t p)
{
    bool memory = false, tdmr = false;
    for (size_t i = 0; i < 3; i++)
        memory |= p >= regions[i].base && p + SZ_4K <= regions[i].base + regions[i].size;
    for (size_t t = 0; t < n_infos; t++) {
        if (p < infos[t].base || p + SZ_4K > infos[t].base + infos[t].size)
            continue;
        tdmr = true;
        for (size_t j = 0; j < TDMR_INFO_RESERVED_SLOTS; j++) {
            uint64_t rs = infos[t].base + infos[t].reserved_areas[j].offset;
            if (p < rs + infos[t].reserved_areas[j].size && rs < p + SZ_4K)
                return false;
        }
    }
    for (size_t j = 0; j < n_pamt; j++)
        if (p < pamt[j].base + pamt[j].size && pamt[j].base < p + SZ_4K)
            return false;
    return memory && tdmr;
}

static bool pamt_page(uint64_t p)
{
    for (size_t j = 0; j < n_pamt; j++)
        if (p < pamt[j].base + pamt[j].size && pamt[j].base < p + SZ_4K)
            return true;
    return false;
}

static uint64_t next_random(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void *worker(void *arg)
{
    uint64_t seed = 0x9e3779b97f4a7c15ull * (uintptr_t)arg + 1;
    for (long op = 0; op < MAX_OPS; op++) {
        if (atomic_load(&post_admitted) >= WANT && atomic_load(&post_removed) >= WANT / 10 &&
            atomic_load(&update_done))
            break;
        uint64_t r = next_random(&seed), page;
        switch (r % 4) {
        case 0: /* anywhere in the first 12 GiB, CMR or not */
            page = (next_random(&seed) % (12 * G / SZ_4K)) * SZ_4K;
            break;
        case 1: /* a PAMT page */
            page = pamt[r % n_pamt].base + ((next_random(&seed) % (pamt[r % n_pamt].size / SZ_4K)) * SZ_4K);
            break;
        default: /* inside the big region */
            page = 4 * G + (next_random(&seed) % (8 * G / SZ_4K)) * SZ_4K;
        }
        bool after = atomic_load(&initialized);
        long seq = atomic_load(&update_seq);
        tdmr_code rc;
        if (next_random(&seed) % 8 == 0) {
            /* A removal. */
            tdmr_memory_removal *rem = NULL;
            rc = tdmr_gate_admit_removal(gate, page, SZ_4K, &rem, NULL, NULL);
            if (rc == TDMR_OK && rem != NULL) {
                atomic_fetch_add(&open_tokens, 1);
                atomic_fetch_add(&pre_removed, 1);
                if (after)
                    atomic_fetch_add(&violations, 1);
                atomic_fetch_sub(&open_tokens, 1);
                tdmr_memory_removal_finish(rem);
            } else if (rc == TDMR_OK) {
                atomic_fetch_add(&post_removed, 1);
                if (pamt_page(page) || !atomic_load(&init_begun))
                    atomic_fetch_add(&violations, 1);
            } else if (rc == TDMR_ERR_HOLDS_TDX_METADATA) {
                atomic_fetch_add(&pamt_refused, 1);
                if (!pamt_page(page) || !atomic_load(&init_begun))
                    atomic_fetch_add(&violations, 1);
            } else if (rc == TDMR_ERR_BUSY) {
                atomic_fetch_add(&refused_busy, 1);
            } else {
                atomic_fetch_add(&violations, 1);
            }
        } else {
            tdmr_memory_admission *adm = NULL;
            rc = tdmr_gate_admit_memory(gate, page, SZ_4K, &adm, NULL);
            if (rc == TDMR_OK && adm != NULL) {
                atomic_fetch_add(&open_tokens, 1);
                atomic_fetch_add(&pre_admitted, 1);
                if (!in_cmrs(page) || after)
                    atomic_fetch_add(&violations, 1);
                atomic_fetch_sub(&open_tokens, 1);
                tdmr_memory_admission_finish(adm);
            } else if (rc == TDMR_OK) {
                atomic_fetch_add(&post_admitted, 1);
                if (!tdx_memory(page) || !atomic_load(&init_begun))
                    atomic_fetch_add(&violations, 1);
            } else if (rc == TDMR_ERR_BUSY) {
                atomic_fetch_add(&refused_busy, 1);
            } else if (rc == TDMR_ERR_NOT_CONVERTIBLE) {
                if (in_cmrs(page))
                    atomic_fetch_add(&violations, 1);
            } else if (rc == TDMR_ERR_NOT_TDX_MEMORY) {
                if (tdx_memory(page) || !atomic_load(&init_begun))
                    atomic_fetch_add(&violations, 1);
            } else {
                atomic_fetch_add(&violations, 1);
            }
        }
        /* The whole call ran while the update did: it must have been told busy. */
        if (seq % 2 == 1 && atomic_load(&update_seq) == seq) {
            if (rc == TDMR_ERR_BUSY)
                atomic_fetch_add(&busy_in_update, 1);
            else
                atomic_fetch_add(&violations, 1);
        }
    }
    return NULL;
}

int main(void)
{
    tdmr_error e;
    tdmr_memory *mem = NULL;
    tdmr_plan *plan = NULL;
    CHECK_CODE(tdmr_memory_new(regions, 3, cmrs, 2, &mem, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_plan_new(mem, NULL, &plan, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_plan_pamt_ranges(plan, pamt, 64, &n_pamt, &e), TDMR_OK, &e);
    CHECK_CODE(tdmr_plan_tdmr_infos(plan, NULL, 0, &n_infos, &e), TDMR_OK, &e);
    infos = aligned_alloc(TDMR_INFO_ALIGNMENT, n_infos * sizeof *infos);
    CHECK_CODE(tdmr_plan_tdmr_infos(plan, infos, n_infos, &n_infos, &e), TDMR_OK, &e);
    CHECK(n_pamt > 0, "no PAMT");

    CHECK_CODE(tdmr_gate_new(cmrs, 2, 4, 2, NULL, &gate, &e), TDMR_OK, &e);
    for (uint32_t cpu = 0; cpu < 4; cpu++) {
        tdmr_cpu_online *on = NULL;
        CHECK_CODE(tdmr_gate_cpu_online(gate, cpu, cpu / 2, &on, NULL, &e), TDMR_OK, &e);
        tdmr_cpu_online_finish(on);
    }

    pthread_t threads[WORKERS];
    for (uintptr_t i = 0; i < WORKERS; i++)
        CHECK(pthread_create(&threads[i], NULL, worker, (void *)i) == 0, "pthread_create");

    /* Initialize once the workers have been admitted often enough; retry while busy. */
    long spins = 0, busy = 0;
    while ((atomic_load(&pre_admitted) < WANT || atomic_load(&pre_removed) < WANT / 10) &&
           spins++ < 100000000)
        ;
    tdmr_init_ticket *ticket = NULL;
    tdmr_code rc;
    while ((rc = tdmr_gate_begin_init(gate, &ticket, &e)) == TDMR_ERR_BUSY && busy < 100000000)
        busy++;
    atomic_store(&init_begun, true);
    CHECK(rc == TDMR_OK, "begin_init: %s (%s) after %ld retries", tdmr_error_name(rc), e.message,
          busy);
    CHECK(atomic_load(&open_tokens) == 0, "%ld admissions open during initialization",
          atomic_load(&open_tokens));
    /* Hold initialization until the workers have been told "busy" a few times. */
    for (spins = 0; atomic_load(&refused_busy) < 100 && spins < 100000000; spins++)
        ;
    uint64_t status = 1;
    CHECK_CODE(tdmr_validate(infos, n_infos, cmrs, 2, NULL, &status, &e), TDMR_OK, &e);
    CHECK(atomic_load(&open_tokens) == 0, "%ld admissions open during initialization",
          atomic_load(&open_tokens));
    if (rc == TDMR_OK)
        CHECK_CODE(tdmr_init_ticket_publish(ticket, plan, NULL, &e), TDMR_OK, &e);
    atomic_store(&initialized, true);

    /* A runtime update once the workers have been admitted after initialization a while;
     * held until they have been told busy during it a few times. No CPU hotplug runs, so
     * nothing holds it off. */
    for (spins = 0; atomic_load(&post_admitted) < WANT / 4 && spins < 100000000; spins++)
        ;
    tdmr_update_ticket *update = NULL;
    CHECK_CODE(tdmr_gate_begin_update(gate, &update, &e), TDMR_OK, &e);
    atomic_fetch_add(&update_seq, 1);
    for (spins = 0; atomic_load(&busy_in_update) < 100 && spins < 100000000; spins++)
        ;
    atomic_fetch_add(&update_seq, 1);
    CHECK_CODE(tdmr_update_ticket_finish(update), TDMR_OK, &(tdmr_error){0});
    atomic_store(&update_done, true);

    for (int i = 0; i < WORKERS; i++)
        pthread_join(threads[i], NULL);
    printf("gate threads: %ld admitted before, %ld after, %ld removed before, %ld after, %ld "
           "removals refused at PAMT, %ld busy (%ld during the update), %ld begin_init retries, "
           "violations %ld\n",
           atomic_load(&pre_admitted), atomic_load(&post_admitted), atomic_load(&pre_removed),
           atomic_load(&post_removed), atomic_load(&pamt_refused), atomic_load(&refused_busy),
           atomic_load(&busy_in_update), busy, atomic_load(&violations));
    CHECK(atomic_load(&violations) == 0, "%ld violations", atomic_load(&violations));
    CHECK(atomic_load(&pre_admitted) >= WANT && atomic_load(&post_admitted) >= WANT &&
              atomic_load(&refused_busy) >= 100 && atomic_load(&busy_in_update) >= 100,
          "too few admissions or refusals to mean anything");
    CHECK(atomic_load(&pre_removed) >= WANT / 10 && atomic_load(&post_removed) >= WANT / 10 &&
              atomic_load(&pamt_refused) >= 10,
          "too few removals to mean anything");

    tdmr_gate_free(gate);
    tdmr_plan_free(plan);
    tdmr_memory_free(mem);
    free(infos);
    return checks_finish();
}

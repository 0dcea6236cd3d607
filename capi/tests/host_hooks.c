/* The three functions a kernel build of the tdmr C ABI (no `std` feature) needs from its C
 * host, as a user-space stand-in: an aligned allocator that counts live blocks (the tests
 * check it returns to zero), and a panic hook that aborts. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>

#include "tdmr.h"

long host_live_allocations;

void *tdmr_host_alloc(size_t size, size_t align)
{
    void *p = NULL;
    if (align < sizeof(void *))
        align = sizeof(void *);
    if (size == 0 || posix_memalign(&p, align, size) != 0)
        return NULL;
    host_live_allocations++;
    return p;
}

void tdmr_host_free(void *ptr, size_t size, size_t align)
{
    (void)size;
    (void)align;
    if (ptr != NULL)
        host_live_allocations--;
    free(ptr);
}

void tdmr_host_panic(const char *message, size_t len)
{
    fprintf(stderr, "tdmr_host_panic: %.*s\n", (int)len, message);
    abort();
}

/* The prebuilt `alloc` of a hosted target (x86_64-unknown-linux-gnu, where this test links the
 * no_std library) was compiled for unwinding and names the personality routine; with
 * panic=abort nothing unwinds, so it is never called. Kernel targets (x86_64-unknown-none)
 * ship `alloc` built with panic=abort and need no such symbol. */
void rust_eh_personality(void);
void rust_eh_personality(void)
{
    abort();
}

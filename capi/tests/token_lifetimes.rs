//! The gate's tokens keep it alive: whatever order the C caller frees the gate and ends its
//! tokens in, nothing touches freed memory. C's AddressSanitizer cannot see accesses made by
//! Rust code, so this test runs the entry points under an allocator that poisons every freed
//! block and never reuses it, and then checks that no poisoned byte changed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::null_mut;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tdmr_capi::error::{TDMR_OK, tdmr_code};
use tdmr_capi::gate::*;
use tdmr_capi::memory::{tdmr_cmr, tdmr_memory, tdmr_memory_free, tdmr_memory_new, tdmr_region};
use tdmr_capi::plan::{tdmr_plan, tdmr_plan_free, tdmr_plan_new};

const POISON: u8 = 0xdd;
const SLOTS: usize = 1 << 16;

/// Freed blocks, kept poisoned and never handed out again.
struct Quarantine;

static FREED: [(AtomicUsize, AtomicUsize); SLOTS] =
    [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; SLOTS];
static NEXT: AtomicUsize = AtomicUsize::new(0);

// SAFETY: allocation is System's; deallocation poisons the block and keeps it (a leak the test
// accepts), or gives it back to System when the record is full.
unsafe impl GlobalAlloc for Quarantine {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let i = NEXT.fetch_add(1, Ordering::Relaxed);
        if i >= SLOTS {
            // SAFETY: forwarded.
            return unsafe { System.dealloc(ptr, layout) };
        }
        // SAFETY: the block is ours until freed: writable for its size.
        unsafe { ptr.write_bytes(POISON, layout.size()) };
        FREED[i].0.store(ptr as usize, Ordering::Relaxed);
        FREED[i].1.store(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Quarantine = Quarantine;

/// The first freed block some byte of which changed after it was freed.
fn written_after_free() -> Option<(usize, usize)> {
    let n = NEXT.load(Ordering::Relaxed).min(SLOTS);
    (0..n).find_map(|i| {
        let (p, len) = (
            FREED[i].0.load(Ordering::Relaxed),
            FREED[i].1.load(Ordering::Relaxed),
        );
        // SAFETY: quarantined blocks are never freed or reused, so they stay readable.
        let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, len) };
        bytes.iter().position(|&b| b != POISON).map(|at| (p, at))
    })
}

/// The tests share the quarantine record; run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const G: u64 = 1 << 30;
const CMRS: [tdmr_cmr; 1] = [tdmr_cmr {
    base: G,
    size: 4 * G,
}];

fn ok(code: tdmr_code) {
    assert_eq!(code, TDMR_OK);
}

fn new_gate() -> *mut tdmr_gate {
    let mut g = null_mut();
    // SAFETY: valid arrays and out-pointers; NULL err.
    unsafe {
        ok(tdmr_gate_new(
            CMRS.as_ptr(),
            1,
            2,
            1,
            std::ptr::null(),
            &mut g,
            null_mut(),
        ));
        let mut on = null_mut();
        ok(tdmr_gate_cpu_online(
            g,
            0,
            0,
            &mut on,
            null_mut(),
            null_mut(),
        ));
        ok(tdmr_cpu_online_finish(on));
    }
    g
}

fn new_plan() -> (*mut tdmr_memory, *mut tdmr_plan) {
    let regions = [tdmr_region {
        base: G,
        size: 4 * G,
        node: 0,
    }];
    let (mut m, mut p) = (null_mut(), null_mut());
    // SAFETY: valid arrays and out-pointers; NULL err and options.
    unsafe {
        ok(tdmr_memory_new(
            regions.as_ptr(),
            1,
            CMRS.as_ptr(),
            1,
            &mut m,
            null_mut(),
        ));
        ok(tdmr_plan_new(m, std::ptr::null(), &mut p, null_mut()));
    }
    (m, p)
}

/// Ends one token after freeing the gate's handle.
type Ending = fn(*mut tdmr_gate, *mut tdmr_plan);

#[test]
fn every_token_may_outlive_the_callers_gate_handle() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (m, p) = new_plan();
    let endings: [(&str, Ending); 8] = [
        ("admission finished", |g, _| {
            let mut a = null_mut();
            // SAFETY: a live gate; the token is ended after the gate's handle is freed.
            unsafe {
                ok(tdmr_gate_admit_memory(g, G, 4096, &mut a, null_mut()));
                tdmr_gate_free(g);
                ok(tdmr_memory_admission_finish(a));
            }
        }),
        ("CPU online finished", |g, _| {
            let mut on = null_mut();
            // SAFETY: as above.
            unsafe {
                ok(tdmr_gate_cpu_online(
                    g,
                    1,
                    0,
                    &mut on,
                    null_mut(),
                    null_mut(),
                ));
                tdmr_gate_free(g);
                ok(tdmr_cpu_online_finish(on));
            }
        }),
        ("CPU online abandoned", |g, _| {
            let mut on = null_mut();
            // SAFETY: as above.
            unsafe {
                ok(tdmr_gate_cpu_online(
                    g,
                    1,
                    0,
                    &mut on,
                    null_mut(),
                    null_mut(),
                ));
                tdmr_gate_free(g);
                ok(tdmr_cpu_online_abandon(on));
            }
        }),
        ("ticket failed", |g, _| {
            let mut t = null_mut();
            // SAFETY: as above.
            unsafe {
                ok(tdmr_gate_begin_init(g, &mut t, null_mut()));
                tdmr_gate_free(g);
                ok(tdmr_init_ticket_fail(t));
            }
        }),
        ("ticket published", |g, p| {
            let mut t = null_mut();
            let mut frozen = 0usize;
            // SAFETY: as above; `p` is a live plan.
            unsafe {
                ok(tdmr_gate_begin_init(g, &mut t, null_mut()));
                tdmr_gate_free(g);
                ok(tdmr_init_ticket_publish(t, p, &mut frozen, null_mut()));
            }
            assert!(frozen > 0);
        }),
        ("removal finished", |g, _| {
            let mut r = null_mut();
            // SAFETY: as above.
            unsafe {
                ok(tdmr_gate_admit_removal(
                    g,
                    G,
                    4096,
                    &mut r,
                    null_mut(),
                    null_mut(),
                ));
                tdmr_gate_free(g);
                ok(tdmr_memory_removal_finish(r));
            }
        }),
        ("removal abandoned", |g, _| {
            let mut r = null_mut();
            // SAFETY: as above.
            unsafe {
                ok(tdmr_gate_admit_removal(
                    g,
                    G,
                    4096,
                    &mut r,
                    null_mut(),
                    null_mut(),
                ));
                tdmr_gate_free(g);
                ok(tdmr_memory_removal_abandon(r));
            }
        }),
        ("update ticket finished", |g, p| {
            let (mut t, mut u) = (null_mut(), null_mut());
            // SAFETY: as above; `p` is a live plan.
            unsafe {
                ok(tdmr_gate_begin_init(g, &mut t, null_mut()));
                ok(tdmr_init_ticket_publish(t, p, null_mut(), null_mut()));
                ok(tdmr_gate_begin_update(g, &mut u, null_mut()));
                tdmr_gate_free(g);
                ok(tdmr_update_ticket_finish(u));
            }
        }),
    ];
    for (what, end) in endings {
        let before = NEXT.load(Ordering::Relaxed);
        end(new_gate(), p);
        assert!(
            NEXT.load(Ordering::Relaxed) > before,
            "{what}: the gate was never freed"
        );
        assert_eq!(
            written_after_free(),
            None,
            "{what}: freed memory was written"
        );
    }
    // SAFETY: live handles, freed once.
    unsafe {
        tdmr_plan_free(p);
        tdmr_memory_free(m);
    }
    assert!(
        NEXT.load(Ordering::Relaxed) < SLOTS,
        "quarantine overflowed"
    );
    assert_eq!(written_after_free(), None);
}

//! The program's heap: a linked-list allocator behind a spin lock, over one block of pages
//! taken from the firmware before any AP runs. Boot services' own allocator may only be called
//! on the bootstrap processor; this one serves every CPU.

use linked_list_allocator::LockedHeap;
use uefi::boot::{self, AllocateType, MemoryType};

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Bytes of heap: the mock module, the plan and the gate of a few GiB of memory fit many times.
pub const HEAP_BYTES: usize = 64 << 20;

/// Takes `HEAP_BYTES` of pages from the firmware and hands them to the allocator. Call once,
/// first thing, on the bootstrap processor.
pub fn init() -> uefi::Result<()> {
    let pages = HEAP_BYTES / 4096;
    let base = boot::allocate_pages(AllocateType::AnyPages, MemoryType::LOADER_DATA, pages)?;
    // SAFETY: the firmware just gave us `pages` pages at `base`, which nothing else uses; they
    // stay ours (LOADER_DATA is never freed by the firmware) for the life of the program, and
    // the heap is initialised once, before anything allocates.
    unsafe { HEAP.lock().init(base.as_ptr(), HEAP_BYTES) };
    Ok(())
}

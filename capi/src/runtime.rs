//! Without `std` (kernels): the allocator and the panic handler are the C host's.
//!
//! The host provides, with C linkage:
//!
//! - `void *tdmr_host_alloc(size_t size, size_t align)`: `size` bytes (never 0) aligned to
//!   `align` (a power of two, up to 512), or NULL;
//! - `void tdmr_host_free(void *ptr, size_t size, size_t align)`: frees what `tdmr_host_alloc`
//!   returned for that size and alignment;
//! - `void tdmr_host_panic(const char *message, size_t len)`: called on a panic (a bug in
//!   tdmr, or an allocation failure inside the library), with a UTF-8 message that is not
//!   NUL-terminated; it must not return.

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::{c_char, c_void};
use core::fmt::Write;

use crate::error::MessageBuf;

unsafe extern "C" {
    /// Kernel builds only (no `std` feature): provided by the C host. `size` bytes (never 0)
    /// aligned to `align` (a power of two, at most 512), or NULL.
    fn tdmr_host_alloc(size: usize, align: usize) -> *mut c_void;
    /// Kernel builds only: provided by the C host. Frees what `tdmr_host_alloc` returned for
    /// that size and alignment.
    fn tdmr_host_free(ptr: *mut c_void, size: usize, align: usize);
    /// Kernel builds only: provided by the C host. Called on a panic (a bug in tdmr, or an
    /// allocation failure inside the library) with `len` bytes of UTF-8, not NUL-terminated.
    /// Must not return.
    fn tdmr_host_panic(message: *const c_char, len: usize) -> !;
}

struct HostAllocator;

// SAFETY: the host's contract above is GlobalAlloc's: `tdmr_host_alloc` returns NULL or a
// block of at least `size` bytes aligned to `align` that nothing else uses, and
// `tdmr_host_free` takes back exactly such blocks.
unsafe impl GlobalAlloc for HostAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: GlobalAlloc callers never ask for size 0; the host's contract does the rest.
        unsafe { tdmr_host_alloc(layout.size(), layout.align()) }.cast()
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this layout (GlobalAlloc's contract).
        unsafe { tdmr_host_free(ptr.cast(), layout.size(), layout.align()) }
    }
}

#[global_allocator]
static ALLOCATOR: HostAllocator = HostAllocator;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut buf = MessageBuf::new();
    let _ = write!(buf, "tdmr: {info}");
    // SAFETY: `buf` holds `len` initialised bytes; the host's contract says it never returns.
    unsafe { tdmr_host_panic(buf.bytes.as_ptr().cast(), buf.len) }
}

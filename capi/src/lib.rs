//! The C ABI of [`tdmr`]: a static library (`libtdmr_capi.a`) and the header
//! `capi/include/tdmr.h`, which cbindgen generates from this crate (`scripts/capi-test` checks
//! that the committed header is the generated one).
//!
//! What a C kernel or hypervisor needs, and nothing Rust-shaped: a memory map from arrays
//! ([`memory`]) or from the firmware's E820 or UEFI map and SRAT ([`firmware`]), a plan with
//! strategy, hole policy and the module's limits, laid out as the 512-byte `TDMR_INFO` array
//! in caller memory ([`plan`]), TDH.SYS.CONFIG's checks with the module's raw 64-bit status
//! ([`validate`]), the hotplug gate's admission, removal and update calls ([`gate`]), and
//! error codes with messages ([`error`]).
//!
//! # Rules at the boundary
//!
//! - Every entry point checks every pointer it is given (null, alignment, that the length does
//!   not overflow the address space) and every integer that selects something (strategy, hole
//!   policy, flags), and returns a documented `TDMR_ERR_*` code. Out-parameters are written
//!   only on success unless the header says otherwise.
//! - Nothing panics across the boundary: the code here avoids panics structurally (checked
//!   arithmetic, no indexing or unwrapping of what C gave), and with the `std` feature every
//!   entry point also runs under `catch_unwind`, turning a panic (a bug) into
//!   `TDMR_ERR_INTERNAL`. Without `std` there is no unwinding: a panic calls the host's
//!   `tdmr_host_panic`.
//! - Rust objects are opaque handles with explicit free functions; the header says who owns
//!   every handle and buffer, and which calls may run concurrently.
//!
//! # Kernels (`no_std`)
//!
//! Built without the default `std` feature (`cargo build -p tdmr-capi --release --target
//! x86_64-unknown-none --no-default-features`), the library is `no_std` + `alloc` and links
//! against three functions the C host provides: `tdmr_host_alloc(size, align)`,
//! `tdmr_host_free(ptr, size, align)` and `tdmr_host_panic(message, len)` (which must not
//! return). The `std` build keeps std's allocator and `catch_unwind`, which is what a hosted
//! C program (a hypervisor's user-space part, the tests) wants.
#![no_std]
#![allow(non_camel_case_types)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod error;
pub mod firmware;
pub mod gate;
pub mod memory;
pub mod plan;
pub mod validate;

mod ffi;
#[cfg(not(feature = "std"))]
mod runtime;

use core::ffi::c_char;

/// The version of this library, `MAJOR.MINOR.PATCH`, as a static NUL-terminated string.
///
/// Ownership: the string is static; never free it.
#[unsafe(no_mangle)]
pub extern "C" fn tdmr_version() -> *const c_char {
    const VERSION: &core::ffi::CStr = match core::ffi::CStr::from_bytes_with_nul(
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
    ) {
        Ok(v) => v,
        Err(_) => c"unknown",
    };
    VERSION.as_ptr()
}

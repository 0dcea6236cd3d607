//! Host memory the TDX module is handed: the buffers TDH.SYS.CONFIG reads (`TDMR_INFO`s and
//! their PA array), and PAMT blocks the planner carved out of TDX memory.

use core::fmt;

use crate::addr::PhysRange;

/// The host could not provide memory bring-up asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostMemoryError {
    /// No physically contiguous buffer of this size and alignment for a module input.
    NoBuffer {
        /// Bytes asked for.
        bytes: usize,
        /// Alignment asked for.
        align: u64,
    },
    /// A PAMT block the planner chose cannot be taken out of the kernel's page allocator
    /// (pages in use and not movable, or not the kernel's to give).
    PamtUnavailable {
        /// The range asked for.
        range: PhysRange,
    },
}

impl fmt::Display for HostMemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            HostMemoryError::NoBuffer { bytes, align } => write!(
                f,
                "no physically contiguous {bytes} bytes aligned to {align} for a TDX module buffer"
            ),
            HostMemoryError::PamtUnavailable { range } => write!(
                f,
                "PAMT memory {range} cannot be taken out of the kernel's page allocator"
            ),
        }
    }
}

impl core::error::Error for HostMemoryError {}

/// Physically contiguous host memory for the TDX module: buffers it reads, and the PAMT
/// memory it will own.
///
/// A kernel implements `place` with its page allocator (allocate, copy, return the physical
/// address) and `release` with the matching free; the buffers must be mapped with KeyID 0
/// (the module reads them as shared memory). `claim_pamt` takes a range of TDX memory out of
/// the page allocator (Linux would use `alloc_contig_range` on it, or a boot-time reservation),
/// `unclaim_pamt` gives it back.
///
/// # Safety
///
/// The module reads and writes what this trait hands it, so the implementer promises:
///
/// - `place` returns the physical address of a buffer holding `bytes`, at that alignment,
///   that nothing else uses or frees until `release(pa, len)` is called for it;
/// - `claim_pamt(range)` returns `Ok` only once every byte of `range` is out of every other
///   use — out of the page allocator, not mapped for or written by anything else, not shared
///   with devices — and keeps it so until `unclaim_pamt(range)`; after TDH.SYS.CONFIG
///   accepted a configuration holding it, that is for the life of the module, or until the
///   [`super::Teardown`] of a failed bring-up says it may go back. Bring-up claims each range
///   at most once and unclaims only what it claimed.
///
/// ```
/// use tdmr::addr::PhysRange;
/// use tdmr::init::{HostMemory, HostMemoryError};
///
/// /// A host with no spare memory: every request is refused, which is always sound.
/// struct Full;
/// // SAFETY: nothing is ever handed out.
/// unsafe impl HostMemory for Full {
///     fn place(&self, bytes: &[u8], align: u64) -> Result<u64, HostMemoryError> {
///         Err(HostMemoryError::NoBuffer { bytes: bytes.len(), align })
///     }
///     fn release(&self, _pa: u64, _len: usize) {}
///     fn claim_pamt(&self, range: PhysRange) -> Result<(), HostMemoryError> {
///         Err(HostMemoryError::PamtUnavailable { range })
///     }
///     fn unclaim_pamt(&self, _range: PhysRange) {}
/// }
/// ```
#[allow(unsafe_code)] // the declaration of the contract; implementations are unsafe
pub unsafe trait HostMemory {
    /// Copies `bytes` into a physically contiguous buffer aligned to `align` (a power of two)
    /// and returns its physical address. The buffer stays valid until [`HostMemory::release`].
    fn place(&self, bytes: &[u8], align: u64) -> Result<u64, HostMemoryError>;

    /// Frees a buffer `place` returned (`len` is the length given to `place`).
    fn release(&self, pa: u64, len: usize);

    /// Takes `range`, TDX memory the planner chose for PAMT, out of the kernel's page
    /// allocator before TDH.SYS.CONFIG; [`HostMemoryError::PamtUnavailable`] when it cannot.
    fn claim_pamt(&self, range: PhysRange) -> Result<(), HostMemoryError>;

    /// Gives back a range [`HostMemory::claim_pamt`] took.
    fn unclaim_pamt(&self, range: PhysRange);
}

//! Host memory the TDX module is handed: the buffers TDH.SYS.CONFIG reads (`TDMR_INFO`s and
//! their PA array) and TDH.SYS.INFO writes, PAMT blocks the planner carved out of TDX memory,
//! and the pages the module extensions keep.

use alloc::vec::Vec;
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
    /// The host cannot read back a buffer it placed (what TDH.SYS.INFO wrote: TDX 1.0 reports
    /// its limits and CMRs only that way).
    Unreadable {
        /// The buffer.
        pa: u64,
        /// Bytes asked for.
        len: usize,
    },
    /// No memory for the module extensions.
    NoExtensionMemory {
        /// 4 KiB pages asked for.
        pages: u64,
    },
    /// The host answered a request for extension memory with another amount, or with ranges
    /// that are not whole 4 KiB pages.
    WrongExtensionMemory {
        /// 4 KiB pages asked for.
        asked: u64,
        /// Whole pages given.
        given: u64,
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
            HostMemoryError::Unreadable { pa, len } => write!(
                f,
                "the host cannot read back {len} bytes of the buffer at {pa:#x}"
            ),
            HostMemoryError::NoExtensionMemory { pages } => write!(
                f,
                "no {pages} pages of TDX memory for the TDX module extensions"
            ),
            HostMemoryError::WrongExtensionMemory { asked, given } => write!(
                f,
                "asked for {asked} pages of extension memory, the host gave {given} whole pages"
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
///   at most once and unclaims only what it claimed;
/// - `claim_extension_pages(n)` returns ranges of whole 4 KiB pages of TDX memory (inside the
///   configuration's TDMRs, outside their reserved areas and every PAMT) that are out of every
///   other use for good: the module extensions keep them until TDH.SYS.DISABLE or a platform
///   reset;
/// - `read(pa, buf)` copies bytes of a buffer `place` returned and not yet released.
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

    /// Copies `buf.len()` bytes at `pa`, inside a buffer [`HostMemory::place`] returned, into
    /// `buf`: how bring-up reads what TDH.SYS.INFO wrote (TDX 1.0 has no TDH.SYS.RD). The
    /// default cannot ([`HostMemoryError::Unreadable`]), so bring-up on TDX 1.0 fails.
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), HostMemoryError> {
        Err(HostMemoryError::Unreadable { pa, len: buf.len() })
    }

    /// Takes `pages` 4 KiB pages of TDX memory for the TDX module extensions (TDH.EXT.MEM.ADD,
    /// never given back): Linux allocates them from its page allocator. Returns them as
    /// ranges of whole pages, `pages` pages in all. The default has none
    /// ([`HostMemoryError::NoExtensionMemory`]), so bring-up of a module whose extensions
    /// need memory fails.
    fn claim_extension_pages(&self, pages: u64) -> Result<Vec<PhysRange>, HostMemoryError> {
        Err(HostMemoryError::NoExtensionMemory { pages })
    }
}

//! Host memory the TDX module reads: where the driver puts `TDMR_INFO`s and their PA array.

use core::fmt;

/// No physically contiguous buffer of the size and alignment asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostMemoryError {
    /// Bytes asked for.
    pub bytes: usize,
    /// Alignment asked for.
    pub align: u64,
}

impl fmt::Display for HostMemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no physically contiguous {} bytes aligned to {} for a TDX module buffer",
            self.bytes, self.align
        )
    }
}

impl core::error::Error for HostMemoryError {}

/// Physically contiguous host buffers for the TDX module to read.
///
/// A kernel implements `place` with its page allocator (allocate, copy, return the physical
/// address) and `release` with the matching free; the buffers must be mapped with KeyID 0 (the
/// module reads them as shared memory).
pub trait HostMemory {
    /// Copies `bytes` into a physically contiguous buffer aligned to `align` (a power of two)
    /// and returns its physical address. The buffer stays valid until [`HostMemory::release`].
    fn place(&self, bytes: &[u8], align: u64) -> Result<u64, HostMemoryError>;

    /// Frees a buffer `place` returned (`len` is the length given to `place`).
    fn release(&self, pa: u64, len: usize);
}

//! Simulated physical memory: sparse 4 KiB pages, zero until written.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use core::fmt;

use crate::addr::{MAX_PA, SZ_4K};

const PAGE: usize = SZ_4K as usize;

/// An access that reaches beyond the 52-bit physical address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysMemError {
    /// First byte of the access.
    pub pa: u64,
    /// Its length.
    pub len: usize,
}

impl fmt::Display for PhysMemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "physical access [{:#x}, +{:#x}) reaches beyond 2^52",
            self.pa, self.len
        )
    }
}

impl core::error::Error for PhysMemError {}

/// Physical memory as the mock module sees it: what the host wrote, zero elsewhere.
///
/// Storage grows with the pages written, never with the address space: the mock tracks PAMT
/// initialization per TDMR and never materialises PAMT pages.
#[derive(Clone, Debug, Default)]
pub(crate) struct PhysMem {
    pages: BTreeMap<u64, Box<[u8; PAGE]>>,
}

impl PhysMem {
    /// Empty (all zero) memory.
    pub fn new() -> Self {
        PhysMem::default()
    }

    fn check(pa: u64, len: usize) -> Result<(), PhysMemError> {
        match pa.checked_add(len as u64) {
            Some(end) if end <= MAX_PA => Ok(()),
            _ => Err(PhysMemError { pa, len }),
        }
    }

    /// Writes `bytes` at `pa`.
    pub fn write(&mut self, pa: u64, bytes: &[u8]) -> Result<(), PhysMemError> {
        Self::check(pa, bytes.len())?;
        let mut done = 0;
        while done < bytes.len() {
            let at = pa + done as u64;
            let offset = (at % SZ_4K) as usize;
            let n = (PAGE - offset).min(bytes.len() - done);
            let page = self
                .pages
                .entry(at - offset as u64)
                .or_insert_with(|| Box::new([0; PAGE]));
            page[offset..offset + n].copy_from_slice(&bytes[done..done + n]);
            done += n;
        }
        Ok(())
    }

    /// Fills `buf` from `pa`.
    pub fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), PhysMemError> {
        Self::check(pa, buf.len())?;
        let mut done = 0;
        while done < buf.len() {
            let at = pa + done as u64;
            let offset = (at % SZ_4K) as usize;
            let n = (PAGE - offset).min(buf.len() - done);
            match self.pages.get(&(at - offset as u64)) {
                Some(page) => buf[done..done + n].copy_from_slice(&page[offset..offset + n]),
                None => buf[done..done + n].fill(0),
            }
            done += n;
        }
        Ok(())
    }

    /// The little-endian `u64` at `pa`.
    pub fn read_u64(&self, pa: u64) -> Result<u64, PhysMemError> {
        let mut b = [0u8; 8];
        self.read(pa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Zeroes `[pa, pa + len)`.
    pub fn zero(&mut self, pa: u64, len: usize) -> Result<(), PhysMemError> {
        Self::check(pa, len)?;
        let mut done = 0;
        while done < len {
            let at = pa + done as u64;
            let offset = (at % SZ_4K) as usize;
            let n = (PAGE - offset).min(len - done);
            if let Some(page) = self.pages.get_mut(&(at - offset as u64)) {
                page[offset..offset + n].fill(0);
            }
            done += n;
        }
        Ok(())
    }

    /// 4 KiB pages holding data.
    pub fn pages(&self) -> usize {
        self.pages.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_straddle_pages_and_unwritten_memory_reads_zero() {
        let mut m = PhysMem::new();
        m.write(0x1ffc, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        assert_eq!(m.read_u64(0x1ffc).unwrap(), 0x0807060504030201);
        assert_eq!(m.read_u64(0x9000).unwrap(), 0);
        assert_eq!(m.pages(), 2);
    }
}

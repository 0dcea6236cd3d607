//! Work mode: TDH.SYS.TDMR.INIT does the module's work for its chunk instead of only advancing
//! a pointer — it writes the PAMT entries of its 4 MiB (16 MiB with Dynamic PAMT) into memory
//! the mock owns, so a benchmark of bring-up measures real memory writes spread over LPs.
//!
//! Each configured TDMR gets an image of its PAMT, allocated at TDH.SYS.CONFIG: one 16-byte
//! PAMT_4K entry per 4 KiB page (with Dynamic PAMT, one bitmap bit per page instead), one
//! PAMT_2M entry per 2 MiB and one PAMT_1G entry per 1 GiB. A call writes its chunk's entries
//! outside the module's global lock, under the TDMR's own lock, which only the LP holding the
//! TDMR's mutex takes — so calls on different TDMRs write in parallel, as on the module.
//!
//! Entries: word 0 is the page type (`PT_NDA` 0, `PT_RSVD` 1 for pages of reserved areas),
//! word 1 is [`INITIALIZED`], so an entry no call wrote reads as all zero.
//!
//! The PAMT_4K image is kept in one block per GiB of the TDMR (TDMRs are 1 GiB aligned and
//! sized, so a GiB belongs to one TDMR at most). Blocks come from [`ResidentPamt`] when the
//! module was given resident PAMT memory ([`MockModule::with_resident_pamt_memory`]): written
//! once when the module is built, so the calls' writes land on memory that is already mapped —
//! as a kernel's PAMT memory is — instead of taking the host OS's first-touch page faults.
//! Otherwise they are allocated (zeroed, untouched) at TDH.SYS.CONFIG.
//!
//! [`MockModule::with_resident_pamt_memory`]: super::MockModule::with_resident_pamt_memory

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use crate::addr::{PhysRange, SZ_1G, SZ_2M, SZ_4K};
use crate::seamcall::lock::Lock;

/// Word 1 of every entry TDH.SYS.TDMR.INIT wrote.
pub(crate) const INITIALIZED: u64 = 1 << 63;
/// Page type of a page in a reserved area.
pub(crate) const PT_RSVD: u64 = 1;
/// Page type of a page not yet assigned.
pub(crate) const PT_NDA: u64 = 0;

/// 4 KiB pages per GiB: PAMT_4K entries per block.
const PAGES_PER_GIB: usize = (SZ_1G / SZ_4K) as usize;

/// A GiB's PAMT_4K entries, two words per page.
type Block = Box<[u64]>;

fn zeroed_block() -> Block {
    vec![0u64; 2 * PAGES_PER_GIB].into_boxed_slice()
}

/// The two words of page `p`'s PAMT_4K entry in a TDMR's `blocks` (`p` inside the TDMR).
fn entry_mut(blocks: &mut [Block], p: usize) -> &mut [u64] {
    let o = 2 * (p % PAGES_PER_GIB);
    &mut blocks[p / PAGES_PER_GIB][o..o + 2]
}

/// PAMT_4K blocks written once, ahead of TDH.SYS.CONFIG, by GiB number.
#[derive(Debug, Default)]
pub(crate) struct ResidentPamt {
    blocks: BTreeMap<u64, Block>,
}

impl ResidentPamt {
    /// A block for every GiB that `ranges` touch, each page of it written once (with zeros,
    /// through `black_box` so that the writes are not optimised away on zeroed memory).
    pub(crate) fn for_ranges(ranges: impl Iterator<Item = PhysRange>) -> Self {
        let mut blocks = BTreeMap::new();
        for r in ranges {
            for gib in r.start() / SZ_1G..r.end().div_ceil(SZ_1G) {
                blocks.entry(gib).or_insert_with(|| {
                    let mut b = zeroed_block();
                    // 512 words per 4 KiB page of the block.
                    for w in b.iter_mut().step_by(512) {
                        *w = core::hint::black_box(0);
                    }
                    b
                });
            }
        }
        ResidentPamt { blocks }
    }

    /// Bytes held (the blocks not yet handed to a TDMR).
    pub(crate) fn bytes(&self) -> u64 {
        (self.blocks.len() * 2 * PAGES_PER_GIB * core::mem::size_of::<u64>()) as u64
    }

    /// The block of GiB `gib`, taken out (it then belongs to a TDMR's image).
    fn take(&mut self, gib: u64) -> Option<Block> {
        self.blocks.remove(&gib)
    }
}

/// One TDMR's PAMT as the module would write it.
#[derive(Debug)]
pub(crate) struct PamtImage {
    base: u64,
    /// Reserved areas, absolute, ascending.
    reserved: Vec<PhysRange>,
    /// PAMT_4K: two words per page, one block per GiB of the TDMR (without Dynamic PAMT).
    entries_4k: Vec<Block>,
    /// The Dynamic PAMT bitmap: one bit per page, set for pages of reserved areas.
    bitmap: Vec<u64>,
    /// Pages whose bitmap bit TDH.SYS.TDMR.INIT has initialized (Dynamic PAMT).
    bitmap_initialized: u64,
    entries_2m: Vec<u64>,
    entries_1g: Vec<u64>,
}

/// A TDMR's image, shared between the module's state and the LP writing it.
pub(crate) type SharedImage = Arc<Lock<PamtImage>>;

impl PamtImage {
    // Without `std` the lock is a `RefCell` and the mock single-threaded: the `Arc` is then
    // only shared between the module's state and the one call writing the chunk.
    #[allow(clippy::arc_with_non_send_sync)]
    /// The image of TDMR `[base, base + size)` (1 GiB aligned and sized, as the validator
    /// checked), its PAMT_4K blocks from `resident` where it has them.
    pub(crate) fn new(
        base: u64,
        size: u64,
        reserved: &[PhysRange],
        dynamic_pamt: bool,
        resident: &mut ResidentPamt,
    ) -> SharedImage {
        let pages = (size / SZ_4K) as usize;
        let (entries_4k, bitmap) = if dynamic_pamt {
            (Vec::new(), vec![0u64; pages.div_ceil(64)])
        } else {
            let blocks = (base / SZ_1G..(base + size) / SZ_1G)
                .map(|gib| resident.take(gib).unwrap_or_else(zeroed_block))
                .collect();
            (blocks, Vec::new())
        };
        Arc::new(Lock::new(PamtImage {
            base,
            reserved: reserved.to_vec(),
            entries_4k,
            bitmap,
            bitmap_initialized: 0,
            entries_2m: vec![0u64; 2 * (size / SZ_2M) as usize],
            entries_1g: vec![0u64; 2 * (size / SZ_1G) as usize],
        }))
    }

    /// Writes the entries of `[from, to)` (absolute, inside the TDMR, 4 KiB aligned).
    pub(crate) fn initialize(&mut self, from: u64, to: u64, dynamic_pamt: bool) {
        let base = self.base;
        let page = move |pa: u64| ((pa - base) / SZ_4K) as usize;
        // Every page of the chunk: not yet assigned...
        if dynamic_pamt {
            for p in page(from)..page(to) {
                self.bitmap[p / 64] &= !(1 << (p % 64));
            }
            self.bitmap_initialized += (to - from) / SZ_4K;
        } else {
            for p in page(from)..page(to) {
                let e = entry_mut(&mut self.entries_4k, p);
                e[0] = PT_NDA;
                e[1] = INITIALIZED;
            }
        }
        // ...but the pages of reserved areas.
        let first = self.reserved.partition_point(|r| r.end() <= from);
        for r in &self.reserved[first..] {
            if r.start() >= to {
                break;
            }
            let (s, e) = (r.start().max(from), r.end().min(to));
            for p in page(s)..page(e) {
                if dynamic_pamt {
                    self.bitmap[p / 64] |= 1 << (p % 64);
                } else {
                    entry_mut(&mut self.entries_4k, p)[0] = PT_RSVD;
                }
            }
        }
        for (level, entries) in [(SZ_2M, &mut self.entries_2m), (SZ_1G, &mut self.entries_1g)] {
            let first = (from - self.base).div_ceil(level);
            let last = (to - self.base).div_ceil(level);
            for e in first..last {
                entries[2 * e as usize] = PT_NDA;
                entries[2 * e as usize + 1] = INITIALIZED;
            }
        }
    }

    /// The PAMT_4K entry of `pa` (`None` outside the TDMR or with Dynamic PAMT).
    pub(crate) fn entry_4k(&self, pa: u64) -> Option<(u64, u64)> {
        let p = (pa.checked_sub(self.base)? / SZ_4K) as usize;
        let o = 2 * (p % PAGES_PER_GIB);
        let e = self.entries_4k.get(p / PAGES_PER_GIB)?.get(o..o + 2)?;
        Some((e[0], e[1]))
    }

    /// The Dynamic PAMT bitmap bit of `pa` (`None` outside the TDMR or without Dynamic PAMT).
    pub(crate) fn bitmap_bit(&self, pa: u64) -> Option<bool> {
        let p = (pa.checked_sub(self.base)? / SZ_4K) as usize;
        let w = self.bitmap.get(p / 64)?;
        Some(w >> (p % 64) & 1 == 1)
    }

    /// Entries (pages, with Dynamic PAMT) written so far at the 4K level.
    pub(crate) fn initialized_4k(&self) -> u64 {
        if self.entries_4k.is_empty() {
            self.bitmap_initialized
        } else {
            self.entries_4k
                .iter()
                .flat_map(|b| b.chunks_exact(2))
                .filter(|e| e[1] == INITIALIZED)
                .count() as u64
        }
    }

    /// Entries written so far at the 2M and 1G levels.
    pub(crate) fn initialized_nodes(&self) -> (u64, u64) {
        let n = |v: &[u64]| v.chunks_exact(2).filter(|e| e[1] == INITIALIZED).count() as u64;
        (n(&self.entries_2m), n(&self.entries_1g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_marks_its_reserved_pages_and_its_node_entries() {
        let rsvd = [PhysRange::new(SZ_1G + 0x3000, SZ_1G + 0x5000).unwrap()];
        let img = PamtImage::new(SZ_1G, SZ_1G, &rsvd, false, &mut ResidentPamt::default());
        img.with(|i| {
            i.initialize(SZ_1G, SZ_1G + 4 * (1 << 20), false);
            assert_eq!(i.entry_4k(SZ_1G + 0x2000), Some((PT_NDA, INITIALIZED)));
            assert_eq!(i.entry_4k(SZ_1G + 0x3000), Some((PT_RSVD, INITIALIZED)));
            assert_eq!(i.entry_4k(SZ_1G + 0x4fff), Some((PT_RSVD, INITIALIZED)));
            assert_eq!(i.entry_4k(SZ_1G + 0x5000), Some((PT_NDA, INITIALIZED)));
            assert_eq!(i.entry_4k(SZ_1G + 0x40_0000), Some((0, 0)));
            assert_eq!(i.initialized_4k(), 1024);
            assert_eq!(i.initialized_nodes(), (2, 1));
        });
        let img = PamtImage::new(SZ_1G, SZ_1G, &rsvd, true, &mut ResidentPamt::default());
        img.with(|i| {
            i.initialize(SZ_1G, SZ_1G + 16 * (1 << 20), true);
            assert_eq!(i.bitmap_bit(SZ_1G + 0x3000), Some(true));
            assert_eq!(i.bitmap_bit(SZ_1G + 0x5000), Some(false));
            assert_eq!(i.initialized_4k(), 4096);
        });
    }
}

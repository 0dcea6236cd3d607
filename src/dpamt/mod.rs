//! Dynamic PAMT at run time: the PAMT_4K pages of a 2 MiB range are supplied when the first
//! 4 KiB page of the range is handed to the TDX module and taken back after the last one is
//! reclaimed — without a lock.
//!
//! With Dynamic PAMT on (TDX_FEATURES0 bit 36, TDH.SYS.CONFIG R8 bit 16), the module keeps only
//! a bitmap at the 4K level; before it can track a 4 KiB page of some 2 MiB range, the host
//! must give that range two 4 KiB pages with TDH.PHYMEM.PAMT.ADD, and may take them back with
//! TDH.PHYMEM.PAMT.REMOVE once no page of the range is in the module's hands.
//! [`DynamicPamt`] does this bookkeeping: call [`DynamicPamt::get`] before handing a page to the
//! module and [`DynamicPamt::put`] after reclaiming it.
//!
//! # One word per 2 MiB range
//!
//! Each 2 MiB range of TDX memory has one `AtomicU32`:
//!
//! | bits | field |
//! |---|---|
//! | 13:0 | holders: gets not yet put (a 2 MiB range has 512 pages; at most 16383) |
//! | 23:14 | pair pages: pages of added pairs that lie in this range (see [`RangeTable`]) |
//! | 29:24 | leaving: memory removals in flight over part of this range (see [`RangeTable`]) |
//! | 30 | ADDING |
//! | 31 | REMOVING |
//!
//! The transitions, on the holders and the two flags (every CAS and every read-modify-write
//! keeps the other fields as they are):
//!
//! | holders, flags | `get` | `put` |
//! |---|---|---|
//! | 0 | CAS → ADDING, take a pair from the source, PAMT.ADD, → 1 (→ 0 if either failed) | error: not held |
//! | n ≥ 1 | CAS n → n + 1 | n = 1: CAS → REMOVING, PAMT.REMOVE, → 0 (→ 1 if it failed); n > 1: CAS n → n − 1 |
//! | ADDING / REMOVING | wait | wait |
//!
//! So PAMT.ADD is issued exactly once per 0 → 1 transition, by the one caller whose CAS won;
//! PAMT.REMOVE exactly once per 1 → 0, and never while a `get` holds or is pending: a `get`
//! that finds the range in REMOVING waits for it to finish and then ADDs again. Ranges never
//! share a word, so callers on different ranges never wait for each other (they may share a
//! cache line: 16 ranges per 64 bytes). `tests/loom_dpamt.rs` checks these claims, and the
//! memory ordering, over the interleavings of racing gets and puts (up to 6 preemptions).
//!
//! **Waiting**: a caller that finds its range in transition spins (`core::hint::spin_loop`)
//! until the transition ends: one SEAMCALL of the CPU that owns it, plus, for an ADD, taking a
//! pair from its [`PairSource`] (a pop from a [`PairCache`] on paths that must not wait for an
//! allocator). Only callers on the same range ever wait. As with a spinlock, the owner of a
//! transition should not be preempted or sleep: top up the cache before, not during, the call.
//!
//! # Pair pages and memory removal
//!
//! A hotplug gate must refuse to let memory go while it holds pages of a pair the module owns
//! (TDH.PHYMEM.PAMT.ADD took them; only REMOVE gives them back). Built with a gate's
//! [`RangeTable`] ([`DynamicPamt::for_plan_with_table`]), the manager counts each pair's two
//! pages in the words of the 2 MiB ranges they lie in, before the ADD and until after the
//! REMOVE, and a removal marks the words of its ranges: the two meet in one word, so neither
//! can miss the other (`tests/loom_gate.rs` proves it). Costs: nothing on the get/put fast
//! path; two CAS on the pages' words per ADD and two per REMOVE (next to a SEAMCALL); for a
//! removal a load and a `fetch_add` per 2 MiB range it touches, never a walk of the table; no
//! memory beyond the words, because the fields share the word. A manager built with
//! [`DynamicPamt::new`] or [`DynamicPamt::for_plan`] counts nothing (no gate reads it).
//!
//! # Memory
//!
//! 4 bytes per 2 MiB of TDX memory (2 MiB per TiB) plus one 24-byte entry per span of TDX
//! memory, found by binary search: nothing for the address space between spans. With a gate's
//! range table the words cover the gate's CMRs instead (4 bytes per 2 MiB of convertible
//! memory, allocated once by the gate, shared). Linux keeps one `atomic_t` per 2 MiB of
//! physical address space up to the highest page, holes included.
//!
//! # Errors
//!
//! A failed ADD or REMOVE is rolled back (the holders return to 0 or 1, a pair taken for a
//! failed ADD goes back to the source) and reported with the raw status, so the caller may
//! retry.
//!
//! ```
//! # #[cfg(all(feature = "mock", feature = "std"))]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tdmr::dpamt::{DynamicPamt, Get, PairCache, Put};
//! use tdmr::init::Bringup;
//! use tdmr::memmap::parse_kernel_log;
//! use tdmr::mock::{MockModule, PagePool, Platform};
//! use tdmr::sysinfo::TdxLimits;
//!
//! let input = parse_kernel_log("virt/tdx: CMR: [0x100000, 0x7f000000)\n")?;
//! let limits = TdxLimits::default().with_dynamic_pamt(1)?;
//! let platform = Platform::new(input.cmrs().listed())?.with_limits(limits);
//! let keyids = platform.private_keyids();
//! let module = MockModule::new(platform);
//! let done = Bringup::new(&module, &module, &module, keyids)
//!     .with_dynamic_pamt(true)
//!     .run(input.memory())?;
//!
//! let dpamt = DynamicPamt::for_plan(&module, &done.plan)?;
//! // A page pair the simulated host set aside for Dynamic PAMT.
//! let mut pool = PagePool::new(0x4000_0000, 1)?;
//! let mut cache = PairCache::new(2);
//! cache.top_up(&mut pool);
//!
//! let pfn = 0x1234_5000 >> 12;
//! assert_eq!(dpamt.get(pfn, &mut cache)?, Get::Added); // TDH.PHYMEM.PAMT.ADD
//! assert_eq!(dpamt.get(pfn + 1, &mut cache)?, Get::AlreadyBacked);
//! module.mark_in_use(0x1234_5000)?; // the module now tracks the page
//! assert!(module.mark_free(0x1234_5000));
//! assert_eq!(dpamt.put(pfn + 1, &mut cache)?, Put::StillBacked);
//! assert_eq!(dpamt.put(pfn, &mut cache)?, Put::Removed { unreturned: None }); // REMOVE
//! assert_eq!(cache.len(), 1); // the pair is back
//! # Ok(()) }
//! # #[cfg(not(all(feature = "mock", feature = "std")))]
//! # fn main() {}
//! ```

mod error;
mod index;
mod pair;
mod sync;
mod table;

pub use error::{DynamicPamtError, DynamicPamtSetupError};
pub use pair::{PairCache, PairSource, PamtPagePair, PamtPagePairError, ReturnedPair};
pub use table::RangeTable;

pub(crate) use table::HostedPages;

use alloc::sync::Arc;
use core::fmt;

use self::index::{BeyondMaxPa, OutsideTable, RangeIndex};
use self::sync::{AtomicU32, Ordering, spin_loop};
use self::table::HostRefused;
use crate::addr::{PageSize, PhysRange, SZ_2M, SZ_4K};
use crate::layout::Plan;
use crate::seamcall::Seamcall;
use crate::sysinfo::TdxLimits;
use crate::tdx::{Regs, leaf};

/// Bits 13:0: holders (gets not yet put).
pub(crate) const COUNT: u32 = (1 << 14) - 1;
/// Bits 23:14: pages of added pairs (of any range) that lie in this 2 MiB range. Counted only
/// in a table shared with a hotplug gate ([`RangeTable`]).
pub(crate) const HOSTED_SHIFT: u32 = 14;
/// One hosted pair page.
pub(crate) const HOSTED_ONE: u32 = 1 << HOSTED_SHIFT;
/// Most hosted pair pages a word counts (a 2 MiB range has 512 pages).
pub(crate) const HOSTED_MAX: u32 = (1 << 10) - 1;
/// Bits 29:24: memory removals in flight that take part of this 2 MiB range away (a shared
/// table only): while any is, no pair page may be placed here.
pub(crate) const LEAVING_SHIFT: u32 = 24;
/// One removal in flight.
pub(crate) const LEAVING_ONE: u32 = 1 << LEAVING_SHIFT;
/// Most removals in flight a word counts; the gate admits no more than this many at once.
pub(crate) const LEAVING_MAX: u32 = (1 << 6) - 1;
/// Bit 30: the holder of the 0 → 1 transition is issuing TDH.PHYMEM.PAMT.ADD.
const ADDING: u32 = 1 << 30;
/// Bit 31: the holder of the 1 → 0 transition is issuing TDH.PHYMEM.PAMT.REMOVE.
const REMOVING: u32 = 1 << 31;
/// RCX bits 2:0 of the PAMT leaves: the range is a 2 MiB one (`TDX_PS_2M`).
const LEVEL_2M: u64 = 1;

/// What a successful [`DynamicPamt::get`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Get {
    /// The range had no holder: this call issued TDH.PHYMEM.PAMT.ADD.
    Added,
    /// The range was backed already: one more holder.
    AlreadyBacked,
}

/// What a successful [`DynamicPamt::put`] did.
#[derive(Debug, PartialEq, Eq, Hash)]
pub enum Put {
    /// Other holders remain.
    StillBacked,
    /// This was the last holder: TDH.PHYMEM.PAMT.REMOVE took the pages back.
    Removed {
        /// The pair, if the pair source refused it (a full cache): the caller owns it.
        unreturned: Option<ReturnedPair>,
    },
}

/// A 2 MiB range's state, as [`DynamicPamt::range_state`] saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RangeState {
    /// No holder, no PAMT pages.
    Free,
    /// TDH.PHYMEM.PAMT.ADD in progress.
    Adding,
    /// Backed, with this many holders.
    Held(u32),
    /// TDH.PHYMEM.PAMT.REMOVE in progress.
    Removing,
}

/// The lock-free Dynamic PAMT manager. See the [module documentation](self).
pub struct DynamicPamt<S> {
    seamcall: S,
    index: RangeIndex,
    /// One word per 2 MiB range: the manager's own, or a [`RangeTable`]'s.
    words: Arc<[AtomicU32]>,
    /// The table pair pages are counted in, when the words are a hotplug gate's.
    table: Option<RangeTable>,
}

impl<S> fmt::Debug for DynamicPamt<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamicPamt")
            .field("ranges", &self.index.ranges())
            .field("spans", &self.index.spans())
            .finish_non_exhaustive()
    }
}

impl<S: Seamcall> DynamicPamt<S> {
    /// A manager issuing PAMT leaves through `seamcall`, for the module's `limits` (Dynamic
    /// PAMT on, PAMT_4K entries filling two pages per 2 MiB) and the TDX `memory` whose pages
    /// will be handed to the module (any order; ranges are rounded out to 2 MiB and merged).
    /// Every range starts free. O(n log n) in the number of ranges; allocates 4 bytes per
    /// 2 MiB.
    pub fn new(
        seamcall: S,
        limits: &TdxLimits,
        memory: impl IntoIterator<Item = PhysRange>,
    ) -> Result<Self, DynamicPamtSetupError> {
        check_limits(limits)?;
        let index = RangeIndex::new(memory)
            .map_err(|BeyondMaxPa(range)| DynamicPamtSetupError::BeyondMaxPa { range })?;
        let words = (0..index.ranges()).map(|_| AtomicU32::new(0)).collect();
        Ok(DynamicPamt {
            seamcall,
            index,
            words,
            table: None,
        })
    }

    /// A manager like [`DynamicPamt::new`] whose words are those of `table`, the range table
    /// of a hotplug gate (`HotplugGate::range_table`): from now on it counts the pages of
    /// every pair it adds there, so the gate refuses to remove memory that holds them, and
    /// it refuses pair pages the table does not cover or whose memory is being removed
    /// ([`DynamicPamtError::PairPageUntracked`], [`DynamicPamtError::PairPageLeaving`]).
    /// `memory` must lie inside the table (the gate's CMRs), or
    /// [`DynamicPamtSetupError::OutsideTable`]. Allocates nothing per 2 MiB: the words are the
    /// table's.
    pub fn with_table(
        seamcall: S,
        limits: &TdxLimits,
        memory: impl IntoIterator<Item = PhysRange>,
        table: &RangeTable,
    ) -> Result<Self, DynamicPamtSetupError> {
        check_limits(limits)?;
        let index = RangeIndex::within(memory, table.index())
            .map_err(|OutsideTable(range)| DynamicPamtSetupError::OutsideTable { range })?;
        table.attach();
        Ok(DynamicPamt {
            seamcall,
            index,
            words: table.words().clone(),
            table: Some(table.clone()),
        })
    }

    /// [`DynamicPamt::for_plan`] with the words of a hotplug gate's `table`
    /// ([`DynamicPamt::with_table`]).
    ///
    /// ```
    /// # #[cfg(feature = "mock")]
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tdmr::addr::PhysRange;
    /// use tdmr::dpamt::{DynamicPamt, Get, PairCache};
    /// use tdmr::hotplug_gate::{GateConfig, HotplugGate, MetadataHolder, RemoveError};
    /// use tdmr::init::Bringup;
    /// use tdmr::memmap::parse_kernel_log;
    /// use tdmr::mock::{MockModule, PagePool, Platform};
    /// use tdmr::sysinfo::TdxLimits;
    ///
    /// let input = parse_kernel_log("virt/tdx: CMR: [0x100000, 0x7f000000)\n")?;
    /// let gate = HotplugGate::new(input.cmrs().clone(), GateConfig::new(0, 0).with_dynamic_pamt(true))?;
    /// let limits = TdxLimits::default().with_dynamic_pamt(1)?;
    /// let module = MockModule::new(Platform::new(input.cmrs().listed())?.with_limits(limits));
    /// let init = gate.begin_init()?;
    /// let done = Bringup::new(&module, &module, &module, module.platform().private_keyids())
    ///     .with_dynamic_pamt(true)
    ///     .run(input.memory())?;
    /// init.publish(&done.plan, input.memory())?;
    ///
    /// let table = gate.range_table().expect("built with_dynamic_pamt");
    /// let dpamt = DynamicPamt::for_plan_with_table(&module, &done.plan, table)?;
    /// let mut pool = PagePool::new(0x4000_0000, 1)?; // the pair: two pages at 1 GiB
    /// let mut cache = PairCache::new(1);
    /// cache.top_up(&mut pool);
    /// assert_eq!(dpamt.get(0x1234_5000 >> 12, &mut cache)?, Get::Added);
    ///
    /// // The memory block holding the pair cannot go while the pair is added.
    /// let block = PhysRange::from_base_size(0x4000_0000, 0x800_0000)?;
    /// let refused = gate.admit_removal(block).unwrap_err();
    /// assert!(matches!(
    ///     refused,
    ///     RemoveError::HoldsTdxMetadata { holder: MetadataHolder::DynamicPamtPages { pages: 2, .. }, .. }
    /// ));
    /// dpamt.put(0x1234_5000 >> 12, &mut cache)?; // PAMT.REMOVE: the pair is back
    /// gate.admit_removal(block)?.finish();
    /// # Ok(()) }
    /// # #[cfg(not(feature = "mock"))]
    /// # fn main() {}
    /// ```
    pub fn for_plan_with_table(
        seamcall: S,
        plan: &Plan,
        table: &RangeTable,
    ) -> Result<Self, DynamicPamtSetupError> {
        Self::with_table(
            seamcall,
            plan.limits(),
            plan.tdmrs().iter().flat_map(|t| t.available()),
            table,
        )
    }

    /// The hotplug gate's table the words belong to ([`DynamicPamt::with_table`]), if any.
    pub fn range_table(&self) -> Option<&RangeTable> {
        self.table.as_ref()
    }

    /// A manager for the memory a configuration lets the module use: the non-reserved parts
    /// of `plan`'s TDMRs, with the limits it was planned against.
    pub fn for_plan(seamcall: S, plan: &Plan) -> Result<Self, DynamicPamtSetupError> {
        Self::new(
            seamcall,
            plan.limits(),
            plan.tdmrs().iter().flat_map(|t| t.available()),
        )
    }

    /// The backend the PAMT leaves go through.
    pub fn seamcall(&self) -> &S {
        &self.seamcall
    }

    /// 2 MiB ranges covered (one counter each).
    pub fn ranges(&self) -> usize {
        self.index.ranges()
    }

    /// Bytes of counters: 4 per 2 MiB range (with [`DynamicPamt::with_table`], the whole
    /// table's, which the hotplug gate allocated and the manager shares).
    pub fn counter_bytes(&self) -> usize {
        self.words.len() * core::mem::size_of::<AtomicU32>()
    }

    /// The state of the 2 MiB range holding page frame `pfn`, or `None` outside the memory
    /// covered. A snapshot: other CPUs may change it at once.
    pub fn range_state(&self, pfn: u64) -> Option<RangeState> {
        let w = self.words[self.index.slot(pfn)?].load(Ordering::Acquire);
        Some(decode(w))
    }

    /// Ranges not free now (held or in transition). O(ranges): for tests and diagnostics.
    pub fn busy_ranges(&self) -> usize {
        self.words
            .iter()
            .filter(|w| w.load(Ordering::Acquire) & (COUNT | ADDING | REMOVING) != 0)
            .count()
    }

    /// The counter of page frame `pfn`'s 2 MiB range, and the range's base.
    #[inline]
    fn slot(&self, pfn: u64) -> Result<(&AtomicU32, u64), DynamicPamtError> {
        let slot = self
            .index
            .slot(pfn)
            .ok_or(DynamicPamtError::NotTdxMemory { pfn })?;
        // Covered memory lies below 2^52, so the shift cannot overflow.
        let range = (pfn << 12) & !(SZ_2M - 1);
        Ok((&self.words[slot], range))
    }

    /// Makes sure the 2 MiB range holding page frame `pfn` has PAMT pages, and counts one more
    /// holder. The call that finds the range without holders takes a pair from `pairs` and
    /// issues TDH.PHYMEM.PAMT.ADD; concurrent callers on the same range wait for it.
    ///
    /// `pairs` is only asked for a pair by that call, while the range is in transition: pass a
    /// [`PairCache`] filled beforehand where a slow source would keep other CPUs waiting.
    pub fn get<P: PairSource + ?Sized>(
        &self,
        pfn: u64,
        pairs: &mut P,
    ) -> Result<Get, DynamicPamtError> {
        let (word, range) = self.slot(pfn)?;
        loop {
            let w = word.load(Ordering::Acquire);
            if w & (ADDING | REMOVING) != 0 {
                spin_loop();
                continue;
            }
            // The other fields (pair pages here, removals in flight) stay as they are.
            let held = w & COUNT;
            if held == 0 {
                if word
                    .compare_exchange(w, w | ADDING, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return self.add(word, range, pairs);
                }
                continue;
            }
            if held == COUNT {
                return Err(DynamicPamtError::CountOverflow { pfn });
            }
            if word
                .compare_exchange_weak(w, w + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Ok(Get::AlreadyBacked);
            }
        }
    }

    /// The 0 → 1 transition, with the word in ADDING (owned by this caller).
    fn add<P: PairSource + ?Sized>(
        &self,
        word: &AtomicU32,
        range: u64,
        pairs: &mut P,
    ) -> Result<Get, DynamicPamtError> {
        // Words change under the transition only in the fields of other owners (pair pages,
        // removals): the transition ends with a read-modify-write that keeps them.
        let Some(pair) = pairs.take_pair() else {
            word.fetch_sub(ADDING, Ordering::Release);
            return Err(DynamicPamtError::NoPagePair { range });
        };
        if let Some(table) = &self.table
            && let Err((pa, why)) = host_pair(table, pair)
        {
            word.fetch_sub(ADDING, Ordering::Release);
            let unreturned = pairs.return_pair(ReturnedPair::new(pair)).err();
            return Err(match why {
                HostRefused::Untracked => DynamicPamtError::PairPageUntracked { pa, unreturned },
                HostRefused::Leaving => DynamicPamtError::PairPageLeaving { pa, unreturned },
            });
        }
        let regs = Regs {
            rcx: range | LEVEL_2M,
            rdx: pair.page0(),
            r8: pair.page1(),
            ..Regs::ZERO
        };
        let out = self.seamcall.seamcall(leaf::TDH_PHYMEM_PAMT_ADD, &regs);
        if out.status.is_success() {
            // ADDING | 0 holders → 1 holder.
            word.fetch_sub(ADDING - 1, Ordering::Release);
            return Ok(Get::Added);
        }
        if let Some(table) = &self.table {
            table.unhost(pair.page0());
            table.unhost(pair.page1());
        }
        word.fetch_sub(ADDING, Ordering::Release);
        Err(DynamicPamtError::Seamcall {
            leaf: leaf::TDH_PHYMEM_PAMT_ADD,
            range,
            status: out.status,
            unreturned: pairs.return_pair(ReturnedPair::new(pair)).err(),
        })
    }

    /// Counts one holder less for the 2 MiB range holding page frame `pfn`; the last holder's
    /// call issues TDH.PHYMEM.PAMT.REMOVE and returns the pair to `pairs`. Call it only after
    /// the module has let go of the page.
    pub fn put<P: PairSource + ?Sized>(
        &self,
        pfn: u64,
        pairs: &mut P,
    ) -> Result<Put, DynamicPamtError> {
        let (word, range) = self.slot(pfn)?;
        loop {
            let w = word.load(Ordering::Acquire);
            if w & (ADDING | REMOVING) != 0 {
                spin_loop();
                continue;
            }
            match w & COUNT {
                0 => return Err(DynamicPamtError::NotHeld { pfn }),
                1 => {
                    if word
                        .compare_exchange(w, w | REMOVING, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return self.remove(word, range, pairs);
                    }
                }
                _ => {
                    if word
                        .compare_exchange_weak(w, w - 1, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return Ok(Put::StillBacked);
                    }
                }
            }
        }
    }

    /// The 1 → 0 transition, with the word in REMOVING (owned by this caller).
    fn remove<P: PairSource + ?Sized>(
        &self,
        word: &AtomicU32,
        range: u64,
        pairs: &mut P,
    ) -> Result<Put, DynamicPamtError> {
        let regs = Regs {
            rcx: range | LEVEL_2M,
            ..Regs::ZERO
        };
        let out = self.seamcall.seamcall(leaf::TDH_PHYMEM_PAMT_REMOVE, &regs);
        if !out.status.is_success() {
            word.fetch_sub(REMOVING, Ordering::Release);
            return Err(DynamicPamtError::Seamcall {
                leaf: leaf::TDH_PHYMEM_PAMT_REMOVE,
                range,
                status: out.status,
                unreturned: None,
            });
        }
        // REMOVING | 1 holder → 0 holders.
        word.fetch_sub(REMOVING + 1, Ordering::Release);
        let (rdx, r8) = (out.regs.rdx, out.regs.r8);
        let pair = PamtPagePair::new(rdx, r8).map_err(|_| DynamicPamtError::BadRemoveOutput {
            range,
            rdx,
            r8,
        })?;
        // The module let go of the pages: they no longer hold a removal off.
        if let Some(table) = &self.table {
            table.unhost(pair.page0());
            table.unhost(pair.page1());
        }
        Ok(Put::Removed {
            unreturned: pairs.return_pair(ReturnedPair::new(pair)).err(),
        })
    }
}

fn decode(w: u32) -> RangeState {
    if w & ADDING != 0 {
        RangeState::Adding
    } else if w & REMOVING != 0 {
        RangeState::Removing
    } else if w & COUNT == 0 {
        RangeState::Free
    } else {
        RangeState::Held(w & COUNT)
    }
}

/// Dynamic PAMT on, and PAMT_4K entries filling two pages per 2 MiB.
fn check_limits(limits: &TdxLimits) -> Result<(), DynamicPamtSetupError> {
    if !limits.dynamic_pamt() {
        return Err(DynamicPamtSetupError::NotEnabled);
    }
    let entry_size = limits.pamt_entry_size(PageSize::Size4K);
    if entry_size * (SZ_2M / SZ_4K) != 2 * SZ_4K {
        return Err(DynamicPamtSetupError::PairGeometry { entry_size });
    }
    Ok(())
}

/// Counts both pages of `pair` in `table` (the first back out if the second is refused).
fn host_pair(table: &RangeTable, pair: PamtPagePair) -> Result<(), (u64, HostRefused)> {
    table.host(pair.page0()).map_err(|e| (pair.page0(), e))?;
    if let Err(e) = table.host(pair.page1()) {
        table.unhost(pair.page0());
        return Err((pair.page1(), e));
    }
    Ok(())
}

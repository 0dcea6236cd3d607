//! Memory removal (offlining a memory block, hot-removing a DIMM or a CXL region): in flight
//! before initialization, `Busy` while it is pending or in progress, and after it refused where
//! the TDX module owns the memory.
//!
//! | state | memory removal |
//! |---|---|
//! | uninitialized / failed | admitted, in flight until finished (the memory leaves before initialization reads the map) |
//! | pending / initializing | `Busy` |
//! | initialized | refused with `HoldsTdxMetadata` where it overlaps a static PAMT block, module-extension memory or a 2 MiB range holding pages of an added Dynamic PAMT pair; admitted otherwise (wait-free, allocation-free) |
//!
//! TDX memory may go offline once the module is initialized: the TDMRs still cover it, and
//! when it comes back the frozen-memory rule of [`HotplugGate::admit_memory`] admits it again.
//! Only the module's own metadata must stay: the PAMT blocks for the module's lifetime, a Dynamic
//! PAMT pair until TDH.PHYMEM.PAMT.REMOVE gives it back.
//!
//! Linux does not check removals at all: a PAMT stays because its pages are unmovable kernel
//! allocations, so offlining their block fails with `EBUSY` once the kernel has tried to
//! migrate everything in it, and nothing says why. A kernel that carves PAMTs out of memory it
//! reserved outside its page allocator, or keeps Dynamic PAMT pages anywhere, gets an
//! immediate answer here, naming the TDMR (or the 2 MiB range) and the bytes.

use super::HotplugGate;
use super::error::RemoveError;
use super::metadata::{Incomplete, MetadataHolder};
use super::module_state::ModuleState;
use super::state::MAX_IN_FLIGHT;
use super::sync::Ordering;
use crate::addr::{PhysRange, SZ_4K, is_aligned};
use crate::dpamt::{HostedPages, LEAVING_MAX};

/// Which rule admitted a memory removal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RemovalRule {
    /// Before initialization: any memory may leave; the removal holds initialization off until
    /// it is finished.
    BeforeInit,
    /// After initialization: the range holds none of the module's metadata.
    NoTdxMetadata,
}

impl RemovalRule {
    /// Whether the rule is the pre-initialization one (the removal then holds initialization
    /// off until it is finished).
    pub fn is_pre_init(self) -> bool {
        matches!(self, RemovalRule::BeforeInit)
    }
}

/// An admitted memory removal. Take the memory out of the kernel's map (offline it, eject the
/// device), then [`finish`](MemoryRemoval::finish); dropping it has the same effect (use it
/// when the removal is abandoned). Until then, before initialization, initialization cannot
/// begin; after it, with Dynamic PAMT, no page pair may be placed in the range.
#[must_use = "dropping the removal ends it at once"]
#[derive(Debug)]
pub struct MemoryRemoval<'g> {
    gate: &'g HotplugGate,
    range: PhysRange,
    rule: RemovalRule,
    /// Marked leaving in the Dynamic PAMT range table.
    leaving: bool,
}

impl MemoryRemoval<'_> {
    /// The range.
    #[inline]
    pub fn range(&self) -> PhysRange {
        self.range
    }

    /// The rule that admitted it.
    #[inline]
    pub fn rule(&self) -> RemovalRule {
        self.rule
    }

    /// Ends the removal (the memory is gone, or stays after all).
    #[inline]
    pub fn finish(self) {}
}

impl Drop for MemoryRemoval<'_> {
    #[inline]
    fn drop(&mut self) {
        match self.rule {
            RemovalRule::BeforeInit => self.gate.word.leave(),
            RemovalRule::NoTdxMetadata if self.leaving => {
                if let Some(table) = &self.gate.table {
                    table.end_leaving(self.range);
                }
                self.gate.removals.fetch_sub(1, Ordering::Release);
            }
            RemovalRule::NoTdxMetadata => {}
        }
    }
}

impl HotplugGate {
    /// Decides whether the memory `range` may be removed (offlined or hot-removed).
    ///
    /// * uninitialized / failed: admitted; the removal is then in flight until the returned
    ///   token is finished, and [`HotplugGate::begin_init`] waits for it (so the map
    ///   initialization reads no longer holds the memory);
    /// * initialization pending or in progress: [`RemoveError::Busy`], at once;
    /// * initialized: refused with [`RemoveError::HoldsTdxMetadata`] when the range overlaps a
    ///   static PAMT block, module-extension memory, or (with Dynamic PAMT) a 2 MiB range
    ///   holding pages of a pair added now; the refusal names the first such block (its TDMR
    ///   and level) or 2 MiB range and the overlapping bytes. Admitted otherwise, TDX memory
    ///   included. Wait-free and allocation-free: one Acquire load, a binary search of the
    ///   refusal set written at publish and, with Dynamic PAMT, one `fetch_add` on the range
    ///   table per 2 MiB range the removal touches.
    ///
    /// With Dynamic PAMT the gate must have been built with
    /// [`GateConfig::with_dynamic_pamt`](super::GateConfig::with_dynamic_pamt) and the manager
    /// with [`crate::dpamt::DynamicPamt::for_plan_with_table`]; otherwise the gate cannot know
    /// where pairs are and refuses every removal after initialization
    /// ([`RemoveError::DynamicPamtUntracked`]).
    ///
    /// ```
    /// use tdmr::addr::{PageSize, PhysRange};
    /// use tdmr::hotplug_gate::{GateConfig, HotplugGate, MetadataHolder, RemoveError};
    /// use tdmr::layout::Planner;
    /// use tdmr::memmap::parse_kernel_log;
    ///
    /// let log = "CMR: [0x100000, 0x77800000)\nCMR: [0x100000000, 0x407a000000)\n";
    /// let (memory, cmrs) = parse_kernel_log(log)?.into_parts();
    /// let gate = HotplugGate::new(cmrs.clone(), GateConfig::new(0, 0))?;
    /// let plan = Planner::new().plan(&memory, &cmrs)?;
    /// gate.begin_init()?.publish(&plan, &memory)?;
    ///
    /// // Plain TDX memory may go offline, and come back.
    /// let block = PhysRange::from_base_size(0x200000000, 0x8000000)?;
    /// gate.admit_removal(block)?.finish();
    /// gate.admit_memory(block)?.finish();
    ///
    /// // The block holding a PAMT may not.
    /// let pamt = plan.tdmrs()[1].pamt(PageSize::Size2M);
    /// let around = PhysRange::new(pamt.start() & !0x7ff_ffff, (pamt.start() & !0x7ff_ffff) + 0x8000000)?;
    /// match gate.admit_removal(around) {
    ///     Err(RemoveError::HoldsTdxMetadata { holder: MetadataHolder::Pamt { tdmr: 1, .. }, overlap, .. }) => {
    ///         assert!(overlap.size() > 0 && around.contains_range(overlap));
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn admit_removal(&self, range: PhysRange) -> Result<MemoryRemoval<'_>, RemoveError> {
        if range.is_empty() {
            return Err(RemoveError::Empty { at: range.start() });
        }
        if !is_aligned(range.start(), SZ_4K) || !is_aligned(range.end(), SZ_4K) {
            return Err(RemoveError::Misaligned { range });
        }
        let mut w = self.word.load();
        loop {
            match w.state() {
                ModuleState::Initialized => return self.remove_initialized(range),
                ModuleState::Initializing | ModuleState::Updating => {
                    return Err(RemoveError::Busy);
                }
                _ if w.pending() => return Err(RemoveError::Busy),
                ModuleState::Uninitialized | ModuleState::Failed => match self.word.try_enter(w) {
                    Some(Ok(())) => {
                        return Ok(MemoryRemoval {
                            gate: self,
                            range,
                            rule: RemovalRule::BeforeInit,
                            leaving: false,
                        });
                    }
                    Some(Err(now)) => w = now,
                    None => {
                        return Err(RemoveError::TooManyInFlight {
                            limit: MAX_IN_FLIGHT,
                        });
                    }
                },
            }
        }
    }

    #[inline]
    fn remove_initialized(&self, range: PhysRange) -> Result<MemoryRemoval<'_>, RemoveError> {
        match self.metadata.first_overlap(range) {
            Ok(None) => {}
            Ok(Some((overlap, holder))) => {
                return Err(RemoveError::HoldsTdxMetadata {
                    range,
                    overlap,
                    holder,
                });
            }
            Err(Incomplete { blocks, capacity }) => {
                return Err(RemoveError::MetadataUnknown {
                    range,
                    blocks,
                    capacity,
                });
            }
        }
        let admitted = |leaving| {
            Ok(MemoryRemoval {
                gate: self,
                range,
                rule: RemovalRule::NoTdxMetadata,
                leaving,
            })
        };
        // Written before the Release to initialized, like the refusal set.
        if !self.dynamic_pamt.load(Ordering::Relaxed) {
            return admitted(false);
        }
        let Some(table) = self.table.as_ref().filter(|t| t.is_attached()) else {
            return Err(RemoveError::DynamicPamtUntracked { range });
        };
        // At most LEAVING_MAX removals mark the table at once, so its field cannot overflow.
        if self.removals.fetch_add(1, Ordering::AcqRel) >= LEAVING_MAX {
            self.removals.fetch_sub(1, Ordering::Release);
            return Err(RemoveError::TooManyInFlight { limit: LEAVING_MAX });
        }
        match table.begin_leaving(range) {
            Ok(()) => admitted(true),
            Err(HostedPages {
                range: hosting,
                pages,
            }) => {
                self.removals.fetch_sub(1, Ordering::Release);
                Err(RemoveError::HoldsTdxMetadata {
                    range,
                    overlap: hosting.intersect(range).unwrap_or(range),
                    holder: MetadataHolder::DynamicPamtPages {
                        range: hosting,
                        pages,
                    },
                })
            }
        }
    }
}

//! Errors of the Dynamic PAMT manager: setting it up, and [`super::DynamicPamt::get`] /
//! [`super::DynamicPamt::put`].

use core::fmt;

use super::pair::ReturnedPair;
use crate::addr::PhysRange;
use crate::tdx::leaf::Leaf;
use crate::tdx::status::Status;

/// Why a [`super::DynamicPamt`] could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DynamicPamtSetupError {
    /// The limits have Dynamic PAMT off: there is nothing to manage.
    NotEnabled,
    /// A 2 MiB range's PAMT_4K entries (512 × PAMT_4K_ENTRY_SIZE bytes) do not fill exactly
    /// the two 4 KiB pages TDH.PHYMEM.PAMT.ADD takes.
    PairGeometry {
        /// PAMT_4K_ENTRY_SIZE.
        entry_size: u64,
    },
    /// A memory range reaching beyond 2^52.
    BeyondMaxPa {
        /// The range.
        range: PhysRange,
    },
    /// With [`super::DynamicPamt::with_table`]: memory (rounded out to 2 MiB) the range table
    /// does not cover (the hotplug gate's table covers its CMRs).
    OutsideTable {
        /// The memory, rounded out to 2 MiB.
        range: PhysRange,
    },
}

impl fmt::Display for DynamicPamtSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DynamicPamtSetupError::NotEnabled => {
                write!(f, "Dynamic PAMT is not enabled in the module's limits")
            }
            DynamicPamtSetupError::PairGeometry { entry_size } => write!(
                f,
                "PAMT_4K entries of {entry_size} bytes need {} bytes per 2 MiB, not the two \
                 4 KiB pages TDH.PHYMEM.PAMT.ADD takes",
                entry_size * 512
            ),
            DynamicPamtSetupError::BeyondMaxPa { range } => {
                write!(f, "TDX memory {range} reaches beyond 2^52")
            }
            DynamicPamtSetupError::OutsideTable { range } => write!(
                f,
                "TDX memory {range} lies outside the range table (the hotplug gate's CMRs)"
            ),
        }
    }
}

impl core::error::Error for DynamicPamtSetupError {}

/// Why [`super::DynamicPamt::get`] or [`super::DynamicPamt::put`] failed. The range's state
/// is as before the call in every case (an ADD or REMOVE that failed was rolled back), so the
/// call may be retried.
#[derive(Debug, PartialEq, Eq)]
pub enum DynamicPamtError {
    /// The page frame lies outside the TDX memory the manager covers.
    NotTdxMemory {
        /// The page frame number.
        pfn: u64,
    },
    /// The range needs TDH.PHYMEM.PAMT.ADD and the pair source had no pair.
    NoPagePair {
        /// Base of the 2 MiB range.
        range: u64,
    },
    /// `put` of a range no `get` holds.
    NotHeld {
        /// The page frame number.
        pfn: u64,
    },
    /// The range's count is at its maximum (2^14 − 1 holders; a 2 MiB range has 512 pages).
    CountOverflow {
        /// The page frame number.
        pfn: u64,
    },
    /// TDH.PHYMEM.PAMT.ADD or TDH.PHYMEM.PAMT.REMOVE failed.
    Seamcall {
        /// The leaf.
        leaf: Leaf,
        /// Base of the 2 MiB range.
        range: u64,
        /// The raw status the module returned.
        status: Status,
        /// The pair of a failed ADD that the pair source refused to take back: the caller
        /// owns it now.
        unreturned: Option<ReturnedPair>,
    },
    /// With a hotplug gate's range table: a page of the pair lies outside the table (outside
    /// the gate's CMRs: the module would refuse it), or its 2 MiB range already counts the
    /// most pair pages a word holds. The range stays free; the pair went back to the source.
    PairPageUntracked {
        /// The page.
        pa: u64,
        /// The pair, if the source refused it back: the caller owns it now.
        unreturned: Option<ReturnedPair>,
    },
    /// With a hotplug gate's range table: memory of the 2 MiB range a page of the pair lies in
    /// is being removed (a removal admitted by the gate is in flight). The range stays free;
    /// the pair went back to the source. Retry with another pair.
    PairPageLeaving {
        /// The page.
        pa: u64,
        /// The pair, if the source refused it back: the caller owns it now.
        unreturned: Option<ReturnedPair>,
    },
    /// TDH.PHYMEM.PAMT.REMOVE succeeded but returned something that is not a page pair; the
    /// range is without PAMT pages now.
    BadRemoveOutput {
        /// Base of the 2 MiB range.
        range: u64,
        /// RDX as returned.
        rdx: u64,
        /// R8 as returned.
        r8: u64,
    },
}

impl fmt::Display for DynamicPamtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DynamicPamtError::NotTdxMemory { pfn } => {
                write!(f, "page frame {pfn:#x} is not TDX memory")
            }
            DynamicPamtError::NoPagePair { range } => write!(
                f,
                "2 MiB range {range:#x} needs PAMT pages and the pair source has none"
            ),
            DynamicPamtError::NotHeld { pfn } => write!(
                f,
                "put of page frame {pfn:#x} whose 2 MiB range no get holds"
            ),
            DynamicPamtError::CountOverflow { pfn } => write!(
                f,
                "2 MiB range of page frame {pfn:#x} has the most holders it can count"
            ),
            DynamicPamtError::Seamcall {
                leaf,
                range,
                status,
                unreturned,
            } => {
                write!(f, "{leaf} on 2 MiB range {range:#x} failed: {status}")?;
                returned(f, unreturned.as_ref())
            }
            DynamicPamtError::PairPageUntracked { pa, unreturned } => {
                write!(
                    f,
                    "PAMT page {pa:#x} cannot be counted in the hotplug gate's range table \
                     (outside its CMRs, or its 2 MiB range counts too many pair pages)"
                )?;
                returned(f, unreturned.as_ref())
            }
            DynamicPamtError::PairPageLeaving { pa, unreturned } => {
                write!(
                    f,
                    "PAMT page {pa:#x} lies in memory that is being removed; use another pair"
                )?;
                returned(f, unreturned.as_ref())
            }
            DynamicPamtError::BadRemoveOutput { range, rdx, r8 } => write!(
                f,
                "TDH.PHYMEM.PAMT.REMOVE on 2 MiB range {range:#x} returned RDX={rdx:#x} \
                 R8={r8:#x}, not a page pair"
            ),
        }
    }
}

impl core::error::Error for DynamicPamtError {}

/// ` (… returned to the caller)` when a pair ended up with the caller.
fn returned(f: &mut fmt::Formatter<'_>, pair: Option<&ReturnedPair>) -> fmt::Result {
    match pair {
        Some(p) => write!(f, " ({p} returned to the caller)"),
        None => Ok(()),
    }
}

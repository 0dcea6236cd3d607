//! SEAMCALLs counted per leaf.

use alloc::collections::BTreeMap;
use core::fmt;

use crate::tdx::leaf::Leaf;

/// How many SEAMCALLs were issued, per leaf (every attempt counts, retries included).
///
/// ```
/// use tdmr::seamcall::SeamcallCounts;
/// use tdmr::tdx::leaf;
/// let mut c = SeamcallCounts::new();
/// c.add(leaf::TDH_SYS_TDMR_INIT, 256);
/// c.add(leaf::TDH_SYS_INIT, 1);
/// assert_eq!(c.get(leaf::TDH_SYS_TDMR_INIT), 256);
/// assert_eq!(c.total(), 257);
/// assert_eq!(c.to_string(), "TDH.SYS.INIT: 1, TDH.SYS.TDMR.INIT: 256");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeamcallCounts {
    per_leaf: BTreeMap<Leaf, u64>,
}

impl SeamcallCounts {
    /// No calls.
    pub const fn new() -> Self {
        SeamcallCounts {
            per_leaf: BTreeMap::new(),
        }
    }

    /// Counts `n` more calls of `leaf`.
    pub fn add(&mut self, leaf: Leaf, n: u64) {
        if n != 0 {
            *self.per_leaf.entry(leaf).or_insert(0) += n;
        }
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &SeamcallCounts) {
        for (&leaf, &n) in &other.per_leaf {
            self.add(leaf, n);
        }
    }

    /// Calls of `leaf`.
    pub fn get(&self, leaf: Leaf) -> u64 {
        self.per_leaf.get(&leaf).copied().unwrap_or(0)
    }

    /// Calls over all leaves.
    pub fn total(&self) -> u64 {
        self.per_leaf.values().sum()
    }

    /// `(leaf, calls)` in leaf-number order, leaves never called left out.
    pub fn iter(&self) -> impl Iterator<Item = (Leaf, u64)> + '_ {
        self.per_leaf.iter().map(|(&l, &n)| (l, n))
    }
}

impl fmt::Display for SeamcallCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (leaf, n)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{leaf}: {n}")?;
        }
        Ok(())
    }
}

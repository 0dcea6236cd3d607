//! What TDX costs now: a live account of the memory the TDX module holds, in a form a kernel
//! can print (Linux's Dynamic PAMT series dropped its `/proc/meminfo` line, leaving operators
//! nothing to read).
//!
//! [`TdxMemoryUsage::of_plan`] takes the static part from the configuration: PAMT bytes per
//! NUMA node (each TDMR's PAMT counted on the node it was placed for);
//! [`TdxMemoryUsage::of_initialized`] adds the module extensions' memory a bring-up handed
//! over — beside the PAMT, and like it never reclaimable while the module runs.
//! [`TdxMemoryUsage::with_dynamic_pamt`] adds the Dynamic PAMT page pairs the manager holds at
//! that moment, and [`TdxMemoryUsage::with_module_extensions`] the memory handed to the module
//! for its extensions (TDH.EXT.MEM.ADD, never reclaimable). Reading is cheap enough for a
//! `/proc` or `/sys` file: O(TDMRs) for the static part, one pass over the manager's counters
//! for the dynamic part; no lock, no SEAMCALL.
//!
//! ```
//! use tdmr::accounting::TdxMemoryUsage;
//! use tdmr::layout::{Planner, Strategy};
//! use tdmr::memmap::parse_kernel_log;
//! let log = "virt/tdx: CMR: [0x100000, 0x77800000)\nvirt/tdx: CMR: [0x100000000, 0x407a000000)\n";
//! let input = parse_kernel_log(log)?;
//! let plan = Planner::new().with_strategy(Strategy::Linux).plan(input.memory(), input.cmrs())?;
//! let usage = TdxMemoryUsage::of_plan(&plan).with_module_extensions(50 << 20);
//! assert_eq!(usage.static_pamt_bytes() / 1024, 1_050_632);
//! assert_eq!(usage.static_pamt_by_node(), &[(0, 1_050_632 * 1024)]);
//! assert_eq!(
//!     usage.to_string(),
//!     "TDX: 1050632 kB static PAMT (node 0: 1050632 kB), 0 Dynamic PAMT page pairs (0 kB), \
//!      51200 kB module extensions, 1101832 kB in all"
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use alloc::vec::Vec;
use core::fmt;

use crate::addr::{PageSize, SZ_2M, SZ_4K};
use crate::dpamt::DynamicPamt;
use crate::init::Initialized;
use crate::layout::Plan;
use crate::memmap::NodeId;
use crate::seamcall::Seamcall;

/// The memory the TDX module holds, by kind. See the [module documentation](self).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TdxMemoryUsage {
    static_by_node: Vec<(NodeId, u64)>,
    dynamic_pairs: u64,
    pair_bytes: u64,
    module_extensions: u64,
}

impl TdxMemoryUsage {
    /// The static PAMT of `plan`, per node, ascending by node; no Dynamic PAMT pairs, no
    /// module extensions yet.
    pub fn of_plan(plan: &Plan) -> Self {
        let mut by_node: Vec<(NodeId, u64)> = Vec::new();
        for t in plan.tdmrs() {
            let bytes = t.pamt_bytes();
            match by_node.binary_search_by_key(&t.node(), |e| e.0) {
                Ok(i) => by_node[i].1 += bytes,
                Err(i) => by_node.insert(i, (t.node(), bytes)),
            }
        }
        // Bytes per pair: the PAMT_4K entries of one 2 MiB range.
        let pair_bytes = plan.limits().pamt_entry_size(PageSize::Size4K) * (SZ_2M / SZ_4K);
        TdxMemoryUsage {
            static_by_node: by_node,
            dynamic_pairs: 0,
            pair_bytes,
            module_extensions: 0,
        }
    }

    /// What a finished bring-up holds: the static PAMT of its plan and the memory it handed
    /// to the module extensions (TDH.EXT.MEM.ADD); no Dynamic PAMT pairs yet.
    ///
    /// ```
    /// # #[cfg(all(feature = "mock", feature = "std"))]
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tdmr::accounting::TdxMemoryUsage;
    /// use tdmr::init::Bringup;
    /// use tdmr::memmap::parse_kernel_log;
    /// use tdmr::mock::{MockModule, Platform};
    /// let log = "virt/tdx: CMR: [0x100000, 0x7f000000)\nvirt/tdx: CMR: [0x100000000, 0x500000000)\n";
    /// let input = parse_kernel_log(log)?;
    /// let platform = Platform::new(input.cmrs().listed())?.with_module("next".parse()?);
    /// let module = MockModule::new(platform);
    /// let keyids = module.platform().private_keyids();
    /// let done = Bringup::new(&module, &module, &module, keyids).run(input.memory())?;
    /// let usage = TdxMemoryUsage::of_initialized(&done);
    /// assert_eq!(usage.module_extension_bytes(), 12_800 * 4096); // 50 MiB
    /// assert_eq!(usage.total_bytes(), done.memory_budget());
    /// # Ok(()) }
    /// # #[cfg(not(all(feature = "mock", feature = "std")))]
    /// # fn main() {}
    /// ```
    pub fn of_initialized(done: &Initialized) -> Self {
        Self::of_plan(&done.plan).with_module_extensions(done.extension_bytes())
    }

    /// With the Dynamic PAMT page pairs `dpamt` holds now: every 2 MiB range with holders or in
    /// transition counts one pair (a snapshot: other CPUs change it at once).
    pub fn with_dynamic_pamt<S: Seamcall>(mut self, dpamt: &DynamicPamt<S>) -> Self {
        self.dynamic_pairs = dpamt.busy_ranges() as u64;
        self
    }

    /// With `bytes` handed to the module for its extensions (TDH.EXT.MEM.ADD).
    pub fn with_module_extensions(mut self, bytes: u64) -> Self {
        self.module_extensions = bytes;
        self
    }

    /// Static PAMT bytes over all nodes.
    pub fn static_pamt_bytes(&self) -> u64 {
        self.static_by_node.iter().map(|e| e.1).sum()
    }

    /// Static PAMT bytes per node, ascending by node.
    pub fn static_pamt_by_node(&self) -> &[(NodeId, u64)] {
        &self.static_by_node
    }

    /// Dynamic PAMT page pairs in use.
    pub fn dynamic_pamt_pairs(&self) -> u64 {
        self.dynamic_pairs
    }

    /// Bytes of those pairs (two 4 KiB pages each with 16-byte PAMT_4K entries).
    pub fn dynamic_pamt_bytes(&self) -> u64 {
        self.dynamic_pairs.saturating_mul(self.pair_bytes)
    }

    /// Bytes handed to the module for its extensions.
    pub fn module_extension_bytes(&self) -> u64 {
        self.module_extensions
    }

    /// Everything the module holds.
    pub fn total_bytes(&self) -> u64 {
        self.static_pamt_bytes()
            .saturating_add(self.dynamic_pamt_bytes())
            .saturating_add(self.module_extensions)
    }
}

impl fmt::Display for TdxMemoryUsage {
    /// One line, kB as `/proc/meminfo` counts them: `TDX: S kB static PAMT (node 0: A kB,
    /// node 1: B kB), P Dynamic PAMT page pairs (D kB), E kB module extensions, T kB in all`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TDX: {} kB static PAMT (",
            self.static_pamt_bytes() / 1024
        )?;
        for (i, (node, bytes)) in self.static_by_node.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "node {node}: {} kB", bytes / 1024)?;
        }
        write!(
            f,
            "), {} Dynamic PAMT page pairs ({} kB), {} kB module extensions, {} kB in all",
            self.dynamic_pairs,
            self.dynamic_pamt_bytes() / 1024,
            self.module_extensions / 1024,
            self.total_bytes() / 1024
        )
    }
}

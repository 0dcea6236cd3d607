//! How a plan is made: the [`Strategy`] that draws TDMR boundaries and the [`HolePolicy`] that
//! says what must be reserved.

use alloc::string::{String, ToString};
use core::fmt;
use core::str::FromStr;

/// How TDMR boundaries and reserved areas are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Strategy {
    /// Linux mainline's algorithm, reproduced exactly: one TDMR per memory region after 1 GiB
    /// rounding, one contiguous PAMT block per TDMR on the node of its lowest memory, one
    /// reserved area per hole and per overlapping PAMT, no merging. Where the blocks land is
    /// predicted by a model of the kernel's allocator ([`crate::pamt::PamtModel`], bottom-up as
    /// `alloc_contig_pages()` searches, unless [`super::Planner::with_pamt_model`] says
    /// otherwise), or given by the caller's [`crate::pamt::PamtAllocator`].
    Linux,
    /// The least covered span (so the least PAMT), then the least remote-PAMT memory (bytes of
    /// TDX memory whose PAMT lies on another NUMA node), the fewest TDMRs, the fewest reserved
    /// areas. Each PAMT lies on the node holding most of its TDMR's memory, docked against a
    /// reserved area that exists anyway (so it costs no area) or in a fresh area on that node.
    ///
    /// The TDMR boundaries are exactly optimal for that tuple, with the reserved areas of holes
    /// (a dynamic program, checked against brute force on multi-node maps). When every node's
    /// PAMT can dock — as on every real map we know, PAMT being about 0.4 % of memory — the whole
    /// layout is exactly optimal. Otherwise a PAMT takes a reserved area of its own; when no TDMR
    /// holding its node's memory can spare one, it goes to the TDMR's next node, any node, and
    /// as the last resort across a node boundary, the partition is planned again keeping a
    /// spare, and the cheaper layout wins; one that would leave more PAMTs off their node than
    /// Linux's layout gives way to Linux's TDMRs. As the last resort before failing, PAMTs are
    /// placed as the kernel's allocator would, on this partition and then on Linux's. It never
    /// fails where the Linux strategy succeeds, never leaves more PAMTs off their node, and when
    /// it fails it names the smallest obstacle.
    Optimal,
}

impl Strategy {
    /// The name used on the command line and in JSON (`linux`).
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Linux => "linux",
            Strategy::Optimal => "optimal",
        }
    }

    /// The hole basis the strategy uses unless told otherwise.
    pub fn default_hole_policy(self) -> HolePolicy {
        match self {
            Strategy::Linux => HolePolicy::Memory,
            Strategy::Optimal => HolePolicy::Cmr,
        }
    }
}

/// What must be reserved inside a TDMR besides PAMTs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HolePolicy {
    /// Reserve TDMR ∖ CMRs: only non-convertible space (the module's own requirement).
    Cmr,
    /// Reserve TDMR ∖ TDX memory: every gap in the memory map (Linux mainline's choice).
    Memory,
}

impl HolePolicy {
    /// The name used on the command line and in JSON (`cmr`, `memory`).
    pub fn name(self) -> &'static str {
        match self {
            HolePolicy::Cmr => "cmr",
            HolePolicy::Memory => "memory",
        }
    }
}

/// A strategy or hole-policy name that names none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownName {
    /// What was being named (`strategy`, `hole policy`).
    pub what: &'static str,
    /// The name given.
    pub given: String,
    /// The names accepted.
    pub expected: &'static str,
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} `{}` (expected {})",
            self.what, self.given, self.expected
        )
    }
}

impl core::error::Error for UnknownName {}

impl FromStr for Strategy {
    type Err = UnknownName;

    /// `linux` or `optimal`, as [`Strategy::name`] spells them.
    ///
    /// ```
    /// use tdmr::layout::Strategy;
    /// assert_eq!("linux".parse::<Strategy>(), Ok(Strategy::Linux));
    /// assert!("fast".parse::<Strategy>().unwrap_err().to_string().contains("`fast`"));
    /// ```
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        [Strategy::Linux, Strategy::Optimal]
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| UnknownName {
                what: "strategy",
                given: s.to_string(),
                expected: "linux or optimal",
            })
    }
}

impl FromStr for HolePolicy {
    type Err = UnknownName;

    /// `cmr` or `memory`, as [`HolePolicy::name`] spells them.
    ///
    /// ```
    /// use tdmr::layout::HolePolicy;
    /// assert_eq!("cmr".parse::<HolePolicy>(), Ok(HolePolicy::Cmr));
    /// ```
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        [HolePolicy::Cmr, HolePolicy::Memory]
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| UnknownName {
                what: "hole policy",
                given: s.to_string(),
                expected: "cmr or memory",
            })
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for HolePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

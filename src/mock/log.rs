//! The mock's call log: every SEAMCALL it served (leaf, LP, inputs, status, outputs) and the
//! host events it saw, with per-leaf counts that are always kept.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

use crate::seamcall::SeamcallCounts;
use crate::tdx::leaf::Leaf;
use crate::tdx::{Output, Regs};

/// How much of the log to keep. Counts per leaf are kept in every mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallLogMode {
    /// Counts only: constant memory however many calls are made.
    Counts,
    /// The last `n` entries.
    Last(usize),
    /// Every entry.
    All,
}

/// One SEAMCALL the mock served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallRecord {
    /// The logical processor that issued it.
    pub lp: u32,
    /// The leaf.
    pub leaf: Leaf,
    /// Input registers.
    pub inputs: Regs,
    /// Status and output registers.
    pub output: Output,
}

impl fmt::Display for CallRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inputs;
        write!(
            f,
            "LP {}: {} RCX={:#x} RDX={:#x} R8={:#x} -> {}",
            self.lp, self.leaf, i.rcx, i.rdx, i.r8, self.output.status
        )
    }
}

/// An entry of the log.
// Calls are the common entry; boxing them would cost an allocation per call.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogEntry {
    /// A SEAMCALL.
    Call(CallRecord),
    /// The host wrote back and invalidated every CPU's caches.
    CacheFlush,
}

/// The log itself.
#[derive(Clone, Debug)]
pub struct CallLog {
    mode: CallLogMode,
    counts: SeamcallCounts,
    entries: VecDeque<LogEntry>,
    dropped: u64,
    cache_flushes: u64,
}

impl CallLog {
    pub(crate) fn new(mode: CallLogMode) -> Self {
        CallLog {
            mode,
            counts: SeamcallCounts::new(),
            entries: VecDeque::new(),
            dropped: 0,
            cache_flushes: 0,
        }
    }

    fn push(&mut self, e: LogEntry) {
        match self.mode {
            CallLogMode::Counts => self.dropped += 1,
            CallLogMode::Last(n) => {
                if n == 0 {
                    self.dropped += 1;
                    return;
                }
                if self.entries.len() == n {
                    self.entries.pop_front();
                    self.dropped += 1;
                }
                self.entries.push_back(e);
            }
            CallLogMode::All => self.entries.push_back(e),
        }
    }

    pub(crate) fn call(&mut self, record: CallRecord) {
        self.counts.add(record.leaf, 1);
        self.push(LogEntry::Call(record));
    }

    pub(crate) fn cache_flush(&mut self) {
        self.cache_flushes += 1;
        self.push(LogEntry::CacheFlush);
    }

    /// Calls per leaf.
    pub fn counts(&self) -> &SeamcallCounts {
        &self.counts
    }

    /// The entries kept, oldest first.
    pub fn entries(&self) -> Vec<LogEntry> {
        self.entries.iter().copied().collect()
    }

    /// The calls kept, oldest first.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.entries
            .iter()
            .filter_map(|e| match e {
                LogEntry::Call(c) => Some(*c),
                LogEntry::CacheFlush => None,
            })
            .collect()
    }

    /// Entries not kept (by the mode's limit).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Cache flushes seen.
    pub fn cache_flushes(&self) -> u64 {
        self.cache_flushes
    }
}

//! The module extensions (TDX_FEATURES0 bit 39), once the module is initialized: their memory
//! sized after TDH.SYS.CONFIG (the size is readable only then, so sizing is two-phase: the
//! plan's PAMT before CONFIG, this after), handed over with TDH.EXT.MEM.ADD, then
//! TDH.EXT.INIT.
//!
//! 1. EXT_REQUIRED (`0x3100000000000001`): 0 means nothing to do.
//! 2. EXT_MEMORY_POOL_REQUIRED_PAGES (`0x3100000200000000`, 4 bytes): pages to hand over,
//!    taken from the host with [`HostMemory::claim_extension_pages`] — never given back.
//! 3. TDH.EXT.MEM.ADD (61) per list of up to 512 page addresses: a 4 KiB list page placed in
//!    host memory, RCX = the list page's address | first entry index in bits 11:3 | last entry
//!    index in bits 63:55. `TDX_INTERRUPTED_RESUMABLE` means call again with the RCX the module
//!    returned (it advanced the first index in place).
//! 4. TDH.EXT.INIT (60), again while it answers `TDX_INTERRUPTED_RESUMABLE`.
//!
//! Busy and entropy failures are retried per the [`super::RetryPolicy`]; resumption is bounded
//! by the work left (a list's entries, the pool's pages), so a module that stops making
//! progress is reported, not waited for. All of it runs on the first CPU.

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::CpuId;
use super::error::InitErrorKind;
use super::host_memory::{HostMemory, HostMemoryError};
use super::metadata::read;
use super::retry::{Caller, SeamcallError};
use crate::addr::{PhysRange, SZ_4K, is_aligned};
use crate::seamcall::Seamcall;
use crate::tdx::leaf::{self, Leaf};
use crate::tdx::metadata as md;
use crate::tdx::status::TDX_INTERRUPTED_RESUMABLE;
use crate::tdx::{Output, Regs};

/// Page addresses one list page holds.
pub const EXT_LIST_ENTRIES: usize = 512;

/// The RCX of TDH.EXT.MEM.ADD: list page `list` (4 KiB aligned), entries `first..=last`.
pub const fn ext_mem_add_rcx(list: u64, first: u64, last: u64) -> u64 {
    list | (first & 0x1FF) << 3 | (last & 0x1FF) << 55
}

/// The memory handed to the extensions, and the calls it took.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ExtensionsDone {
    /// The pages, as ranges.
    pub(crate) memory: Vec<PhysRange>,
}

/// A failure, with whatever memory the module already took.
pub(crate) struct ExtensionsFailed {
    pub(crate) kind: InitErrorKind,
    pub(crate) memory: Vec<PhysRange>,
}

fn seamcall_error(
    leaf: Leaf,
    cpu: CpuId,
    inputs: Regs,
    out: Output,
    attempts: u32,
) -> InitErrorKind {
    InitErrorKind::Seamcall(Box::new(SeamcallError {
        leaf,
        cpu: Some(cpu),
        inputs,
        status: out.status,
        outputs: out.regs,
        attempts,
    }))
}

/// Issues `leaf` from `inputs`, again with the module's RCX while it answers
/// `TDX_INTERRUPTED_RESUMABLE`, at most `max_calls` times.
fn resumable<S: Seamcall + ?Sized>(
    c: &mut Caller<'_, S>,
    cpu: CpuId,
    leaf: Leaf,
    inputs: Regs,
    max_calls: u64,
) -> Result<(), InitErrorKind> {
    let mut regs = inputs;
    let mut calls = 0u64;
    loop {
        calls += 1;
        let out = match c.call(leaf, regs, Some(cpu)) {
            Ok(out) => out,
            Err(e) if e.status.code() == TDX_INTERRUPTED_RESUMABLE => {
                Output::new(e.status, e.outputs)
            }
            Err(e) => return Err(InitErrorKind::Seamcall(e)),
        };
        if out.status.is_success() {
            return Ok(());
        }
        if out.status.code() != TDX_INTERRUPTED_RESUMABLE {
            return Err(seamcall_error(leaf, cpu, regs, out, c.last_attempts));
        }
        if calls >= max_calls {
            return Err(InitErrorKind::ResumeStalled { leaf, calls });
        }
        regs.rcx = out.regs.rcx;
    }
}

/// Runs the extensions' initialization (see the [module documentation](self)).
pub(crate) fn init_extensions<S: Seamcall + ?Sized, M: HostMemory + ?Sized>(
    c: &mut Caller<'_, S>,
    memory: &M,
    cpu: CpuId,
) -> Result<ExtensionsDone, ExtensionsFailed> {
    let fail = |kind, memory: &[PhysRange]| ExtensionsFailed {
        kind,
        memory: memory.to_vec(),
    };
    let required = read(c, md::EXT_REQUIRED, cpu).map_err(|k| fail(k, &[]))?;
    if required == 0 {
        return Ok(ExtensionsDone::default());
    }
    let pages = read(c, md::EXT_MEMORY_POOL_REQUIRED_PAGES, cpu).map_err(|k| fail(k, &[]))?;
    let given = if pages == 0 {
        Vec::new()
    } else {
        memory
            .claim_extension_pages(pages)
            .map_err(|e| fail(InitErrorKind::HostMemory(e), &[]))?
    };
    let whole = given
        .iter()
        .all(|r| is_aligned(r.start(), SZ_4K) && is_aligned(r.end(), SZ_4K));
    let count: u64 = given.iter().map(|r| r.size() / SZ_4K).sum();
    if !whole || count != pages {
        let e = HostMemoryError::WrongExtensionMemory {
            asked: pages,
            given: if whole { count } else { 0 },
        };
        return Err(fail(InitErrorKind::HostMemory(e), &given));
    }
    // The module holds what TDH.EXT.MEM.ADD took, even if a later call fails: report all of
    // it as the module's (it was claimed for the module).
    let mut page_list: Vec<u64> = Vec::with_capacity(EXT_LIST_ENTRIES);
    let mut addrs = given
        .iter()
        .flat_map(|r| (r.start()..r.end()).step_by(SZ_4K as usize));
    loop {
        page_list.clear();
        page_list.extend(addrs.by_ref().take(EXT_LIST_ENTRIES));
        if page_list.is_empty() {
            break;
        }
        let mut bytes = [0u8; SZ_4K as usize];
        for (i, pa) in page_list.iter().enumerate() {
            bytes[8 * i..8 * i + 8].copy_from_slice(&pa.to_le_bytes());
        }
        let list = memory
            .place(&bytes, SZ_4K)
            .map_err(|e| fail(InitErrorKind::HostMemory(e), &given))?;
        let inputs = Regs {
            rcx: ext_mem_add_rcx(list, 0, page_list.len() as u64 - 1),
            ..Regs::ZERO
        };
        // One call per entry at most, and one more.
        let added = resumable(
            c,
            cpu,
            leaf::TDH_EXT_MEM_ADD,
            inputs,
            page_list.len() as u64 + 1,
        );
        memory.release(list, bytes.len());
        added.map_err(|k| fail(k, &given))?;
    }
    // TDH.EXT.INIT takes no inputs the references name; it resumes on its own state.
    resumable(c, cpu, leaf::TDH_EXT_INIT, Regs::ZERO, pages.max(1) + 1)
        .map_err(|k| fail(k, &given))?;
    Ok(ExtensionsDone { memory: given })
}

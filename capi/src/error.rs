//! Result codes, the caller-allocated [`tdmr_error`] that carries a detailed message, and the
//! static names and descriptions of codes and TDX statuses.
//!
//! Every fallible entry point returns an `int32_t` code ([`TDMR_OK`] or a negative
//! `TDMR_ERR_*`) and takes an optional `tdmr_error *err` last: when it is not NULL it is
//! filled on every return (code, the module's status where there is one, and a message naming
//! the offending value). It is the caller's memory, so it works without thread-local storage
//! and on any number of CPUs at once.

use core::ffi::c_char;
use core::fmt::{self, Write};

use tdmr::addr::AddrError;
use tdmr::hotplug_gate::{
    AdmitError, BeginInitError, BeginUpdateError, CpuOfflineError, CpuOnlineError, GateConfigError,
    KeyIdError, PublishError, RemoveError,
};
use tdmr::layout::PlanError;
use tdmr::memmap::firmware::{E820Error, FirmwareMapError, SratError, UefiMapError};
use tdmr::memmap::{CmrError, MemoryMapError};
use tdmr::sysinfo::{KeyIdRangeError, LimitsError};
use tdmr::tdx::abi::AbiError;
use tdmr::tdx::status::Status;

/// What a call did: `TDMR_OK` (0) or a negative `TDMR_ERR_*` code. Functions return it as
/// `int32_t` (`tdmr_code` is a typedef of it); `tdmr_error_name` and `tdmr_error_message`
/// describe any value.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::upper_case_acronyms)]
pub enum tdmr_code {
    /// Success.
    TDMR_OK = 0,
    /// A required pointer is NULL (or NULL with a non-zero length).
    TDMR_ERR_NULL_POINTER = -1,
    /// A pointer is not aligned for its type (512 bytes for `TDMR_INFO` and PA arrays).
    TDMR_ERR_MISALIGNED = -2,
    /// A length overflows the address space (count × element size, or pointer + bytes).
    TDMR_ERR_TOO_LARGE = -3,
    /// The caller's buffer holds fewer entries than needed; the count out-parameter says how many.
    TDMR_ERR_BUFFER_TOO_SMALL = -4,
    /// An integer that selects something (strategy, hole policy, a flag) is out of range.
    TDMR_ERR_INVALID_ARGUMENT = -5,
    /// A handle is not a live handle of the expected kind (best effort: wrong kind, misaligned,
    /// already freed while its memory is still mapped).
    TDMR_ERR_INVALID_HANDLE = -6,
    /// The memory map was refused: a region is empty, not 4 KiB aligned, unsorted, overlapping,
    /// beyond 2^52, or outside every CMR (the message names it).
    TDMR_ERR_MEMORY_MAP = -7,
    /// The CMR list was refused (more than 32, or a CMR failed a range check).
    TDMR_ERR_CMRS = -8,
    /// The module limits were refused (zero TDMRs, a zero PAMT entry size, zero bitmap bits).
    TDMR_ERR_LIMITS = -9,
    /// No layout within the module's limits: Linux's "TDMRs exhausted" or "reserved areas
    /// exhausted", or the smallest obstacle the optimal planner found.
    TDMR_ERR_NO_LAYOUT = -10,
    /// The caller's PAMT allocator had no block, or returned one the configuration cannot use.
    TDMR_ERR_PAMT_ALLOCATION = -11,
    /// The plan or an address does not fit the `TDMR_INFO` ABI (more than 16 reserved areas in a
    /// TDMR, a `TDMR_INFO` address not 512-byte aligned).
    TDMR_ERR_ABI = -12,
    /// TDH.SYS.CONFIG would refuse the configuration; the module's 64-bit status is in the status
    /// out-parameter and in `tdmr_error.tdx_status`.
    TDMR_ERR_CONFIG_REJECTED = -13,
    /// Retry later without changing anything: TDX initialization or a runtime module update is
    /// pending or in progress, hotplug operations admitted before it have not finished, another
    /// online/offline of that CPU is under way, or the in-flight counter is full. Never
    /// returned after blocking.
    TDMR_ERR_BUSY = -14,
    /// Before initialization: part of the memory lies outside every CMR.
    TDMR_ERR_NOT_CONVERTIBLE = -15,
    /// After initialization: part of the memory is not TDX memory of the published plan.
    TDMR_ERR_NOT_TDX_MEMORY = -16,
    /// A memory range is empty, not 4 KiB aligned, or `base + size` overflows 64 bits.
    TDMR_ERR_BAD_RANGE = -17,
    /// The module state does not allow it: already initialized, guest KeyIDs before
    /// initialization, a KeyID release with none in use, an update of a module that is not
    /// initialized.
    TDMR_ERR_STATE = -18,
    /// The CPU or package number is beyond the gate's topology.
    TDMR_ERR_NO_SUCH_CPU = -19,
    /// The CPU is already online, not online, or online in another package than the one given.
    TDMR_ERR_CPU_STATE = -20,
    /// A package has no online CPU (TDH.SYS.KEY.CONFIG and cache write-back need one in each).
    TDMR_ERR_PACKAGE_OFFLINE = -21,
    /// The last online CPU of a package cannot go offline while guest KeyIDs are in use.
    TDMR_ERR_GUEST_KEYIDS_IN_USE = -22,
    /// The gate's topology was refused (packages must be 0 exactly when CPUs are, and at most
    /// the CPUs).
    TDMR_ERR_GATE_CONFIG = -23,
    /// The frozen TDX memory has more ranges than the gate holds: the gate is initialized all
    /// the same and admits no memory (fails closed).
    TDMR_ERR_SNAPSHOT_TOO_LARGE = -24,
    /// A counter is at its maximum (guest KeyIDs).
    TDMR_ERR_LIMIT_REACHED = -25,
    /// An allocation of this library failed.
    TDMR_ERR_NO_MEMORY = -26,
    /// A bug in tdmr: a panic was caught at the boundary (builds with `std`). Free the handles
    /// involved; please report it.
    TDMR_ERR_INTERNAL = -27,
    /// An E820 map or UEFI memory map was refused: an entry whose end overflows 64 bits, a
    /// UEFI descriptor size below 40 bytes or not a multiple of 8, a map length that is not a
    /// whole number of descriptors, a descriptor not 4 KiB aligned (the message names the
    /// entry or descriptor by index).
    TDMR_ERR_MEMORY_TABLE = -28,
    /// The SRAT was refused: its bytes (shorter than the header, signature, length field,
    /// checksum, a structure's length, a memory range whose end overflows; the message names
    /// the offset), or enabled memory affinity structures of different nodes (or hotplug
    /// flags) that overlap (the message names the structure). To go on without NUMA
    /// information, call again without the SRAT.
    TDMR_ERR_SRAT = -29,
    /// After initialization: part of the memory to remove is the TDX module's (a static PAMT
    /// block, module-extension memory, or a 2 MiB range holding Dynamic PAMT pages); the
    /// message names the TDMR and PAMT level (or the 2 MiB range) and the bytes.
    TDMR_ERR_HOLDS_TDX_METADATA = -30,
    /// The gate does not know where all TDX metadata is (its refusal set is too small for the
    /// plan's PAMT blocks, or the plan uses Dynamic PAMT and no pair pages are tracked), so
    /// it admits no memory removal after initialization (fails closed).
    TDMR_ERR_METADATA_UNTRACKED = -31,
}

pub use tdmr_code::*;

/// Bytes of `tdmr_error.message`, NUL included.
pub const TDMR_ERROR_MESSAGE_SIZE: usize = 256;

/// Details of the last call that was given it: filled on every return of a call that takes
/// it (on success: code 0 and an empty message).
///
/// Ownership: the caller's memory (stack or heap); the library only writes it during the call.
/// One `tdmr_error` must not be given to two calls running at the same time.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct tdmr_error {
    /// The code the call returned.
    pub code: i32,
    /// 1 when the message was cut to fit `message` (at a UTF-8 character boundary), else 0.
    pub truncated: u32,
    /// The TDX module's raw 64-bit status for `TDMR_ERR_CONFIG_REJECTED`, else 0.
    pub tdx_status: u64,
    /// What went wrong, naming the offending argument or value: NUL-terminated UTF-8.
    pub message: [c_char; TDMR_ERROR_MESSAGE_SIZE],
}

impl fmt::Debug for tdmr_error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("tdmr_error")
            .field("code", &self.code)
            .field("tdx_status", &self.tdx_status)
            .finish_non_exhaustive()
    }
}

/// What was wrong with an argument.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ArgProblem {
    Null,
    NullWithLength(usize),
    Misaligned { addr: usize, align: usize },
    TooLarge { count: usize, elem: usize },
    NotAHandle(&'static str),
    Freed(&'static str),
    BadValue(u64),
    Short { needed: usize, given: usize },
}

/// Why a call failed, kept as values: formatted only when the caller asked for a message.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Detail {
    Arg(&'static str, ArgProblem),
    Range(&'static str, AddrError),
    MemoryMap(MemoryMapError),
    Cmr(CmrError),
    Limits(LimitsError),
    KeyIdRange(KeyIdRangeError),
    Plan(PlanError),
    Abi(AbiError),
    Status(Status),
    Admit(AdmitError),
    Remove(RemoveError),
    BeginInit(BeginInitError),
    BeginUpdate(BeginUpdateError),
    E820(E820Error),
    Uefi(UefiMapError),
    Srat(SratError),
    FirmwareMap(FirmwareMapError),
    Publish(PublishError),
    CpuOnline(CpuOnlineError),
    CpuOffline(CpuOfflineError),
    KeyId(KeyIdError),
    GateConfig(GateConfigError),
    NoMemory(usize),
    /// Only built with `std` (without it, a panic never returns).
    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    Panic,
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Detail::Arg(name, p) => match p {
                ArgProblem::Null => write!(f, "`{name}` is NULL"),
                ArgProblem::NullWithLength(n) => {
                    write!(f, "`{name}` is NULL but its length is {n}")
                }
                ArgProblem::Misaligned { addr, align } => {
                    write!(f, "`{name}` ({addr:#x}) is not {align}-byte aligned")
                }
                ArgProblem::TooLarge { count, elem } => write!(
                    f,
                    "`{name}`: {count} entries of {elem} bytes overflow the address space"
                ),
                ArgProblem::NotAHandle(kind) => {
                    write!(f, "`{name}` is not a live {kind} handle")
                }
                ArgProblem::Freed(kind) => {
                    write!(f, "`{name}` is a {kind} handle that was freed")
                }
                ArgProblem::BadValue(v) => write!(f, "`{name}` has no meaning for {v}"),
                ArgProblem::Short { needed, given } => {
                    write!(f, "`{name}` holds {given} entries; {needed} are needed")
                }
            },
            Detail::Range(name, e) => match e {
                AddrError::EndOverflow { base, size } => write!(
                    f,
                    "`{name}`: base {base:#x} + size {size:#x} overflows 64 bits"
                ),
                AddrError::BeyondMaxPa { value } => {
                    write!(f, "`{name}`: {value:#x} is not below 2^52")
                }
                AddrError::Inverted { start, end } => {
                    write!(f, "`{name}`: end {end:#x} lies before start {start:#x}")
                }
            },
            Detail::MemoryMap(e) => write!(f, "memory map: {e}"),
            Detail::Cmr(e) => write!(f, "CMRs: {e}"),
            Detail::Limits(e) => write!(f, "limits: {e}"),
            Detail::KeyIdRange(e) => write!(f, "private KeyIDs: {e}"),
            Detail::Plan(e) => write!(f, "{e}"),
            Detail::Abi(e) => write!(f, "{e}"),
            Detail::Status(s) => write!(f, "TDH.SYS.CONFIG would fail: {s}"),
            Detail::Admit(e) => write!(f, "{e}"),
            Detail::Remove(e) => write!(f, "{e}"),
            Detail::BeginInit(e) => write!(f, "{e}"),
            Detail::BeginUpdate(e) => write!(f, "{e}"),
            Detail::E820(e) => write!(f, "{e}"),
            Detail::Uefi(e) => write!(f, "{e}"),
            Detail::Srat(e) => write!(f, "{e}"),
            Detail::FirmwareMap(e) => write!(f, "firmware tables: {e}"),
            Detail::Publish(e) => write!(f, "{e}"),
            Detail::CpuOnline(e) => write!(f, "{e}"),
            Detail::CpuOffline(e) => write!(f, "{e}"),
            Detail::KeyId(e) => write!(f, "{e}"),
            Detail::GateConfig(e) => write!(f, "{e}"),
            Detail::NoMemory(bytes) => write!(f, "could not allocate {bytes} bytes"),
            Detail::Panic => write!(
                f,
                "internal error: a panic was caught at the C boundary (a bug in tdmr)"
            ),
        }
    }
}

/// A failed call: its code, the module's status where there is one, and why.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fail {
    pub(crate) code: tdmr_code,
    pub(crate) tdx_status: u64,
    pub(crate) detail: Detail,
}

impl Fail {
    pub(crate) const fn new(code: tdmr_code, detail: Detail) -> Self {
        Fail {
            code,
            tdx_status: 0,
            detail,
        }
    }

    pub(crate) const fn arg(code: tdmr_code, name: &'static str, problem: ArgProblem) -> Self {
        Fail::new(code, Detail::Arg(name, problem))
    }

    /// `name` holds a value that selects nothing.
    pub(crate) const fn bad_value(name: &'static str, value: u64) -> Self {
        Fail::arg(TDMR_ERR_INVALID_ARGUMENT, name, ArgProblem::BadValue(value))
    }
}

impl From<MemoryMapError> for Fail {
    fn from(e: MemoryMapError) -> Self {
        Fail::new(TDMR_ERR_MEMORY_MAP, Detail::MemoryMap(e))
    }
}

impl From<CmrError> for Fail {
    fn from(e: CmrError) -> Self {
        Fail::new(TDMR_ERR_CMRS, Detail::Cmr(e))
    }
}

impl From<LimitsError> for Fail {
    fn from(e: LimitsError) -> Self {
        Fail::new(TDMR_ERR_LIMITS, Detail::Limits(e))
    }
}

impl From<KeyIdRangeError> for Fail {
    fn from(e: KeyIdRangeError) -> Self {
        Fail::new(TDMR_ERR_INVALID_ARGUMENT, Detail::KeyIdRange(e))
    }
}

impl From<PlanError> for Fail {
    fn from(e: PlanError) -> Self {
        let code = match e {
            PlanError::Memory(m) => return m.into(),
            PlanError::PamtAllocationFailed { .. } | PlanError::BadPamtBlock { .. } => {
                TDMR_ERR_PAMT_ALLOCATION
            }
            // TdmrsExhausted, ReservedAreasExhausted, Infeasible, and what may come.
            _ => TDMR_ERR_NO_LAYOUT,
        };
        Fail::new(code, Detail::Plan(e))
    }
}

impl From<AbiError> for Fail {
    fn from(e: AbiError) -> Self {
        Fail::new(TDMR_ERR_ABI, Detail::Abi(e))
    }
}

impl From<Status> for Fail {
    fn from(s: Status) -> Self {
        Fail {
            code: TDMR_ERR_CONFIG_REJECTED,
            tdx_status: s.raw(),
            detail: Detail::Status(s),
        }
    }
}

impl From<AdmitError> for Fail {
    fn from(e: AdmitError) -> Self {
        let code = match e {
            _ if e.is_retryable() => TDMR_ERR_BUSY,
            AdmitError::NotConvertible { .. } => TDMR_ERR_NOT_CONVERTIBLE,
            AdmitError::NotTdxMemory { .. } => TDMR_ERR_NOT_TDX_MEMORY,
            // Empty, Misaligned, and what may come.
            _ => TDMR_ERR_BAD_RANGE,
        };
        Fail::new(code, Detail::Admit(e))
    }
}

impl From<BeginInitError> for Fail {
    fn from(e: BeginInitError) -> Self {
        let code = match e {
            _ if e.is_retryable() => TDMR_ERR_BUSY,
            BeginInitError::PackageOffline { .. } => TDMR_ERR_PACKAGE_OFFLINE,
            // AlreadyInitialized, and what may come.
            _ => TDMR_ERR_STATE,
        };
        Fail::new(code, Detail::BeginInit(e))
    }
}

impl From<RemoveError> for Fail {
    fn from(e: RemoveError) -> Self {
        let code = match e {
            // Before the retryable check: Dynamic PAMT pages go back in time, but the caller
            // is told whose memory it is.
            RemoveError::HoldsTdxMetadata { .. } => TDMR_ERR_HOLDS_TDX_METADATA,
            _ if e.is_retryable() => TDMR_ERR_BUSY,
            RemoveError::MetadataUnknown { .. } | RemoveError::DynamicPamtUntracked { .. } => {
                TDMR_ERR_METADATA_UNTRACKED
            }
            // Empty, Misaligned, and what may come.
            _ => TDMR_ERR_BAD_RANGE,
        };
        Fail::new(code, Detail::Remove(e))
    }
}

impl From<BeginUpdateError> for Fail {
    fn from(e: BeginUpdateError) -> Self {
        let code = match e {
            _ if e.is_retryable() => TDMR_ERR_BUSY,
            // NotInitialized, and what may come.
            _ => TDMR_ERR_STATE,
        };
        Fail::new(code, Detail::BeginUpdate(e))
    }
}

impl From<E820Error> for Fail {
    fn from(e: E820Error) -> Self {
        Fail::new(TDMR_ERR_MEMORY_TABLE, Detail::E820(e))
    }
}

impl From<UefiMapError> for Fail {
    fn from(e: UefiMapError) -> Self {
        Fail::new(TDMR_ERR_MEMORY_TABLE, Detail::Uefi(e))
    }
}

impl From<SratError> for Fail {
    fn from(e: SratError) -> Self {
        Fail::new(TDMR_ERR_SRAT, Detail::Srat(e))
    }
}

impl From<FirmwareMapError> for Fail {
    fn from(e: FirmwareMapError) -> Self {
        match e {
            FirmwareMapError::SratOverlap { .. } => {
                Fail::new(TDMR_ERR_SRAT, Detail::FirmwareMap(e))
            }
            // No RAM from 1 MiB up, RAM beyond 2^52, an SRAT boundary inside a page.
            FirmwareMapError::Memory(m) => m.into(),
            _ => Fail::new(TDMR_ERR_MEMORY_MAP, Detail::FirmwareMap(e)),
        }
    }
}

impl From<PublishError> for Fail {
    fn from(e: PublishError) -> Self {
        let code = match e {
            PublishError::MetadataTooLarge { .. } => TDMR_ERR_METADATA_UNTRACKED,
            // SnapshotTooLarge, and what may come.
            _ => TDMR_ERR_SNAPSHOT_TOO_LARGE,
        };
        Fail::new(code, Detail::Publish(e))
    }
}

impl From<CpuOnlineError> for Fail {
    fn from(e: CpuOnlineError) -> Self {
        let code = match e {
            _ if e.is_retryable() => TDMR_ERR_BUSY,
            CpuOnlineError::NoSuchCpu { .. } | CpuOnlineError::NoSuchPackage { .. } => {
                TDMR_ERR_NO_SUCH_CPU
            }
            // AlreadyOnline, and what may come.
            _ => TDMR_ERR_CPU_STATE,
        };
        Fail::new(code, Detail::CpuOnline(e))
    }
}

impl From<CpuOfflineError> for Fail {
    fn from(e: CpuOfflineError) -> Self {
        let code = match e {
            _ if e.is_retryable() => TDMR_ERR_BUSY,
            CpuOfflineError::NoSuchCpu { .. } | CpuOfflineError::NoSuchPackage { .. } => {
                TDMR_ERR_NO_SUCH_CPU
            }
            CpuOfflineError::GuestKeyIdsInUse { .. } => TDMR_ERR_GUEST_KEYIDS_IN_USE,
            // NotOnline, WrongPackage, and what may come.
            _ => TDMR_ERR_CPU_STATE,
        };
        Fail::new(code, Detail::CpuOffline(e))
    }
}

impl From<KeyIdError> for Fail {
    fn from(e: KeyIdError) -> Self {
        let code = match e {
            _ if e.is_retryable() => TDMR_ERR_BUSY,
            KeyIdError::PackageOffline { .. } => TDMR_ERR_PACKAGE_OFFLINE,
            KeyIdError::TooMany { .. } => TDMR_ERR_LIMIT_REACHED,
            // NotInitialized, NoneInUse, and what may come.
            _ => TDMR_ERR_STATE,
        };
        Fail::new(code, Detail::KeyId(e))
    }
}

impl From<GateConfigError> for Fail {
    fn from(e: GateConfigError) -> Self {
        Fail::new(TDMR_ERR_GATE_CONFIG, Detail::GateConfig(e))
    }
}

/// Formats into a fixed buffer, cutting at a UTF-8 boundary and always leaving room for NUL.
pub(crate) struct MessageBuf {
    pub(crate) bytes: [u8; TDMR_ERROR_MESSAGE_SIZE],
    pub(crate) len: usize,
    pub(crate) truncated: bool,
}

impl MessageBuf {
    pub(crate) const fn new() -> Self {
        MessageBuf {
            bytes: [0; TDMR_ERROR_MESSAGE_SIZE],
            len: 0,
            truncated: false,
        }
    }
}

impl Write for MessageBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.truncated {
            return Ok(());
        }
        let room = TDMR_ERROR_MESSAGE_SIZE - 1 - self.len;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        if let (Some(dst), Some(src)) = (
            self.bytes.get_mut(self.len..self.len + take),
            s.as_bytes().get(..take),
        ) {
            dst.copy_from_slice(src);
            self.len += take;
        }
        if take < s.len() {
            self.truncated = true;
        }
        Ok(())
    }
}

impl tdmr_error {
    /// The value written for a call's outcome.
    pub(crate) fn from_outcome(outcome: Result<(), &Fail>) -> Self {
        let mut out = tdmr_error {
            code: TDMR_OK as i32,
            truncated: 0,
            tdx_status: 0,
            message: [0; TDMR_ERROR_MESSAGE_SIZE],
        };
        if let Err(fail) = outcome {
            let mut buf = MessageBuf::new();
            // MessageBuf never fails; a Display impl that fails leaves what it wrote.
            let _ = write!(buf, "{}", fail.detail);
            out.code = fail.code as i32;
            out.tdx_status = fail.tdx_status;
            out.truncated = u32::from(buf.truncated);
            for (dst, &src) in out.message.iter_mut().zip(buf.bytes.iter()) {
                *dst = src as c_char;
            }
        }
        out
    }
}

/// (code, name, description) of every code, in one table so the three never disagree.
const CODES: &[(tdmr_code, &core::ffi::CStr, &core::ffi::CStr)] = &[
    (TDMR_OK, c"TDMR_OK", c"success"),
    (
        TDMR_ERR_NULL_POINTER,
        c"TDMR_ERR_NULL_POINTER",
        c"a required pointer is NULL",
    ),
    (
        TDMR_ERR_MISALIGNED,
        c"TDMR_ERR_MISALIGNED",
        c"a pointer is not aligned for its type",
    ),
    (
        TDMR_ERR_TOO_LARGE,
        c"TDMR_ERR_TOO_LARGE",
        c"a length overflows the address space",
    ),
    (
        TDMR_ERR_BUFFER_TOO_SMALL,
        c"TDMR_ERR_BUFFER_TOO_SMALL",
        c"the buffer is too small; the count says how many entries are needed",
    ),
    (
        TDMR_ERR_INVALID_ARGUMENT,
        c"TDMR_ERR_INVALID_ARGUMENT",
        c"an argument's value selects nothing",
    ),
    (
        TDMR_ERR_INVALID_HANDLE,
        c"TDMR_ERR_INVALID_HANDLE",
        c"not a live handle of the expected kind",
    ),
    (
        TDMR_ERR_MEMORY_MAP,
        c"TDMR_ERR_MEMORY_MAP",
        c"the memory map was refused",
    ),
    (TDMR_ERR_CMRS, c"TDMR_ERR_CMRS", c"the CMR list was refused"),
    (
        TDMR_ERR_LIMITS,
        c"TDMR_ERR_LIMITS",
        c"the module limits were refused",
    ),
    (
        TDMR_ERR_NO_LAYOUT,
        c"TDMR_ERR_NO_LAYOUT",
        c"no TDMR layout fits the module's limits",
    ),
    (
        TDMR_ERR_PAMT_ALLOCATION,
        c"TDMR_ERR_PAMT_ALLOCATION",
        c"the PAMT allocator had no usable block",
    ),
    (
        TDMR_ERR_ABI,
        c"TDMR_ERR_ABI",
        c"the plan does not fit the TDMR_INFO ABI",
    ),
    (
        TDMR_ERR_CONFIG_REJECTED,
        c"TDMR_ERR_CONFIG_REJECTED",
        c"TDH.SYS.CONFIG would refuse the configuration",
    ),
    (TDMR_ERR_BUSY, c"TDMR_ERR_BUSY", c"busy: retry later"),
    (
        TDMR_ERR_NOT_CONVERTIBLE,
        c"TDMR_ERR_NOT_CONVERTIBLE",
        c"the memory lies outside the CMRs",
    ),
    (
        TDMR_ERR_NOT_TDX_MEMORY,
        c"TDMR_ERR_NOT_TDX_MEMORY",
        c"the memory is not TDX memory of the initialized module",
    ),
    (
        TDMR_ERR_BAD_RANGE,
        c"TDMR_ERR_BAD_RANGE",
        c"the memory range is empty, misaligned or overflows",
    ),
    (
        TDMR_ERR_STATE,
        c"TDMR_ERR_STATE",
        c"the module state does not allow it",
    ),
    (
        TDMR_ERR_NO_SUCH_CPU,
        c"TDMR_ERR_NO_SUCH_CPU",
        c"no such CPU or package",
    ),
    (
        TDMR_ERR_CPU_STATE,
        c"TDMR_ERR_CPU_STATE",
        c"the CPU is not in the state the call needs",
    ),
    (
        TDMR_ERR_PACKAGE_OFFLINE,
        c"TDMR_ERR_PACKAGE_OFFLINE",
        c"a package has no online CPU",
    ),
    (
        TDMR_ERR_GUEST_KEYIDS_IN_USE,
        c"TDMR_ERR_GUEST_KEYIDS_IN_USE",
        c"the last CPU of a package cannot go offline while guest KeyIDs are in use",
    ),
    (
        TDMR_ERR_GATE_CONFIG,
        c"TDMR_ERR_GATE_CONFIG",
        c"the gate's topology was refused",
    ),
    (
        TDMR_ERR_SNAPSHOT_TOO_LARGE,
        c"TDMR_ERR_SNAPSHOT_TOO_LARGE",
        c"the frozen TDX memory does not fit the gate; it admits no memory",
    ),
    (
        TDMR_ERR_LIMIT_REACHED,
        c"TDMR_ERR_LIMIT_REACHED",
        c"a counter is at its maximum",
    ),
    (
        TDMR_ERR_NO_MEMORY,
        c"TDMR_ERR_NO_MEMORY",
        c"an allocation failed",
    ),
    (
        TDMR_ERR_INTERNAL,
        c"TDMR_ERR_INTERNAL",
        c"internal error (a bug in tdmr)",
    ),
    (
        TDMR_ERR_MEMORY_TABLE,
        c"TDMR_ERR_MEMORY_TABLE",
        c"the E820 or UEFI memory map was refused",
    ),
    (TDMR_ERR_SRAT, c"TDMR_ERR_SRAT", c"the SRAT was refused"),
    (
        TDMR_ERR_HOLDS_TDX_METADATA,
        c"TDMR_ERR_HOLDS_TDX_METADATA",
        c"the memory holds TDX metadata and cannot be removed",
    ),
    (
        TDMR_ERR_METADATA_UNTRACKED,
        c"TDMR_ERR_METADATA_UNTRACKED",
        c"the gate does not track all TDX metadata; it admits no memory removal",
    ),
];

fn lookup(
    code: i32,
) -> Option<&'static (
    tdmr_code,
    &'static core::ffi::CStr,
    &'static core::ffi::CStr,
)> {
    CODES.iter().find(|(c, _, _)| *c as i32 == code)
}

/// The name of a code (`"TDMR_ERR_BUSY"`), or `"TDMR_ERR_UNKNOWN"` for a value that is none.
///
/// Ownership: a static NUL-terminated string; never free it. Never NULL.
#[unsafe(no_mangle)]
pub extern "C" fn tdmr_error_name(code: i32) -> *const c_char {
    lookup(code).map_or(c"TDMR_ERR_UNKNOWN", |e| e.1).as_ptr()
}

/// A one-line description of a code (`"busy: retry later"`), or `"unknown error code"`.
///
/// Ownership: a static NUL-terminated string; never free it. Never NULL.
#[unsafe(no_mangle)]
pub extern "C" fn tdmr_error_message(code: i32) -> *const c_char {
    lookup(code).map_or(c"unknown error code", |e| e.2).as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_all_named() {
        for (i, (c, n, _)) in CODES.iter().enumerate() {
            assert!(
                CODES[..i].iter().all(|(d, _, _)| d != c),
                "{n:?} repeats {c:?}"
            );
            assert_eq!(
                i32::try_from(i).map(|i| -i),
                Ok(*c as i32),
                "codes run 0, -1, -2, ..."
            );
        }
        assert_eq!(CODES.len(), 32);
    }

    #[test]
    fn messages_are_cut_at_a_character_boundary() {
        let mut b = MessageBuf::new();
        let long = "é".repeat(200); // 400 bytes of 2-byte characters
        b.write_str(&long).unwrap();
        assert!(b.truncated);
        assert_eq!(b.len, 254);
        assert!(core::str::from_utf8(&b.bytes[..b.len]).is_ok());
        assert_eq!(b.bytes[b.len], 0);
    }
}

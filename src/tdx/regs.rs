//! The registers of a SEAMCALL: what goes in besides the leaf in RAX, and what comes back.

use super::status::Status;

/// The general-purpose registers a SEAMCALL passes in and gets back, besides RAX.
///
/// Leaves read their inputs from RCX, RDX and R8–R11 (and R12–R15, RBX, RDI, RSI for the few
/// that take more); the module returns outputs in the same registers and may leave error
/// details in them when the status is not success. Unused registers are zero by convention.
///
/// ```
/// use tdmr::tdx::Regs;
/// let r = Regs { rcx: 1 << 30, ..Regs::ZERO };
/// assert_eq!(r.rdx, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Regs {
    /// RCX.
    pub rcx: u64,
    /// RDX.
    pub rdx: u64,
    /// R8.
    pub r8: u64,
    /// R9.
    pub r9: u64,
    /// R10.
    pub r10: u64,
    /// R11.
    pub r11: u64,
    /// R12.
    pub r12: u64,
    /// R13.
    pub r13: u64,
    /// R14.
    pub r14: u64,
    /// R15.
    pub r15: u64,
    /// RBX.
    pub rbx: u64,
    /// RDI.
    pub rdi: u64,
    /// RSI.
    pub rsi: u64,
}

impl Regs {
    /// All registers zero.
    pub const ZERO: Regs = Regs {
        rcx: 0,
        rdx: 0,
        r8: 0,
        r9: 0,
        r10: 0,
        r11: 0,
        r12: 0,
        r13: 0,
        r14: 0,
        r15: 0,
        rbx: 0,
        rdi: 0,
        rsi: 0,
    };
}

/// What a SEAMCALL returns: the status from RAX and the output registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Output {
    /// RAX: the TDX status, or a host-side code (`TDX_SEAMCALL_VMFAILINVALID`, ...).
    pub status: Status,
    /// The other registers as the module left them.
    pub regs: Regs,
}

impl Output {
    /// An output with this status and these registers.
    #[inline]
    pub const fn new(status: Status, regs: Regs) -> Self {
        Output { status, regs }
    }
}

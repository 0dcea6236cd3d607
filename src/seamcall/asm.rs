//! The real SEAMCALL instruction (x86_64 only). The only `unsafe` code in the crate.
//!
//! [`SeamcallInstruction`] loads RAX with the leaf and RCX, RDX, R8–R15, RBX, RDI, RSI with the
//! inputs, executes `SEAMCALL` (`66 0F 01 CF`), and hands back RAX and all thirteen registers.
//! Every general-purpose register the module may write is an output of the `asm!` block; RBX
//! and RBP, which the compiler reserves, are saved on the stack around the instruction and
//! restored afterwards (RBP defensively: modules reporting `NO_RBP_MOD` leave it alone anyway).
//!
//! When the instruction itself fails with VMfailInvalid (CF = 1: no SEAM module loaded, the
//! module disabled, or the P-SEAMLDR busy) RAX still holds the leaf; the status becomes
//! [`TDX_SEAMCALL_VMFAILINVALID`] instead. A `#GP` or `#UD` raised by the instruction is the
//! kernel's to handle: a kernel that recovers from it with an exception-table fixup should report
//! [`crate::tdx::status::TDX_SEAMCALL_GP`] / [`crate::tdx::status::TDX_SEAMCALL_UD`] as Linux does.
//!
//! Registers outside the general-purpose set (vector, x87, segment) are preserved by the TDX
//! module across SEAMCALL and are not declared.
#![allow(unsafe_code)]

use core::arch::asm;

use super::Seamcall;
use crate::tdx::leaf::Leaf;
use crate::tdx::status::{Status, TDX_SEAMCALL_VMFAILINVALID};
use crate::tdx::{Output, Regs};

/// The SEAMCALL instruction as a [`Seamcall`] backend.
///
/// It can only be obtained through the `unsafe` [`SeamcallInstruction::new`]; once obtained,
/// issuing calls is safe for the leaves the crate's driver uses, because the module validates
/// every input itself and reports misuse through its status.
#[derive(Debug)]
pub struct SeamcallInstruction {
    _private: (),
}

impl SeamcallInstruction {
    /// The real instruction.
    ///
    /// # Safety
    ///
    /// For the lifetime of the value, every thread that calls [`Seamcall::seamcall`] on it must
    /// run at CPL 0 in VMX root operation, with a TDX module loaded (otherwise the instruction
    /// raises `#UD` or `#GP`, which the caller's kernel must be prepared to handle), and, for
    /// leaves other than TDH.SYS.INIT and TDH.SYS.LP.INIT, on a logical processor that
    /// TDH.SYS.LP.INIT has initialized. Physical addresses passed in registers must point at
    /// memory the caller owns for the duration of the call (the module reads and writes it).
    pub const unsafe fn new() -> Self {
        SeamcallInstruction { _private: () }
    }
}

impl Seamcall for SeamcallInstruction {
    fn seamcall(&self, leaf: Leaf, regs: &Regs) -> Output {
        let mut rax = leaf.rax();
        let (mut rcx, mut rdx) = (regs.rcx, regs.rdx);
        let (mut r8, mut r9, mut r10, mut r11) = (regs.r8, regs.r9, regs.r10, regs.r11);
        let (mut r12, mut r13, mut r14, mut r15) = (regs.r12, regs.r13, regs.r14, regs.r15);
        let mut rdi = regs.rdi;
        // RSI and RBX travel through memory: RSI carries the address of this pair into the asm
        // block, and RBX cannot be named as an operand.
        let mut rsi_rbx = [regs.rsi, regs.rbx];
        // SAFETY: `new`'s contract puts us at CPL 0 in VMX root operation with a module loaded,
        // so SEAMCALL either returns to the next instruction or fails with VMfailInvalid.
        // The block pushes RBP, RBX and the pair's address and pops all three before leaving,
        // so the stack pointer and the compiler's reserved registers are as they were. It
        // writes only the `rsi_rbx` pair (through its pointer) and the registers declared as
        // outputs; the module preserves RSP and every non-general-purpose register. No
        // `nostack`, so the compiler keeps the red zone free for the pushes.
        unsafe {
            asm!(
                "push rbp",
                "push rbx",
                "push rsi",
                "mov rbx, qword ptr [rsi + 8]",
                "mov rsi, qword ptr [rsi]",
                // SEAMCALL (66 0F 01 CF), spelled out for assemblers that lack the mnemonic.
                ".byte 0x66, 0x0f, 0x01, 0xcf",
                "jnc 2f",
                "mov rax, {vmfail}",
                "2:",
                "xchg rsi, qword ptr [rsp]",
                "mov qword ptr [rsi + 8], rbx",
                "pop qword ptr [rsi]",
                "pop rbx",
                "pop rbp",
                vmfail = const TDX_SEAMCALL_VMFAILINVALID as i64,
                inout("rax") rax,
                inout("rcx") rcx,
                inout("rdx") rdx,
                inout("r8") r8,
                inout("r9") r9,
                inout("r10") r10,
                inout("r11") r11,
                inout("r12") r12,
                inout("r13") r13,
                inout("r14") r14,
                inout("r15") r15,
                inout("rdi") rdi,
                inout("rsi") rsi_rbx.as_mut_ptr() => _,
            );
        }
        let [rsi, rbx] = rsi_rbx;
        Output::new(
            Status::new(rax),
            Regs {
                rcx,
                rdx,
                r8,
                r9,
                r10,
                r11,
                r12,
                r13,
                r14,
                r15,
                rbx,
                rdi,
                rsi,
            },
        )
    }
}

//! Issuing one SEAMCALL with the retries Linux makes, counting every attempt.

use alloc::boxed::Box;
use core::fmt;

use super::CpuId;
use crate::seamcall::{Seamcall, SeamcallCounts};
use crate::tdx::leaf::Leaf;
use crate::tdx::status::{
    Status, TDX_KEY_GENERATION_FAILED, TDX_OPERAND_BUSY, TDX_RND_NO_ENTROPY, TDX_SYS_BUSY,
};
use crate::tdx::{Output, Regs};

/// How often transient failures are retried.
///
/// - Entropy failures (`TDX_RND_NO_ENTROPY`, and `TDX_KEY_GENERATION_FAILED` from PCONFIG):
///   the call is issued up to `entropy_attempts` times (Linux: 10, `RDRAND_RETRY_LOOPS`).
/// - Contention (`TDX_SYS_BUSY`, `TDX_OPERAND_BUSY`): up to `busy_attempts` times, spinning
///   between attempts for a doubling number of iterations capped at `max_backoff_spins`.
///
/// Anything else fails at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts for entropy failures (at least 1).
    pub entropy_attempts: u32,
    /// Attempts for contention (at least 1).
    pub busy_attempts: u32,
    /// Cap on the spin iterations between two busy attempts.
    pub max_backoff_spins: u32,
}

impl Default for RetryPolicy {
    /// 10 entropy attempts (as Linux), 64 busy attempts, backoff capped at 4096 spins.
    fn default() -> Self {
        RetryPolicy {
            entropy_attempts: 10,
            busy_attempts: 64,
            max_backoff_spins: 4096,
        }
    }
}

/// A SEAMCALL that failed for good: the leaf, where it ran, what went in and what came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeamcallError {
    /// The leaf.
    pub leaf: Leaf,
    /// The CPU it ran on, when the driver chose one.
    pub cpu: Option<CpuId>,
    /// Input registers.
    pub inputs: Regs,
    /// The raw status of the last attempt.
    pub status: Status,
    /// Output registers of the last attempt.
    pub outputs: Regs,
    /// Attempts made (retries included).
    pub attempts: u32,
}

impl fmt::Display for SeamcallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SEAMCALL {} ({:#x})", self.leaf, self.leaf.rax())?;
        if let Some(cpu) = self.cpu {
            write!(f, " on CPU {cpu}")?;
        }
        let i = &self.inputs;
        let o = &self.outputs;
        write!(
            f,
            " failed: {} after {} attempt{}; in RCX {:#x} RDX {:#x} R8 {:#x} R9 {:#x}; \
             out RCX {:#x} RDX {:#x} R8 {:#x} R9 {:#x} R10 {:#x} R11 {:#x}",
            self.status,
            self.attempts,
            if self.attempts == 1 { "" } else { "s" },
            i.rcx,
            i.rdx,
            i.r8,
            i.r9,
            o.rcx,
            o.rdx,
            o.r8,
            o.r9,
            o.r10,
            o.r11
        )
    }
}

impl core::error::Error for SeamcallError {}

fn is_entropy(s: Status) -> bool {
    matches!(s.code(), TDX_RND_NO_ENTROPY | TDX_KEY_GENERATION_FAILED)
}

fn is_busy(s: Status) -> bool {
    matches!(s.code(), TDX_SYS_BUSY | TDX_OPERAND_BUSY)
}

/// The last attempt of a SEAMCALL issued with retries: what came back and how many attempts
/// it took. Made without allocating, so it can run on any CPU (a UEFI AP may not allocate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Attempted {
    /// Status and outputs of the last attempt.
    pub(crate) out: Output,
    /// Attempts made (retries included).
    pub(crate) attempts: u32,
}

impl Attempted {
    /// Whether the last attempt returned a status without the error bit.
    pub(crate) fn ok(&self) -> bool {
        !self.out.status.is_error()
    }
}

/// Issues `leaf` until it returns a status without the error bit, or a failure that is not
/// transient, or the policy's attempts run out. No allocation.
pub(crate) fn attempt<S: Seamcall + ?Sized>(
    backend: &S,
    policy: RetryPolicy,
    leaf: Leaf,
    inputs: &Regs,
) -> Attempted {
    let mut entropy = 0u32;
    let mut busy = 0u32;
    let mut spins = 1u32;
    let mut attempts = 0u32;
    loop {
        let out = backend.seamcall(leaf, inputs);
        attempts = attempts.saturating_add(1);
        let status = out.status;
        if !status.is_error() {
            return Attempted { out, attempts };
        }
        let retry = if is_entropy(status) {
            entropy += 1;
            entropy < policy.entropy_attempts
        } else if is_busy(status) {
            busy += 1;
            let again = busy < policy.busy_attempts;
            if again {
                for _ in 0..spins {
                    core::hint::spin_loop();
                }
                spins = spins.saturating_mul(2).min(policy.max_backoff_spins.max(1));
            }
            again
        } else {
            false
        };
        if !retry {
            return Attempted { out, attempts };
        }
    }
}

impl SeamcallError {
    /// The error of a call whose last attempt failed.
    pub(crate) fn from_attempt(leaf: Leaf, cpu: Option<CpuId>, inputs: Regs, a: Attempted) -> Self {
        SeamcallError {
            leaf,
            cpu,
            inputs,
            status: a.out.status,
            outputs: a.out.regs,
            attempts: a.attempts,
        }
    }
}

/// Issues SEAMCALLs with retries and counts them.
pub(crate) struct Caller<'a, S: ?Sized> {
    backend: &'a S,
    policy: RetryPolicy,
    pub(crate) counts: SeamcallCounts,
    /// Attempts the last [`Caller::call`] made (retries included).
    pub(crate) last_attempts: u32,
}

impl<'a, S: Seamcall + ?Sized> Caller<'a, S> {
    pub(crate) fn new(backend: &'a S, policy: RetryPolicy) -> Self {
        Caller {
            backend,
            policy,
            counts: SeamcallCounts::new(),
            last_attempts: 0,
        }
    }

    /// Issues `leaf` per [`attempt`], counting every attempt. `cpu` is where the call runs,
    /// for errors.
    pub(crate) fn call(
        &mut self,
        leaf: Leaf,
        inputs: Regs,
        cpu: Option<CpuId>,
    ) -> Result<Output, Box<SeamcallError>> {
        let a = attempt(self.backend, self.policy, leaf, &inputs);
        self.counts.add(leaf, u64::from(a.attempts));
        self.last_attempts = a.attempts;
        if a.ok() {
            Ok(a.out)
        } else {
            Err(Box::new(SeamcallError::from_attempt(leaf, cpu, inputs, a)))
        }
    }
}

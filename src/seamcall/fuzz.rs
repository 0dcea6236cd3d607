//! A lying TDX module, in the style of smoltcp's `FuzzInjector`: a wrapper around any
//! [`Seamcall`] backend that lets each call reach the backend and then corrupts what comes back
//! — the status, the output registers (TDH.SYS.TDMR.INIT's next-to-initialize address in RDX,
//! TDH.SYS.RD's metadata value in R8 and next field id in RDX) — as a byte string says. Where
//! [`super::FaultInjector`] injects the module's documented transient errors, this one makes
//! the module say things no module should, so a host can be shown to survive them: no panic,
//! no endless retry, no "initialized" without every TDMR reported done.
//!
//! Each call takes one byte from the string (none left: the call passes unchanged):
//!
//! | byte % 16 | effect |
//! |---|---|
//! | 0–7 | none |
//! | 8 | status replaced by one of the module's own codes (next byte chooses) |
//! | 9 | status replaced by the next 8 bytes |
//! | 10 | RDX replaced by the next 8 bytes |
//! | 11 | RDX moved by a signed multiple of 4 MiB (next byte) |
//! | 12 | R8 replaced by the next 8 bytes |
//! | 13 | R8 with one bit flipped (next byte) |
//! | 14 | a register chosen by the next byte replaced by the 8 after |
//! | 15 | status forced to success, outputs kept |
//!
//! Every output after corruption is recorded ([`FuzzInjector::outputs`]), so a test can check
//! the host against what it was told.

use alloc::vec::Vec;

use super::Seamcall;
use super::lock::Lock;
use crate::tdx::leaf::Leaf;
use crate::tdx::status::{
    Status, TDX_KEY_CONFIGURED, TDX_KEY_GENERATION_FAILED, TDX_METADATA_FIELD_ID_INCORRECT,
    TDX_OPERAND_BUSY, TDX_OPERAND_INVALID, TDX_RND_NO_ENTROPY, TDX_SUCCESS, TDX_SYS_BUSY,
    TDX_SYS_NOT_READY, TDX_TDMR_ALREADY_INITIALIZED,
};
use crate::tdx::{Output, Regs};

/// Statuses byte 8 chooses from: successes that are not `TDX_SUCCESS`, transient failures the
/// host retries, and hard failures.
const CODES: [u64; 10] = [
    TDX_SUCCESS,
    TDX_TDMR_ALREADY_INITIALIZED,
    TDX_KEY_CONFIGURED,
    TDX_OPERAND_BUSY,
    TDX_SYS_BUSY,
    TDX_RND_NO_ENTROPY,
    TDX_KEY_GENERATION_FAILED,
    TDX_OPERAND_INVALID | 1,
    TDX_SYS_NOT_READY,
    TDX_METADATA_FIELD_ID_INCORRECT,
];

/// One call as the host saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The leaf.
    pub leaf: Leaf,
    /// Input registers.
    pub inputs: Regs,
    /// What the host got back (corrupted or not).
    pub output: Output,
    /// Whether this call's output was corrupted.
    pub corrupted: bool,
}

#[derive(Debug)]
struct FuzzState {
    data: Vec<u8>,
    pos: usize,
    corrupted: u64,
    observed: Vec<Observed>,
}

impl FuzzState {
    fn byte(&mut self) -> Option<u8> {
        let b = self.data.get(self.pos).copied();
        if b.is_some() {
            self.pos += 1;
        }
        b
    }

    fn word(&mut self) -> u64 {
        let mut w = [0u8; 8];
        for b in &mut w {
            *b = self.byte().unwrap_or(0);
        }
        u64::from_le_bytes(w)
    }
}

fn reg(r: &mut Regs, which: u8) -> &mut u64 {
    match which % 13 {
        0 => &mut r.rcx,
        1 => &mut r.rdx,
        2 => &mut r.r8,
        3 => &mut r.r9,
        4 => &mut r.r10,
        5 => &mut r.r11,
        6 => &mut r.r12,
        7 => &mut r.r13,
        8 => &mut r.r14,
        9 => &mut r.r15,
        10 => &mut r.rbx,
        11 => &mut r.rdi,
        _ => &mut r.rsi,
    }
}

/// A [`Seamcall`] wrapper whose answers lie as a byte string says: each call takes one byte
/// (0–7 none; 8 a status of the module's own; 9 any status; 10 RDX replaced; 11 RDX moved by
/// a multiple of 4 MiB; 12 R8 replaced; 13 a bit of R8 flipped; 14 any register replaced;
/// 15 status forced to success), later bytes giving the values. Once the bytes run out,
/// calls pass unchanged.
///
/// ```
/// use tdmr::seamcall::{FuzzInjector, Seamcall};
/// use tdmr::tdx::status::Status;
/// use tdmr::tdx::{leaf, Output, Regs};
///
/// /// A backend that always succeeds and echoes its inputs.
/// struct Echo;
/// impl Seamcall for Echo {
///     fn seamcall(&self, _: leaf::Leaf, regs: &Regs) -> Output {
///         Output::new(Status::SUCCESS, *regs)
///     }
/// }
/// // Call 0 passes; call 1 gets RDX replaced by 0x1234.
/// let fuzz = FuzzInjector::new(Echo, &[0, 10, 0x34, 0x12, 0, 0, 0, 0, 0, 0]);
/// assert_eq!(fuzz.seamcall(leaf::TDH_SYS_TDMR_INIT, &Regs::ZERO).regs.rdx, 0);
/// assert_eq!(fuzz.seamcall(leaf::TDH_SYS_TDMR_INIT, &Regs::ZERO).regs.rdx, 0x1234);
/// assert_eq!(fuzz.corruptions(), 1);
/// ```
#[derive(Debug)]
pub struct FuzzInjector<S> {
    inner: S,
    state: Lock<FuzzState>,
}

impl<S: Seamcall> FuzzInjector<S> {
    /// Wraps `inner`; `data` says how calls are corrupted.
    pub fn new(inner: S, data: &[u8]) -> Self {
        FuzzInjector {
            inner,
            state: Lock::new(FuzzState {
                data: data.to_vec(),
                pos: 0,
                corrupted: 0,
                observed: Vec::new(),
            }),
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Calls whose output was corrupted.
    pub fn corruptions(&self) -> u64 {
        self.state.with(|s| s.corrupted)
    }

    /// Every call so far with what the host got back, in call order.
    pub fn outputs(&self) -> Vec<Observed> {
        self.state.with(|s| s.observed.clone())
    }
}

impl<S: Seamcall> Seamcall for FuzzInjector<S> {
    fn seamcall(&self, leaf: Leaf, regs: &Regs) -> Output {
        let mut out = self.inner.seamcall(leaf, regs);
        self.state.with(|s| {
            let op = s.byte().map_or(0, |b| b % 16);
            let r = &mut out.regs;
            match op {
                8 => {
                    let k = s.byte().unwrap_or(0) as usize % CODES.len();
                    out.status = Status::new(CODES[k]);
                }
                9 => out.status = Status::new(s.word()),
                10 => r.rdx = s.word(),
                11 => {
                    let by = i64::from(s.byte().unwrap_or(0) as i8) * (4 << 20);
                    r.rdx = r.rdx.wrapping_add_signed(by);
                }
                12 => r.r8 = s.word(),
                13 => r.r8 ^= 1 << (s.byte().unwrap_or(0) % 64),
                14 => {
                    let which = s.byte().unwrap_or(0);
                    *reg(r, which) = s.word();
                }
                15 => out.status = Status::SUCCESS,
                _ => {}
            }
            let corrupted = op >= 8;
            s.corrupted += u64::from(corrupted);
            s.observed.push(Observed {
                leaf,
                inputs: *regs,
                output: out,
                corrupted,
            });
        });
        out
    }
}

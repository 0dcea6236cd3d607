//! Fault injection in the style of smoltcp's `FaultInjector`: a wrapper around any
//! [`Seamcall`] backend that makes chosen calls, or a seeded fraction of them, fail with the
//! TDX module's transient errors instead of reaching the module.
//!
//! An injected call does not reach the wrapped backend, which is what the module does for these
//! codes: it gives up before changing any state (a failed PCONFIG leaves the package
//! unconfigured), so the host may retry.
//!
//! Faults are only injected on leaves that can return them:
//!
//! | kind | status | leaves |
//! |---|---|---|
//! | `rnd-no-entropy` | `TDX_RND_NO_ENTROPY` | TDH.SYS.INIT, TDH.SYS.LP.INIT |
//! | `sys-busy` | `TDX_SYS_BUSY` | TDH.SYS.INIT, LP.INIT, CONFIG, KEY.CONFIG, SHUTDOWN, DISABLE |
//! | `operand-busy` | `TDX_OPERAND_BUSY` + RCX / KET | TDH.SYS.TDMR.INIT / TDH.SYS.KEY.CONFIG |
//! | `key-generation-failed` | `TDX_KEY_GENERATION_FAILED` | TDH.SYS.KEY.CONFIG |
//! | `interrupted-resumable` | `TDX_INTERRUPTED_RESUMABLE` | TDH.EXT.MEM.ADD, TDH.EXT.INIT, TDH.SYS.DISABLE |
//!
//! An injected `TDX_INTERRUPTED_RESUMABLE` is an interruption before the call made progress:
//! the registers come back as they went in (RCX of TDH.EXT.MEM.ADD unchanged), so the host's
//! resumption repeats the same call.
//!
//! Rate decisions hash the seed with the leaf, RCX and how many times that `(leaf, RCX)` pair
//! was called before, so they do not depend on how concurrent callers interleave.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use super::Seamcall;
use super::lock::Lock;
use crate::tdx::leaf::{self, Leaf};
use crate::tdx::status::{
    Status, TDX_INTERRUPTED_RESUMABLE, TDX_KEY_GENERATION_FAILED, TDX_OPERAND_BUSY,
    TDX_RND_NO_ENTROPY, TDX_SYS_BUSY, operand,
};
use crate::tdx::{Output, Regs};

/// A transient TDX module error to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// `TDX_RND_NO_ENTROPY`: RDRAND/RDSEED ran dry.
    RndNoEntropy,
    /// `TDX_SYS_BUSY`: the module's global lock is taken.
    SysBusy,
    /// `TDX_OPERAND_BUSY`: a TDMR (or the key table) is in use by another LP.
    OperandBusy,
    /// `TDX_KEY_GENERATION_FAILED`: PCONFIG could not generate a key.
    KeyGenerationFailed,
    /// `TDX_INTERRUPTED_RESUMABLE`: a long-running call (module extension memory and
    /// initialization, TDH.SYS.DISABLE) was interrupted; call again to resume.
    InterruptedResumable,
}

impl FaultKind {
    /// All kinds.
    pub const ALL: [FaultKind; 5] = [
        FaultKind::RndNoEntropy,
        FaultKind::SysBusy,
        FaultKind::OperandBusy,
        FaultKind::KeyGenerationFailed,
        FaultKind::InterruptedResumable,
    ];

    /// The name used on command lines: `rnd-no-entropy`, `sys-busy`, `operand-busy`,
    /// `key-generation-failed`, `interrupted-resumable`.
    pub const fn name(self) -> &'static str {
        match self {
            FaultKind::RndNoEntropy => "rnd-no-entropy",
            FaultKind::SysBusy => "sys-busy",
            FaultKind::OperandBusy => "operand-busy",
            FaultKind::KeyGenerationFailed => "key-generation-failed",
            FaultKind::InterruptedResumable => "interrupted-resumable",
        }
    }

    /// The kind named `name` ([`FaultKind::name`], or the status name such as
    /// `TDX_SYS_BUSY`).
    pub fn from_name(name: &str) -> Option<Self> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == name || Status::new(k.code()).name() == Some(name))
    }

    const fn code(self) -> u64 {
        match self {
            FaultKind::RndNoEntropy => TDX_RND_NO_ENTROPY,
            FaultKind::SysBusy => TDX_SYS_BUSY,
            FaultKind::OperandBusy => TDX_OPERAND_BUSY,
            FaultKind::KeyGenerationFailed => TDX_KEY_GENERATION_FAILED,
            FaultKind::InterruptedResumable => TDX_INTERRUPTED_RESUMABLE,
        }
    }

    /// The status `leaf` would return for this fault, or `None` if it cannot.
    pub fn status(self, l: Leaf) -> Option<Status> {
        if l.version() != 0 {
            return None;
        }
        let raw = match (self, l) {
            (FaultKind::RndNoEntropy, leaf::TDH_SYS_INIT | leaf::TDH_SYS_LP_INIT) => {
                TDX_RND_NO_ENTROPY
            }
            (
                FaultKind::SysBusy,
                leaf::TDH_SYS_INIT
                | leaf::TDH_SYS_LP_INIT
                | leaf::TDH_SYS_CONFIG
                | leaf::TDH_SYS_KEY_CONFIG
                | leaf::TDH_SYS_SHUTDOWN
                | leaf::TDH_SYS_DISABLE,
            ) => TDX_SYS_BUSY,
            (FaultKind::OperandBusy, leaf::TDH_SYS_TDMR_INIT) => {
                TDX_OPERAND_BUSY | operand::RCX as u64
            }
            (FaultKind::OperandBusy, leaf::TDH_SYS_KEY_CONFIG) => {
                TDX_OPERAND_BUSY | operand::KET as u64
            }
            (FaultKind::KeyGenerationFailed, leaf::TDH_SYS_KEY_CONFIG) => TDX_KEY_GENERATION_FAILED,
            (
                FaultKind::InterruptedResumable,
                leaf::TDH_EXT_MEM_ADD | leaf::TDH_EXT_INIT | leaf::TDH_SYS_DISABLE,
            ) => TDX_INTERRUPTED_RESUMABLE,
            _ => return None,
        };
        Some(Status::new(raw))
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// When a fault fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// On the first `times` calls that can return the fault, counting from call number `call`
    /// (0-based, over all calls through the injector).
    At {
        /// First call considered.
        call: u64,
        /// Consecutive eligible calls that fail.
        times: u32,
    },
    /// On each eligible call with this probability, in parts per million.
    Rate {
        /// Parts per million (1 000 000 = always).
        ppm: u32,
    },
}

/// A fault and when it fires.
///
/// ```
/// use tdmr::seamcall::{FaultKind, FaultSpec};
/// let s: FaultSpec = "rnd-no-entropy@0x11".parse().unwrap();
/// assert_eq!(s.kind, FaultKind::RndNoEntropy);
/// let r: FaultSpec = "operand-busy@0.5%".parse().unwrap();
/// assert_eq!(r.to_string(), "operand-busy@0.5%");
/// assert!("no-such-fault@3".parse::<FaultSpec>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FaultSpec {
    /// The fault.
    pub kind: FaultKind,
    /// When.
    pub trigger: Trigger,
    /// Only on this leaf (`None`: every leaf that can return the fault).
    pub leaf: Option<Leaf>,
}

impl FaultSpec {
    /// `kind` on the first eligible call at or after call `call`.
    pub const fn at(kind: FaultKind, call: u64) -> Self {
        Self::at_times(kind, call, 1)
    }

    /// `kind` on `times` consecutive eligible calls from call `call` on.
    pub const fn at_times(kind: FaultKind, call: u64, times: u32) -> Self {
        FaultSpec {
            kind,
            trigger: Trigger::At { call, times },
            leaf: None,
        }
    }

    /// `kind` on each eligible call with probability `ppm` / 1 000 000.
    pub const fn rate(kind: FaultKind, ppm: u32) -> Self {
        FaultSpec {
            kind,
            trigger: Trigger::Rate { ppm },
            leaf: None,
        }
    }

    /// The same fault, restricted to `leaf`.
    pub const fn on_leaf(mut self, leaf: Leaf) -> Self {
        self.leaf = Some(leaf);
        self
    }
}

impl fmt::Display for FaultSpec {
    /// `KIND@CALL`, `KIND@CALLxTIMES` or `KIND@PERCENT%` (a leaf restriction is not shown).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.trigger {
            Trigger::At { call, times: 1 } => write!(f, "{}@{call}", self.kind),
            Trigger::At { call, times } => write!(f, "{}@{call}x{times}", self.kind),
            Trigger::Rate { ppm } => {
                write!(f, "{}@{}", self.kind, ppm / 10_000)?;
                let frac = ppm % 10_000;
                if frac != 0 {
                    let mut digits = alloc::format!("{frac:04}");
                    while digits.ends_with('0') {
                        digits.pop();
                    }
                    write!(f, ".{digits}")?;
                }
                f.write_str("%")
            }
        }
    }
}

/// A fault specification that does not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultSpecError {
    /// No `@` between kind and trigger.
    MissingAt,
    /// The kind is not one of [`FaultKind::ALL`].
    UnknownKind,
    /// The call number, repeat count or rate is not a number in range.
    BadNumber,
}

impl fmt::Display for FaultSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultSpecError::MissingAt => "expected KIND@CALL, KIND@CALLxTIMES or KIND@PERCENT%",
            FaultSpecError::UnknownKind => {
                "unknown fault kind (rnd-no-entropy, sys-busy, operand-busy, key-generation-failed, interrupted-resumable)"
            }
            FaultSpecError::BadNumber => "bad call number, repeat count or percentage",
        })
    }
}

impl core::error::Error for FaultSpecError {}

/// `"12.5"` percent as parts per million (at most 4 decimals, at most 100 %).
fn parse_percent(s: &str) -> Option<u32> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 4 || (int.is_empty() && frac.is_empty()) {
        return None;
    }
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !digits(frac) {
        return None;
    }
    let whole: u32 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut part: u32 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    for _ in frac.len()..4 {
        part *= 10;
    }
    let ppm = whole.checked_mul(10_000)?.checked_add(part)?;
    (ppm <= 1_000_000).then_some(ppm)
}

impl core::str::FromStr for FaultSpec {
    type Err = FaultSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, trigger) = s.split_once('@').ok_or(FaultSpecError::MissingAt)?;
        let kind = FaultKind::from_name(kind).ok_or(FaultSpecError::UnknownKind)?;
        if let Some(pct) = trigger.strip_suffix('%') {
            let ppm = parse_percent(pct).ok_or(FaultSpecError::BadNumber)?;
            return Ok(FaultSpec::rate(kind, ppm));
        }
        let (call, times) = match trigger.split_once('x') {
            Some((c, t)) => (c, t.parse().map_err(|_| FaultSpecError::BadNumber)?),
            None => (trigger, 1),
        };
        let call = call.parse().map_err(|_| FaultSpecError::BadNumber)?;
        Ok(FaultSpec::at_times(kind, call, times))
    }
}

/// One injected fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injection {
    /// The call's number (0-based, over all calls through the injector).
    pub call: u64,
    /// Its leaf.
    pub leaf: Leaf,
    /// Its inputs.
    pub inputs: Regs,
    /// The status injected.
    pub status: Status,
}

#[derive(Debug)]
struct InjectorState {
    calls: u64,
    /// Eligible calls still to fail, per `At` spec.
    remaining: Vec<u32>,
    /// Calls so far per `(leaf, RCX)`.
    seen: BTreeMap<(Leaf, u64), u64>,
    injected: Vec<Injection>,
}

/// A [`Seamcall`] wrapper that injects faults: chosen calls, or a seeded fraction, fail with a
/// [`FaultKind`] on the leaves that can return it, without reaching the wrapped backend.
///
/// ```
/// use tdmr::seamcall::{FaultInjector, FaultKind, FaultSpec, Seamcall};
/// use tdmr::tdx::status::{Status, TDX_RND_NO_ENTROPY};
/// use tdmr::tdx::{leaf, Output, Regs};
///
/// /// A backend that always succeeds.
/// struct Ok;
/// impl Seamcall for Ok {
///     fn seamcall(&self, _: leaf::Leaf, regs: &Regs) -> Output {
///         Output::new(Status::SUCCESS, *regs)
///     }
/// }
/// let module = Ok;
/// let faulty = FaultInjector::new(&module, 7).with(FaultSpec::at(FaultKind::RndNoEntropy, 0));
/// assert_eq!(faulty.seamcall(leaf::TDH_SYS_INIT, &Regs::ZERO).status.raw(), TDX_RND_NO_ENTROPY);
/// assert!(faulty.seamcall(leaf::TDH_SYS_INIT, &Regs::ZERO).status.is_success());
/// assert_eq!(faulty.injections().len(), 1);
/// ```
#[derive(Debug)]
pub struct FaultInjector<S> {
    inner: S,
    seed: u64,
    specs: Vec<FaultSpec>,
    state: Lock<InjectorState>,
}

/// SplitMix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl<S: Seamcall> FaultInjector<S> {
    /// Wraps `inner`; rates are drawn from `seed`.
    pub fn new(inner: S, seed: u64) -> Self {
        FaultInjector {
            inner,
            seed,
            specs: Vec::new(),
            state: Lock::new(InjectorState {
                calls: 0,
                remaining: Vec::new(),
                seen: BTreeMap::new(),
                injected: Vec::new(),
            }),
        }
    }

    /// Adds a fault.
    pub fn with(mut self, spec: FaultSpec) -> Self {
        let times = match spec.trigger {
            Trigger::At { times, .. } => times,
            Trigger::Rate { .. } => 0,
        };
        self.state.with(|s| s.remaining.push(times));
        self.specs.push(spec);
        self
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The faults injected so far, in call order.
    pub fn injections(&self) -> Vec<Injection> {
        self.state.with(|s| s.injected.clone())
    }

    /// Calls seen so far, injected or passed on.
    pub fn calls(&self) -> u64 {
        self.state.with(|s| s.calls)
    }

    fn decide(&self, leaf: Leaf, regs: &Regs) -> Option<Status> {
        self.state.with(|s| {
            let call = s.calls;
            s.calls += 1;
            let seen = s.seen.entry((leaf, regs.rcx)).or_insert(0);
            let occurrence = *seen;
            *seen += 1;
            let mut hit = None;
            for (i, spec) in self.specs.iter().enumerate() {
                if spec.leaf.is_some_and(|only| only != leaf) {
                    continue;
                }
                let Some(status) = spec.kind.status(leaf) else {
                    continue;
                };
                let fire = match spec.trigger {
                    Trigger::At { call: from, .. } => {
                        call >= from && s.remaining.get(i).is_some_and(|&r| r > 0)
                    }
                    Trigger::Rate { ppm } => {
                        let h = mix(self.seed
                            ^ mix(i as u64 + 1)
                            ^ mix(leaf.rax() << 32 ^ 0x5EA)
                            ^ mix(regs.rcx.rotate_left(17))
                            ^ mix(occurrence.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
                        h % 1_000_000 < u64::from(ppm)
                    }
                };
                if fire {
                    if let (Trigger::At { .. }, Some(r)) = (spec.trigger, s.remaining.get_mut(i)) {
                        *r -= 1;
                    }
                    hit = Some(status);
                    break;
                }
            }
            if let Some(status) = hit {
                s.injected.push(Injection {
                    call,
                    leaf,
                    inputs: *regs,
                    status,
                });
            }
            hit
        })
    }
}

impl<S: Seamcall> Seamcall for FaultInjector<S> {
    fn seamcall(&self, leaf: Leaf, regs: &Regs) -> Output {
        match self.decide(leaf, regs) {
            Some(status) => Output::new(status, *regs),
            None => self.inner.seamcall(leaf, regs),
        }
    }
}

//! The atomics the gate is built from, behind one name so the loom models can swap them.
//!
//! Normal builds use `core::sync::atomic`; `RUSTFLAGS="--cfg loom"` builds use loom's checked
//! atomics, which explore every interleaving and every value a weak load may return.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

//! The TDX module's contract, as the host sees it: the binary layouts TDH.SYS.CONFIG reads
//! ([`abi`]), the registers of a SEAMCALL ([`Regs`], [`Output`]), leaf numbers ([`leaf`]),
//! status codes ([`status`]), global metadata field ids ([`metadata`]) and the referee
//! [`validate`], which checks a configuration exactly as TDH.SYS.CONFIG does.
//!
//! Nothing here knows how a layout is planned or how a SEAMCALL is issued: this floor is the
//! module's side of the interface, written from its rules.

pub mod abi;
pub mod leaf;
pub mod metadata;
mod regs;
pub mod status;
pub mod validate;

pub use regs::{Output, Regs};

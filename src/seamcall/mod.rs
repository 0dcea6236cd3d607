//! The SEAMCALL interface to the TDX module: status codes and the binary layouts it reads.

pub mod abi;
pub mod status;

pub use status::Status;

//! TDX module bring-up: what the driver needs from the host.

mod cpus;
mod host_memory;

pub use cpus::{Cpu, CpuId, CpuUnavailable, Cpus, PackageId};
pub use host_memory::{HostMemory, HostMemoryError};

//! What the host knows of the TDX module and platform before it plans: the module's
//! memory-configuration limits ([`TdxLimits`], read with TDH.SYS.RD or given by the caller) and
//! the private KeyIDs the BIOS partitioned ([`PrivateKeyIds`]).

mod keyids;
mod limits;

pub use keyids::{KeyIdRangeError, PrivateKeyIds};
pub use limits::{LimitsError, TdxLimits};

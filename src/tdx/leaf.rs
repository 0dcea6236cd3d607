//! SEAMCALL leaves: the leaf number and version a SEAMCALL carries in RAX.
//!
//! RAX bits 15:0 hold the leaf number, bits 23:16 the version; every other bit is reserved and
//! zero, which [`Leaf`] guarantees by construction.

use core::fmt;

/// A SEAMCALL leaf: number and version, encoded into RAX by [`Leaf::rax`].
///
/// ```
/// use tdmr::tdx::leaf::{self, Leaf};
/// assert_eq!(leaf::TDH_SYS_TDMR_INIT.rax(), 36);
/// assert_eq!(Leaf::new(34).with_version(1).rax(), 0x1_0022);
/// assert_eq!(leaf::TDH_SYS_CONFIG.to_string(), "TDH.SYS.CONFIG");
/// assert_eq!(Leaf::new(34).with_version(1).to_string(), "TDH.SYS.RD v1");
/// assert_eq!(Leaf::new(999).to_string(), "SEAMCALL leaf 999");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Leaf {
    number: u16,
    version: u8,
}

impl Leaf {
    /// Leaf `number`, version 0.
    #[inline]
    pub const fn new(number: u16) -> Self {
        Leaf { number, version: 0 }
    }

    /// The same leaf at another version.
    #[inline]
    pub const fn with_version(self, version: u8) -> Self {
        Leaf {
            number: self.number,
            version,
        }
    }

    /// The leaf number (RAX bits 15:0).
    #[inline]
    pub const fn number(self) -> u16 {
        self.number
    }

    /// The version (RAX bits 23:16).
    #[inline]
    pub const fn version(self) -> u8 {
        self.version
    }

    /// The RAX value that selects this leaf.
    #[inline]
    pub const fn rax(self) -> u64 {
        self.number as u64 | (self.version as u64) << 16
    }

    /// The leaf's name in the TDX ABI (`TDH.SYS.CONFIG`), or `None` for a number this crate
    /// does not know.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.number {
            31 => "TDH.SYS.KEY.CONFIG",
            32 => "TDH.SYS.INFO",
            33 => "TDH.SYS.INIT",
            34 => "TDH.SYS.RD",
            35 => "TDH.SYS.LP.INIT",
            36 => "TDH.SYS.TDMR.INIT",
            37 => "TDH.SYS.RDALL",
            44 => "TDH.SYS.LP.SHUTDOWN",
            45 => "TDH.SYS.CONFIG",
            52 => "TDH.SYS.SHUTDOWN",
            53 => "TDH.SYS.UPDATE",
            58 => "TDH.PHYMEM.PAMT.ADD",
            59 => "TDH.PHYMEM.PAMT.REMOVE",
            60 => "TDH.EXT.INIT",
            61 => "TDH.EXT.MEM.ADD",
            69 => "TDH.SYS.DISABLE",
            _ => return None,
        })
    }

    /// Whether this is one of the TDH.SYS.* leaves (which the TDX module accepts at version 0
    /// only, and which the dispatcher lets through before the module is ready).
    pub const fn is_sys(self) -> bool {
        matches!(self.number, 31..=37 | 44 | 45 | 52 | 53 | 69)
    }
}

impl fmt::Display for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n)?,
            None => write!(f, "SEAMCALL leaf {}", self.number)?,
        }
        if self.version != 0 {
            write!(f, " v{}", self.version)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Leaf({self} = {:#x})", self.rax())
    }
}

/// TDH.SYS.KEY.CONFIG (31): program the global private KeyID's key on this package.
pub const TDH_SYS_KEY_CONFIG: Leaf = Leaf::new(31);
/// TDH.SYS.INFO (32): TDSYSINFO_STRUCT and the CMR array into host buffers.
pub const TDH_SYS_INFO: Leaf = Leaf::new(32);
/// TDH.SYS.INIT (33): global initialization, once.
pub const TDH_SYS_INIT: Leaf = Leaf::new(33);
/// TDH.SYS.RD (34): read one global metadata field.
pub const TDH_SYS_RD: Leaf = Leaf::new(34);
/// TDH.SYS.LP.INIT (35): per-LP initialization, once on every LP.
pub const TDH_SYS_LP_INIT: Leaf = Leaf::new(35);
/// TDH.SYS.TDMR.INIT (36): initialize the next chunk of one TDMR's PAMT.
pub const TDH_SYS_TDMR_INIT: Leaf = Leaf::new(36);
/// TDH.SYS.RDALL (37): read global metadata fields into a host page.
pub const TDH_SYS_RDALL: Leaf = Leaf::new(37);
/// TDH.SYS.LP.SHUTDOWN (44): deprecated, returns success.
pub const TDH_SYS_LP_SHUTDOWN: Leaf = Leaf::new(44);
/// TDH.SYS.CONFIG (45): hand the TDMR configuration and the global KeyID to the module.
pub const TDH_SYS_CONFIG: Leaf = Leaf::new(45);
/// TDH.SYS.SHUTDOWN (52): shut the module down for a runtime update.
pub const TDH_SYS_SHUTDOWN: Leaf = Leaf::new(52);
/// TDH.SYS.UPDATE (53): resume after a runtime update.
pub const TDH_SYS_UPDATE: Leaf = Leaf::new(53);
/// TDH.PHYMEM.PAMT.ADD (58): back a 2 MiB range with PAMT_4K pages (Dynamic PAMT).
pub const TDH_PHYMEM_PAMT_ADD: Leaf = Leaf::new(58);
/// TDH.PHYMEM.PAMT.REMOVE (59): take back a 2 MiB range's PAMT_4K pages (Dynamic PAMT).
pub const TDH_PHYMEM_PAMT_REMOVE: Leaf = Leaf::new(59);
/// TDH.EXT.INIT (60): initialize the module extensions once their memory is added
/// (resumable).
pub const TDH_EXT_INIT: Leaf = Leaf::new(60);
/// TDH.EXT.MEM.ADD (61): hand the module extensions pages, up to 512 addresses per call from a
/// 4 KiB list page (resumable).
pub const TDH_EXT_MEM_ADD: Leaf = Leaf::new(61);
/// TDH.SYS.DISABLE (69): disable the module and reclaim TDX memory (kexec, kdump).
pub const TDH_SYS_DISABLE: Leaf = Leaf::new(69);

/// Every leaf named above, in number order.
pub const ALL: [Leaf; 16] = [
    TDH_SYS_KEY_CONFIG,
    TDH_SYS_INFO,
    TDH_SYS_INIT,
    TDH_SYS_RD,
    TDH_SYS_LP_INIT,
    TDH_SYS_TDMR_INIT,
    TDH_SYS_RDALL,
    TDH_SYS_LP_SHUTDOWN,
    TDH_SYS_CONFIG,
    TDH_SYS_SHUTDOWN,
    TDH_SYS_UPDATE,
    TDH_PHYMEM_PAMT_ADD,
    TDH_PHYMEM_PAMT_REMOVE,
    TDH_EXT_INIT,
    TDH_EXT_MEM_ADD,
    TDH_SYS_DISABLE,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_the_abi() {
        let numbers: [u16; 16] = ALL.map(Leaf::number);
        assert_eq!(
            numbers,
            [
                31, 32, 33, 34, 35, 36, 37, 44, 45, 52, 53, 58, 59, 60, 61, 69
            ]
        );
        assert!(ALL.iter().all(|l| l.name().is_some()));
        assert!(!TDH_PHYMEM_PAMT_ADD.is_sys() && TDH_SYS_DISABLE.is_sys());
    }
}

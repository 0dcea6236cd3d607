//! The ACPI System Resource Affinity Table (SRAT), parsed from its bytes as the ACPI
//! specification lays them out (ACPI 6.5, §5.2.16), every length checked before it is read.
//!
//! ```text
//! offset  size  field
//!      0     4  signature "SRAT"
//!      4     4  length of the whole table (header included)
//!      8     1  revision
//!      9     1  checksum: all bytes of the table sum to 0 mod 256
//!     10     6  OEM id
//!     16     8  OEM table id
//!     24     4  OEM revision
//!     28     4  creator id
//!     32     4  creator revision
//!     36     4  reserved (1 for backward compatibility)
//!     40     8  reserved
//!     48     …  structures: type (1 byte), length (1 byte, the whole structure), body
//! ```
//!
//! Structures read: Processor Local APIC/SAPIC Affinity (type 0, 16 bytes: proximity domain
//! bits 7:0 at 2, flags at 4 with bit 0 = enabled, bits 31:8 at 9), Memory Affinity (type 1,
//! 40 bytes: proximity domain at 2, base low/high at 8/12, length low/high at 16/20, flags at 28:
//! bit 0 enabled, bit 1 hot-pluggable, bit 2 non-volatile), Processor Local x2APIC Affinity (type
//! 2, 24 bytes: proximity domain at 4, flags at 12). Every other type is skipped by its length.
//!
//! Node numbers follow Linux's order: a proximity domain gets the next node number the first
//! time an enabled structure names it, processor structures (in table order) before memory
//! structures (in table order), as `acpi_numa_init` parses them.

use alloc::vec::Vec;
use core::fmt;

use crate::addr::PhysRange;
use crate::memmap::NodeId;

/// Bytes before the first structure.
const HEADER: usize = 48;
const TYPE_LOCAL_APIC: u8 = 0;
const TYPE_MEMORY: u8 = 1;
const TYPE_X2APIC: u8 = 2;
const LEN_LOCAL_APIC: usize = 16;
const LEN_MEMORY: usize = 40;
const LEN_X2APIC: usize = 24;

/// One Memory Affinity structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemoryAffinity {
    /// The proximity domain (the firmware's locality number).
    pub proximity_domain: u32,
    /// The node Linux numbers that domain (see [`Srat`]); `None` when the
    /// structure is disabled.
    pub node: Option<NodeId>,
    /// The memory range.
    pub range: PhysRange,
    /// Flag bit 0: the structure is in use (disabled ones are ignored by the OS).
    pub enabled: bool,
    /// Flag bit 1: the memory may be hot-added or hot-removed.
    pub hot_pluggable: bool,
    /// Flag bit 2: non-volatile memory.
    pub non_volatile: bool,
}

/// Why SRAT bytes were refused; every variant names the offending value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SratError {
    /// Fewer bytes than the 48-byte header.
    TooShort {
        /// Bytes given.
        len: usize,
    },
    /// The signature is not `SRAT`.
    Signature {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The header's length field disagrees with the bytes given (shorter than the header, or
    /// longer than the bytes).
    Length {
        /// The header's length field.
        header: u32,
        /// Bytes given.
        given: usize,
    },
    /// The bytes of the table do not sum to 0 mod 256.
    Checksum {
        /// Their sum mod 256.
        sum: u8,
    },
    /// A structure's length is smaller than 2, smaller than its type requires, or runs past
    /// the end of the table.
    Structure {
        /// Offset of the structure in the table.
        offset: usize,
        /// Its type.
        kind: u8,
        /// Its length field.
        length: u8,
    },
    /// A Memory Affinity structure's base + length overflows 64 bits.
    RangeOverflow {
        /// Offset of the structure in the table.
        offset: usize,
        /// Its base.
        base: u64,
        /// Its length.
        length: u64,
    },
}

impl fmt::Display for SratError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SratError::TooShort { len } => {
                write!(f, "SRAT of {len} bytes is shorter than its 48-byte header")
            }
            SratError::Signature { found } => write!(
                f,
                "not an SRAT: signature {:?}",
                core::str::from_utf8(&found).unwrap_or("(not text)")
            ),
            SratError::Length { header, given } => write!(
                f,
                "SRAT length field {header} does not fit the {given} bytes given"
            ),
            SratError::Checksum { sum } => {
                write!(f, "SRAT checksum fails: the bytes sum to {sum:#04x}, not 0")
            }
            SratError::Structure {
                offset,
                kind,
                length,
            } => write!(
                f,
                "SRAT structure at offset {offset} (type {kind}) has a bad length {length}"
            ),
            SratError::RangeOverflow {
                offset,
                base,
                length,
            } => write!(
                f,
                "SRAT memory affinity at offset {offset}: base {base:#x} + length {length:#x} overflows"
            ),
        }
    }
}

impl core::error::Error for SratError {}

/// A parsed SRAT: its Memory Affinity structures with Linux's node numbers.
///
/// ```
/// use tdmr::memmap::firmware::Srat;
///
/// // A table with one enabled Memory Affinity structure: domain 7, [4 GiB, 8 GiB), hot-pluggable.
/// let mut t = vec![0u8; 48 + 40];
/// t[..4].copy_from_slice(b"SRAT");
/// t[4..8].copy_from_slice(&88u32.to_le_bytes());
/// t[8] = 3;
/// t[48] = 1; // type: memory affinity
/// t[49] = 40; // length
/// t[50..54].copy_from_slice(&7u32.to_le_bytes());
/// t[56..64].copy_from_slice(&(4u64 << 30).to_le_bytes());
/// t[64..72].copy_from_slice(&(4u64 << 30).to_le_bytes());
/// t[76..80].copy_from_slice(&0b11u32.to_le_bytes()); // enabled, hot-pluggable
/// let sum = t.iter().fold(0u8, |s, b| s.wrapping_add(*b));
/// t[9] = sum.wrapping_neg();
///
/// let srat = Srat::parse(&t)?;
/// let m = srat.memory()[0];
/// assert_eq!((m.proximity_domain, m.node, m.hot_pluggable), (7, Some(0), true));
/// assert_eq!(m.range.start(), 4 << 30);
/// # Ok::<(), tdmr::memmap::firmware::SratError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Srat {
    revision: u8,
    memory: Vec<MemoryAffinity>,
    nodes: Vec<u32>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

impl Srat {
    /// Parses the table's bytes (exactly the table, as `/sys/firmware/acpi/tables/SRAT` or the
    /// firmware's mapping holds it; trailing bytes beyond the length field are refused).
    /// O(bytes).
    pub fn parse(bytes: &[u8]) -> Result<Srat, SratError> {
        if bytes.len() < HEADER {
            return Err(SratError::TooShort { len: bytes.len() });
        }
        let mut sig = [0u8; 4];
        sig.copy_from_slice(&bytes[..4]);
        if &sig != b"SRAT" {
            return Err(SratError::Signature { found: sig });
        }
        let length = u32_at(bytes, 4);
        if (length as usize) < HEADER || length as usize != bytes.len() {
            return Err(SratError::Length {
                header: length,
                given: bytes.len(),
            });
        }
        let sum = bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b));
        if sum != 0 {
            return Err(SratError::Checksum { sum });
        }

        // Every structure's bounds, checked before anything in it is read.
        let mut structures: Vec<(usize, u8, usize)> = Vec::new();
        let mut at = HEADER;
        while at < bytes.len() {
            let kind = bytes[at];
            let bad = |length: u8| SratError::Structure {
                offset: at,
                kind,
                length,
            };
            let Some(&length) = bytes.get(at + 1) else {
                return Err(bad(0));
            };
            let need = match kind {
                TYPE_LOCAL_APIC => LEN_LOCAL_APIC,
                TYPE_MEMORY => LEN_MEMORY,
                TYPE_X2APIC => LEN_X2APIC,
                _ => 2,
            };
            let len = usize::from(length);
            if len < need || at + len > bytes.len() {
                return Err(bad(length));
            }
            structures.push((at, kind, len));
            at += len;
        }

        let mut nodes: Vec<u32> = Vec::new();
        let mut node_of = |pxm: u32| -> NodeId {
            match nodes.iter().position(|&p| p == pxm) {
                Some(i) => i as NodeId,
                None => {
                    nodes.push(pxm);
                    (nodes.len() - 1) as NodeId
                }
            }
        };
        // Processor structures first, as Linux numbers nodes.
        for &(at, kind, _) in &structures {
            let s = &bytes[at..];
            let (pxm, flags) = match kind {
                TYPE_LOCAL_APIC => {
                    let high = u32::from(s[9]) | u32::from(s[10]) << 8 | u32::from(s[11]) << 16;
                    (u32::from(s[2]) | high << 8, u32_at(s, 4))
                }
                TYPE_X2APIC => (u32_at(s, 4), u32_at(s, 12)),
                _ => continue,
            };
            if flags & 1 != 0 {
                node_of(pxm);
            }
        }
        let mut memory = Vec::new();
        for &(at, kind, _) in &structures {
            if kind != TYPE_MEMORY {
                continue;
            }
            let s = &bytes[at..];
            let pxm = u32_at(s, 2);
            let base = u64::from(u32_at(s, 8)) | u64::from(u32_at(s, 12)) << 32;
            let length = u64::from(u32_at(s, 16)) | u64::from(u32_at(s, 20)) << 32;
            let flags = u32_at(s, 28);
            let range =
                PhysRange::from_base_size(base, length).map_err(|_| SratError::RangeOverflow {
                    offset: at,
                    base,
                    length,
                })?;
            let enabled = flags & 1 != 0;
            memory.push(MemoryAffinity {
                proximity_domain: pxm,
                node: enabled.then(|| node_of(pxm)),
                range,
                enabled,
                hot_pluggable: flags & 2 != 0,
                non_volatile: flags & 4 != 0,
            });
        }
        Ok(Srat {
            revision: bytes[8],
            memory,
            nodes,
        })
    }

    /// The table's revision.
    pub fn revision(&self) -> u8 {
        self.revision
    }

    /// Every Memory Affinity structure, in table order (disabled ones included, with no node).
    pub fn memory(&self) -> &[MemoryAffinity] {
        &self.memory
    }

    /// The proximity domain of each node number, in node order.
    pub fn proximity_domains(&self) -> &[u32] {
        &self.nodes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// A table of these structures, with a correct length and checksum.
    fn table(structures: &[Vec<u8>]) -> Vec<u8> {
        let mut t = vec![0u8; HEADER];
        t[..4].copy_from_slice(b"SRAT");
        t[8] = 3;
        t[36] = 1;
        for s in structures {
            t.extend_from_slice(s);
        }
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        let sum = t.iter().fold(0u8, |s, b| s.wrapping_add(*b));
        t[9] = sum.wrapping_neg();
        t
    }

    fn memory(pxm: u32, base: u64, length: u64, flags: u32) -> Vec<u8> {
        let mut s = vec![0u8; LEN_MEMORY];
        s[0] = TYPE_MEMORY;
        s[1] = LEN_MEMORY as u8;
        s[2..6].copy_from_slice(&pxm.to_le_bytes());
        s[8..12].copy_from_slice(&(base as u32).to_le_bytes());
        s[12..16].copy_from_slice(&((base >> 32) as u32).to_le_bytes());
        s[16..20].copy_from_slice(&(length as u32).to_le_bytes());
        s[20..24].copy_from_slice(&((length >> 32) as u32).to_le_bytes());
        s[28..32].copy_from_slice(&flags.to_le_bytes());
        s
    }

    fn x2apic(pxm: u32, enabled: bool) -> Vec<u8> {
        let mut s = vec![0u8; LEN_X2APIC];
        s[0] = TYPE_X2APIC;
        s[1] = LEN_X2APIC as u8;
        s[4..8].copy_from_slice(&pxm.to_le_bytes());
        s[12] = u8::from(enabled);
        s
    }

    fn lapic(pxm: u32, enabled: bool) -> Vec<u8> {
        let mut s = vec![0u8; LEN_LOCAL_APIC];
        s[0] = TYPE_LOCAL_APIC;
        s[1] = LEN_LOCAL_APIC as u8;
        s[2] = pxm as u8;
        s[4] = u8::from(enabled);
        s[9] = (pxm >> 8) as u8;
        s[10] = (pxm >> 16) as u8;
        s[11] = (pxm >> 24) as u8;
        s
    }

    #[test]
    fn nodes_are_numbered_cpus_first_in_order_of_first_appearance() {
        const G: u64 = 1 << 30;
        let t = table(&[
            memory(9, 0, 2 * G, 1),
            x2apic(5, true),
            lapic(0x0102_0304, true),
            x2apic(7, false), // disabled: numbers nothing
            memory(5, 4 * G, 4 * G, 1),
            memory(0x0102_0304, 8 * G, G, 0b111),
            memory(3, 9 * G, G, 0),    // disabled
            vec![0xEE, 6, 1, 2, 3, 4], // an unknown type, skipped by its length
        ]);
        let s = Srat::parse(&t).unwrap();
        assert_eq!(s.proximity_domains(), [5, 0x0102_0304, 9]);
        let got: Vec<_> = s
            .memory()
            .iter()
            .map(|m| (m.proximity_domain, m.node, m.range.start() / G, m.enabled))
            .collect();
        assert_eq!(
            got,
            [
                (9, Some(2), 0, true),
                (5, Some(0), 4, true),
                (0x0102_0304, Some(1), 8, true),
                (3, None, 9, false),
            ]
        );
        let m = s.memory()[2];
        assert!(m.hot_pluggable && m.non_volatile);
        assert_eq!(s.revision(), 3);
    }

    #[test]
    fn every_malformed_header_is_named() {
        let good = table(&[memory(0, 0, 1 << 30, 1)]);
        assert_eq!(
            Srat::parse(&good[..47]),
            Err(SratError::TooShort { len: 47 })
        );
        let mut sig = good.clone();
        sig[0] = b'X';
        assert_eq!(
            Srat::parse(&sig),
            Err(SratError::Signature { found: *b"XRAT" })
        );
        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            Srat::parse(&long),
            Err(SratError::Length {
                header: good.len() as u32,
                given: good.len() + 1
            })
        );
        let mut sum = good.clone();
        sum[60] ^= 0x10;
        assert_eq!(Srat::parse(&sum), Err(SratError::Checksum { sum: 0x10 }));
    }

    #[test]
    fn structure_lengths_are_checked_before_reading() {
        // Too short for its type, zero, and running past the end.
        for (structure, length) in [
            (memory(0, 0, 1, 1)[..39].to_vec(), 39u8),
            (vec![TYPE_X2APIC, 0], 0),
            (vec![0x30, 9, 0, 0], 9),
        ] {
            let mut s = structure.clone();
            s[1] = length;
            let t = table(&[s]);
            assert_eq!(
                Srat::parse(&t),
                Err(SratError::Structure {
                    offset: HEADER,
                    kind: structure[0],
                    length
                }),
                "{structure:?}"
            );
        }
        // A lone type byte at the end.
        let t = table(&[vec![TYPE_MEMORY]]);
        assert!(matches!(
            Srat::parse(&t),
            Err(SratError::Structure { offset: HEADER, .. })
        ));
        let t = table(&[memory(0, u64::MAX - 5, 10, 1)]);
        assert_eq!(
            Srat::parse(&t),
            Err(SratError::RangeOverflow {
                offset: HEADER,
                base: u64::MAX - 5,
                length: 10
            })
        );
    }
}

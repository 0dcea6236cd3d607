//! Fuzz body of the binary SRAT parser: any bytes are refused with a typed error or parsed into
//! a table whose affinities are consistent. The first input byte chooses between the bytes as
//! they are and the bytes with a repaired header (signature, length, checksum), so that most
//! inputs reach the structure walk.

use tdmr::addr::{PhysRange, RangeSet};
use tdmr::memmap::MapWarning;
use tdmr::memmap::firmware::{FirmwareMapError, Srat, SratError, memory_map};

/// The bytes after the mode byte, as a table with a valid header when `repair` is set.
fn table(data: &[u8], repair: bool) -> Vec<u8> {
    let mut t = data.to_vec();
    if !repair {
        return t;
    }
    if t.len() < 48 {
        t.resize(48, 0);
    }
    t[..4].copy_from_slice(b"SRAT");
    let len = t.len() as u32;
    t[4..8].copy_from_slice(&len.to_le_bytes());
    t[9] = 0;
    let sum = t.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    t[9] = sum.wrapping_neg();
    t
}

/// Runs one input. Panics on any inconsistency.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let t = table(rest, mode & 1 == 1);
    match Srat::parse(&t) {
        Ok(srat) => {
            let domains = srat.proximity_domains();
            // Node numbers are dense, each domain numbered once.
            for (i, d) in domains.iter().enumerate() {
                assert!(!domains[..i].contains(d), "domain {d} numbered twice");
            }
            for m in srat.memory() {
                assert_eq!(m.node.is_some(), m.enabled);
                if let Some(n) = m.node {
                    assert_eq!(domains[n as usize], m.proximity_domain);
                }
                assert!(m.range.start() <= m.range.end());
            }
            // The same bytes parse the same way.
            assert_eq!(Srat::parse(&t), Ok(srat.clone()));
            tdx_memory(&srat);
        }
        Err(e) => {
            // Errors name values that are really in the input.
            let shown = e.to_string();
            assert!(!shown.is_empty());
            if let SratError::Structure { offset, kind, .. } = e {
                assert!(offset >= 48 && offset < t.len());
                assert_eq!(t[offset], kind);
            }
        }
    }
}

/// The table put to use: RAM where its structures say memory is, plus the first 4 GiB. The
/// map stays inside the RAM from 1 MiB up, every byte on the node of the enabled structure
/// that holds it (node 0 where none does); a refusal names a real, enabled structure.
fn tdx_memory(srat: &Srat) {
    let ram = RangeSet::from_ranges(
        srat.memory()
            .iter()
            .map(|m| m.range)
            .chain([PhysRange::new(0, 4 << 30).unwrap()]),
    );
    match memory_map(&ram, Some(srat)) {
        Ok(m) => {
            for r in m.memory().regions() {
                let range = r.range();
                assert!(range.start() >= 1 << 20, "{range} below 1 MiB");
                assert!(
                    ram.iter()
                        .any(|x| x.start() <= range.start() && range.end() <= x.end())
                );
                let numa_off = m
                    .warnings()
                    .iter()
                    .any(|w| matches!(w, MapWarning::NumaOff { .. }));
                let mut holders = srat
                    .memory()
                    .iter()
                    .filter(|a| a.enabled && a.range.intersect(range).is_some());
                match holders.next() {
                    _ if numa_off => assert_eq!(r.node, 0, "{range}: NUMA is off"),
                    None => assert_eq!(r.node, 0, "{range} outside every node"),
                    Some(a) => {
                        // A region never straddles two nodes.
                        assert_eq!(Some(r.node), a.node, "{range}");
                        assert!(holders.all(|b| b.node == a.node), "{range}");
                    }
                }
            }
        }
        Err(FirmwareMapError::SratOverlap { index, range, .. }) => {
            let a = srat.memory()[index];
            assert!(a.enabled && a.range == range);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

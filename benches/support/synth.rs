//! Seeded synthetic memory maps shaped like large servers, for benches and tests.
//!
//! Shape: firmware-fragmented memory below 2 GiB (many small usable ranges, e820-style), then
//! one block per NUMA node from 4 GiB up, each ending 64–96 MiB below a 1 GiB boundary (the
//! non-convertible node-top hole real machines have), split into regions by small
//! firmware-reserved holes (4 KiB–128 KiB) that stay inside the node's CMR, crowded in each node's
//! first GiBs with a few large regions after them. One CMR for low
//! memory and one per node. Cost and memory are O(regions).

#![allow(dead_code)]

use tdmr::memmap::{Cmr, Cmrs, MemoryMap, MemoryRegion};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// TiB of memory in the node blocks.
    pub tib: u64,
    /// Regions in all (at least 2 per node plus the low ones).
    pub regions: usize,
    /// NUMA nodes (at most 31: one CMR each, plus low memory, within the module's 32).
    pub nodes: u32,
    /// Seed.
    pub seed: u64,
}

/// xorshift64*: small, seeded, good enough for layouts.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Splits `[start, end)` into `count` regions separated by small holes at evenly spaced,
/// jittered points (every window of the range gets a similar number).
fn split(rng: &mut Rng, out: &mut Vec<MemoryRegion>, start: u64, end: u64, count: u64, node: u32) {
    let spacing = (end - start) / count.max(1);
    let mut cursor = start;
    for i in 0..count {
        let region_end = if i + 1 == count {
            end
        } else {
            let jitter = rng.below(spacing / 4 / 4096) * 4096;
            ((start + (i + 1) * spacing - jitter) & !4095).max(cursor + 8192)
        };
        let hole = if i + 1 == count {
            0
        } else {
            (1 + rng.below(spacing.min(256 * 1024) / 4096 / 2)) * 4096
        };
        out.push(MemoryRegion::new(cursor, region_end - hole - cursor, node));
        cursor = region_end;
    }
}

/// A synthetic map and its CMRs.
pub fn generate(spec: Spec) -> (MemoryMap, Cmrs) {
    let mut rng = Rng(spec.seed | 1);
    let nodes = u64::from(spec.nodes.clamp(1, 31));
    let low_regions = (spec.regions / 50).clamp(2, 40) as u64;
    let per_node = ((spec.regions as u64).saturating_sub(low_regions) / nodes).max(1);

    let mut regions = Vec::with_capacity(spec.regions + 8);
    let mut cmrs = Vec::with_capacity(32);

    // Low memory: [1 MiB, 1.75 GiB) in `low_regions` usable ranges with firmware holes between.
    let low_end = 1792 * MIB;
    let step = ((low_end - MIB) / low_regions) & !4095;
    let mut cursor = MIB;
    for i in 0..low_regions {
        let end = if i + 1 == low_regions {
            low_end
        } else {
            MIB + (i + 1) * step
        };
        let hole = (1 + rng.below(64)) * 4096;
        let stop = (end - hole).max(cursor + 4096);
        regions.push(MemoryRegion::new(cursor, stop - cursor, 0));
        cursor = end;
    }
    cmrs.push(Cmr::new(MIB, low_end - MIB));

    // Node blocks from 4 GiB, each a whole number of GiB, topped by a non-convertible hole.
    let node_bytes = (spec.tib * 1024 / nodes).max(2) * GIB;
    for n in 0..nodes {
        let start = 4 * GIB + n * node_bytes;
        let top_hole = (64 + rng.below(33)) * MIB;
        let end = start + node_bytes - top_hole;
        cmrs.push(Cmr::new(start, end - start));
        // Most firmware holes crowd the node's first GiBs (a fragmented zone); a few split the
        // rest into large regions, as on real machines, so a node's PAMT still finds room.
        let spread = (per_node / 100).clamp(1, 32);
        let dense = per_node - spread;
        let zone_end = start + (4 * GIB).min((end - start) / 4);
        split(&mut rng, &mut regions, start, zone_end, dense, n as u32);
        split(&mut rng, &mut regions, zone_end, end, spread, n as u32);
    }
    let memory = MemoryMap::new(regions).expect("synthetic map is valid by construction");
    let cmrs = Cmrs::new(cmrs).expect("synthetic CMRs are valid by construction");
    (memory, cmrs)
}

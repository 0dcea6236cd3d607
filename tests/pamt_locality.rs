//! PAMT locality on maps no fixture has: every TDMR's PAMT on the node holding most of its
//! memory wherever such a layout exists, and never more PAMTs off their node than Linux's
//! strategy leaves on the same map.
//!
//! - Many-node maps (seeded generator): 16 to 1024 NUMA nodes of contiguous memory each (equal
//!   or random sizes, node boundaries on or inside a GiB, abutting or with gaps, 256 nodes of
//!   4 GiB among them), fragmented low memory on node 0. The default planner must plan every
//!   one. Where a direct argument shows a local layout exists — TDMRs of consecutive whole
//!   nodes, as many as the limit allows, each PAMT fitting its majority node's memory in a
//!   TDMR with a reserved area to spare — no PAMT may be off its node.
//! - Up to 64 nodes with sparse holes inside the nodes: the same, the argument counting each
//!   hole's reserved area.
//! - Maps of every shape (fragmented low memory, node boundaries inside a GiB, any gaps, CMRs
//!   with slack, tight limits): wherever the Linux strategy plans, the default planner plans
//!   too and leaves no more PAMTs off their node.
//!
//! Off-node is measured here from the memory map and the plan's PAMT blocks, not from what the
//! plan says of itself (which must agree).

use tdmr::addr::{PageSize, PhysRange};
use tdmr::layout::{Plan, Planner, Strategy};
use tdmr::memmap::{Cmr, Cmrs, MemoryMap, MemoryRegion};
use tdmr::pamt::sizes;
use tdmr::sysinfo::TdxLimits;
use tdmr::tdx::validate::{ConfigEnv, covers_memory, sys_config};

const K4: u64 = 1 << 12;
const M: u64 = 1 << 20;
const G: u64 = 1 << 30;

/// xorshift64*, seeded.
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

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

/// A generated machine: memory, CMRs, and each node's block (for the direct argument).
struct Machine {
    memory: MemoryMap,
    cmrs: Cmrs,
    /// Each high node's memory: `[start, end)` and its regions' holes inside (non-convertible).
    nodes: Vec<(u32, u64, u64)>,
    label: String,
}

/// Firmware-fragmented low memory on node 0: `[1 MiB, 1792 MiB)` in `pieces` usable ranges,
/// all inside one CMR (the holes between them are convertible, as on real machines).
fn low_memory(rng: &mut Rng, regions: &mut Vec<MemoryRegion>, cmrs: &mut Vec<Cmr>) {
    let pieces = rng.range(2, 40);
    let end = 1792 * M;
    let step = ((end - M) / pieces) & !(K4 - 1);
    for k in 0..pieces {
        let s = M + k * step;
        let e = if k + 1 == pieces {
            end
        } else {
            s + step - rng.range(1, 64) * K4
        };
        regions.push(MemoryRegion::new(s, e - s, 0));
    }
    cmrs.push(Cmr::new(M, end - M));
}

/// Contiguous memory per node from 4 GiB, one CMR over all of it (gaps between nodes
/// convertible, as one CMR per socket often spans several nodes). `holes`: up to 30
/// non-convertible holes inside nodes, each splitting the CMR (the module reports 32 at most).
fn many_nodes(seed: u64, nodes: u64, holes: bool) -> Machine {
    let mut rng = Rng(seed | 1);
    let mut regions = Vec::new();
    let mut cmrs = Vec::new();
    low_memory(&mut rng, &mut regions, &mut cmrs);
    // Sizes: all equal (whole GiB), random GiB, or random MiB (boundaries inside a GiB).
    let shape = rng.below(3);
    let equal = [1, 2, 4, 8, 16, 64, 256, 768][rng.below(8) as usize] * G;
    let mut cursor = 4 * G;
    let mut blocks = Vec::new();
    let mut cmr_start = 4 * G;
    let mut cuts = 0;
    for n in 0..nodes {
        let size = match shape {
            0 => equal,
            1 => rng.range(1, 32) * G,
            _ => rng.range(600, 24 * 1024) * M,
        };
        let gap = match rng.below(8) {
            0 => rng.range(1, 3) * G,
            1 => rng.range(1, 200) * M,
            _ => 0,
        };
        let start = cursor + gap;
        let end = start + size;
        let mut s = start;
        if holes && size >= 2 * G && cuts < 30 && rng.below(4) == 0 {
            // A small hole somewhere inside the node.
            let at = s + rng.range(64, (end - s) / M - 64) * M;
            regions.push(MemoryRegion::new(s, at - s, n as u32));
            cmrs.push(Cmr::new(cmr_start, at - cmr_start));
            s = at + rng.range(1, 16) * K4;
            cmr_start = s;
            cuts += 1;
        }
        regions.push(MemoryRegion::new(s, end - s, n as u32));
        blocks.push((n as u32, start, end));
        cursor = end;
    }
    cmrs.push(Cmr::new(cmr_start, cursor - cmr_start));
    let memory = MemoryMap::new(regions).expect("valid map");
    let cmrs = Cmrs::new(cmrs).expect("at most 32 sorted CMRs");
    Machine {
        memory,
        cmrs,
        nodes: blocks,
        label: format!("seed {seed}: {nodes} nodes, shape {shape}, holes {holes}"),
    }
}

/// `(TDMR index, PAMT node, majority node)` for every TDMR whose PAMT block lies (in part) on
/// another node than the one holding most of the TDMR's memory (lowest id on a tie).
fn off_node(plan: &Plan, memory: &MemoryMap) -> Vec<(usize, u32, u32)> {
    let mut out = Vec::new();
    for (i, t) in plan.tdmrs().iter().enumerate() {
        let mut per_node: Vec<(u32, u64)> = Vec::new();
        for r in memory.regions() {
            let (s, e) = (r.base.max(t.base()), r.end().min(t.end()));
            if s < e {
                match per_node.iter_mut().find(|x| x.0 == r.node) {
                    Some(x) => x.1 += e - s,
                    None => per_node.push((r.node, e - s)),
                }
            }
        }
        let majority = per_node
            .iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
            .map(|x| x.0)
            .expect("a TDMR holds memory");
        let start = t.pamt(PageSize::Size4K).start();
        let block = PhysRange::new(start, start + t.pamt_bytes()).unwrap();
        let stray = memory
            .regions()
            .iter()
            .filter(|r| r.range().overlaps(block))
            .find(|r| r.node != majority);
        if let Some(r) = stray {
            out.push((i, r.node, majority));
        }
        // What the plan says of itself agrees.
        assert_eq!(t.majority_node(), majority, "TDMR {i}");
        assert_eq!(stray.is_some(), t.off_node_reason().is_some(), "TDMR {i}");
    }
    assert_eq!(plan.off_node_pamts(), out.len());
    out
}

fn assert_valid(plan: &Plan, memory: &MemoryMap, cmrs: &Cmrs, label: &str) {
    let infos = plan.tdmr_infos().unwrap();
    let env = ConfigEnv::from_limits(plan.limits(), cmrs.listed());
    if let Err(s) = sys_config(&infos, &env) {
        panic!("{label}: the module refuses the plan: {s}");
    }
    covers_memory(&infos, memory.regions().iter().map(|r| r.range()), &[])
        .unwrap_or_else(|e| panic!("{label}: {e}"));
}

/// The direct argument: a local layout exists. TDMRs: `[0, 2 GiB)` for low memory, then the
/// nodes in consecutive groups, as many groups as the TDMR limit leaves (nodes split as evenly
/// as their count allows); a group boundary inside a GiB moves up to the GiB. Each group's
/// PAMT must fit its majority node's memory inside the group, with a reserved area to spare
/// there (the group's non-convertible holes counted), and the low TDMR's in node 0's low
/// memory. Returns `false` when the construction fails (no claim either way).
fn local_layout_exists(m: &Machine, limits: &TdxLimits) -> bool {
    let max_tdmrs = limits.max_tdmrs();
    let max_areas = limits.max_reserved_per_tdmr();
    let groups = (max_tdmrs - 1).min(m.nodes.len());
    let per = m.nodes.len().div_ceil(groups);
    let mut tdmrs: Vec<(u64, u64)> = vec![(0, 2 * G)];
    for chunk in m.nodes.chunks(per) {
        let start = chunk[0].1 / G * G;
        let start = start.max(tdmrs.last().unwrap().1);
        let end = chunk[chunk.len() - 1].2.div_ceil(G) * G;
        if end <= start {
            return false;
        }
        tdmrs.push((start, end));
    }
    if tdmrs.len() > max_tdmrs {
        return false;
    }
    for &(a, b) in &tdmrs {
        let tdmr = PhysRange::new(a, b).unwrap();
        // Majority node and its largest contiguous piece inside the TDMR.
        let mut per_node: Vec<(u32, u64, u64)> = Vec::new(); // node, bytes, largest piece
        let mut piece: Option<(u32, u64, u64)> = None; // node, start, end
        let flush = |p: Option<(u32, u64, u64)>, per_node: &mut Vec<(u32, u64, u64)>| {
            if let Some((n, s, e)) = p {
                match per_node.iter_mut().find(|x| x.0 == n) {
                    Some(x) => {
                        x.1 += e - s;
                        x.2 = x.2.max(e - s);
                    }
                    None => per_node.push((n, e - s, e - s)),
                }
            }
        };
        for r in m.memory.regions_in(tdmr) {
            let (s, e) = (r.base.max(a), r.end().min(b));
            piece = match piece {
                Some((n, ps, pe)) if n == r.node && pe == s => Some((n, ps, e)),
                other => {
                    flush(other, &mut per_node);
                    Some((r.node, s, e))
                }
            };
        }
        flush(piece, &mut per_node);
        let Some(&(_, _, largest)) = per_node
            .iter()
            .max_by(|x, y| x.1.cmp(&y.1).then(y.0.cmp(&x.0)))
        else {
            return false;
        };
        let pamt = sizes(b - a, limits).total();
        // Reserved areas for non-convertible holes: the gaps of the TDMR outside the CMRs.
        let mut holes = 0;
        let mut cursor = a;
        for c in m.cmrs.merged() {
            if c.end() <= a || c.start() >= b {
                continue;
            }
            if c.start() > cursor {
                holes += 1;
            }
            cursor = cursor.max(c.end());
        }
        if cursor < b {
            holes += 1;
        }
        if largest < pamt || holes + 1 > max_areas {
            return false;
        }
    }
    true
}

fn plan_and_check_locality(m: &Machine, limits: TdxLimits) -> (bool, usize) {
    let plan = Planner::new()
        .with_limits(limits)
        .plan(&m.memory, &m.cmrs)
        .unwrap_or_else(|e| panic!("{}: no plan: {e}", m.label));
    assert_valid(&plan, &m.memory, &m.cmrs, &m.label);
    let off = off_node(&plan, &m.memory);
    let local = local_layout_exists(m, &limits);
    if local {
        assert!(
            off.is_empty(),
            "{}: a local layout exists, yet PAMTs are off their node: {off:?}",
            m.label
        );
    }
    (local, off.len())
}

#[test]
fn many_node_maps_keep_every_pamt_on_its_node() {
    let mut rng = Rng(0x5eed_0011);
    let (mut maps, mut local) = (0, 0);
    // 16 to 1024 nodes, log-uniform.
    for k in 0..36u64 {
        let nodes = (16f64 * 64f64.powf(rng.below(1000) as f64 / 999.0)) as u64;
        let m = many_nodes(1000 + k, nodes.clamp(16, 1024), false);
        let (l, _) = plan_and_check_locality(&m, TdxLimits::default());
        maps += 1;
        local += usize::from(l);
    }
    eprintln!("{local} of {maps} many-node maps with a local layout by the direct argument");
    assert_eq!(maps, 36);
    assert!(
        local >= 28,
        "the argument held on only {local} of {maps} maps"
    );
}

#[test]
fn the_issues_maps_plan_with_every_pamt_local() {
    // 255 and 256 nodes of 4 GiB (where a single TDMR across the nodes no longer had a node
    // able to hold its PAMT), 1024 of 1 GiB, and 16 of 768 GiB with fragmented low memory.
    for (nodes, size) in [(255u64, 4 * G), (256, 4 * G), (1024, G), (16, 768 * G)] {
        let mut rng = Rng(nodes);
        let mut regions = Vec::new();
        let mut cmrs = Vec::new();
        low_memory(&mut rng, &mut regions, &mut cmrs);
        let mut blocks = Vec::new();
        for n in 0..nodes {
            let start = 4 * G + n * size;
            regions.push(MemoryRegion::new(start, size, n as u32));
            blocks.push((n as u32, start, start + size));
        }
        cmrs.push(Cmr::new(4 * G, nodes * size));
        let m = Machine {
            memory: MemoryMap::new(regions).unwrap(),
            cmrs: Cmrs::new(cmrs).unwrap(),
            nodes: blocks,
            label: format!("{nodes} nodes of {} GiB", size / G),
        };
        let (local, off) = plan_and_check_locality(&m, TdxLimits::default());
        assert!(local, "{}", m.label);
        assert_eq!(off, 0, "{}", m.label);
    }
}

#[test]
fn up_to_64_nodes_with_sparse_holes_keep_every_pamt_on_its_node() {
    let mut rng = Rng(0x64_0de5);
    let (mut maps, mut local) = (0, 0);
    for k in 0..120u64 {
        let nodes = rng.range(2, 64);
        let m = many_nodes(5000 + k, nodes, true);
        let limits = TdxLimits::default().with_max_reserved_per_tdmr(rng.range(4, 16) as u16);
        let (l, _) = plan_and_check_locality(&m, limits);
        maps += 1;
        local += usize::from(l);
    }
    eprintln!("{local} of {maps} maps with up to 64 nodes and holes with a local layout");
    assert!(
        local >= 80,
        "the argument held on only {local} of {maps} maps"
    );
}

/// A map of any shape: fragmented low memory or not, 1 to 32 nodes changing at random region
/// boundaries (inside a GiB or on one), gaps of any size, CMRs equal to the memory or with
/// slack from the gaps; limits down to 1 TDMR and 0 reserved areas.
fn any_shape(seed: u64) -> (MemoryMap, Cmrs, TdxLimits) {
    let mut rng = Rng(seed | 1);
    let mut regions = Vec::new();
    let mut cmrs = Vec::new();
    if rng.below(2) == 0 {
        low_memory(&mut rng, &mut regions, &mut cmrs);
    }
    let nodes = rng.range(1, 32) as u32;
    let mut node = 0u32;
    let mut cursor = 4 * G;
    for _ in 0..rng.range(1, 40) {
        let gap = match rng.below(6) {
            0 => 0,
            1 => rng.range(1, 256) * K4,
            2 => rng.range(1, 700) * M,
            3 => rng.range(1, 4) * G,
            _ => 0,
        };
        let size = match rng.below(4) {
            0 => rng.range(1, 1024) * K4,
            1 => rng.range(1, 4096) * M,
            _ => rng.range(1, 64) * G + rng.below(1024) * M,
        };
        if rng.below(3) == 0 {
            node = (node + 1) % nodes;
        }
        let base = cursor + gap;
        regions.push(MemoryRegion::new(base, size, node));
        cursor = base + size;
    }
    let memory = MemoryMap::new(regions).expect("valid map");
    let cmrs = if rng.below(2) == 0 || cmrs.is_empty() {
        Cmrs::covering(&memory)
    } else {
        // The low CMR as generated, and the high memory as one CMR per run of contiguous
        // memory, grown into the gaps a little.
        let mut list = cmrs;
        for r in memory.regions().iter().filter(|r| r.base >= 4 * G) {
            match list.last_mut() {
                Some(l) if l.base + l.size >= r.base => l.size = r.end() - l.base,
                _ => list.push(Cmr::new(r.base, r.size)),
            }
        }
        Cmrs::new(list).unwrap_or_else(|_| Cmrs::covering(&memory))
    };
    let limits = TdxLimits::default()
        .with_max_tdmrs(rng.range(1, 64) as u16)
        .unwrap()
        .with_max_reserved_per_tdmr(rng.range(0, 16) as u16);
    (memory, cmrs, limits)
}

#[test]
fn never_more_pamts_off_their_node_than_linux() {
    let (mut linux_ok, mut linux_off, mut ours_off) = (0, 0, 0);
    for seed in 0..600u64 {
        let (memory, cmrs, limits) = any_shape(seed);
        let linux = Planner::new()
            .with_strategy(Strategy::Linux)
            .with_limits(limits)
            .plan(&memory, &cmrs);
        let ours = Planner::new().with_limits(limits).plan(&memory, &cmrs);
        let Ok(linux) = linux else {
            continue;
        };
        let ours = ours.unwrap_or_else(|e| panic!("seed {seed}: Linux plans, ours fails: {e}"));
        assert_valid(&ours, &memory, &cmrs, &format!("seed {seed}"));
        let (l, o) = (
            off_node(&linux, &memory).len(),
            off_node(&ours, &memory).len(),
        );
        assert!(
            o <= l,
            "seed {seed}: {o} PAMTs off their node, Linux {l}\n{ours:#?}\n{linux:#?}"
        );
        linux_ok += 1;
        linux_off += l;
        ours_off += o;
    }
    eprintln!(
        "{linux_ok} maps Linux plans: Linux {linux_off} PAMTs off their node, ours {ours_off}"
    );
    assert!(linux_ok >= 150, "Linux planned only {linux_ok} maps");
    assert!(
        linux_off >= 20,
        "Linux left only {linux_off} PAMTs off their node"
    );
}

use std::time::Instant;
use tdmr::layout::{Planner, Strategy};
use tdmr::memmap::{Cmrs, MemoryMap, MemoryRegion};
const G: u64 = 1 << 30;
fn main() {
    for (nodes, size) in [(16u64, 768 * G), (255, 4 * G), (256, 4 * G), (1024, 4 * G), (1024, G)] {
        let mut regions = vec![];
        for k in 0..20u64 { regions.push(MemoryRegion::new((1 << 20) + k * 100 * (1 << 20), 90 << 20, 0)); }
        for n in 0..nodes { regions.push(MemoryRegion::new(4 * G + n * size, size, n as u32)); }
        let m = MemoryMap::new(regions).unwrap();
        let c = Cmrs::covering(&m);
        let t = Instant::now();
        let r = Planner::new().plan(&m, &c);
        let el = t.elapsed();
        match r {
            Ok(p) => println!("{nodes} x {}G: {} TDMRs, off-node {}, {} KB, {:?}", size / G, p.tdmrs().len(), p.off_node_pamts(), p.pamt_bytes()/1024, el),
            Err(e) => println!("{nodes}: ERR {e} {el:?}"),
        }
        let l = Planner::new().with_strategy(Strategy::Linux).plan(&m, &c);
        println!("   linux: {:?}", l.map(|p| (p.tdmrs().len(), p.off_node_pamts())));
    }
}

//! Fuzz body `parse`: any text through the kernel-log parser.
//!
//! The parser must never panic. On failure the error names a line of the input (or 0 for the
//! input as a whole) and formats; on success the memory map and CMRs satisfy their invariants,
//! the TDX lines are well formed (a KeyID range `PrivateKeyIds` takes, a module identity with
//! the fields its form has), and reading the same log over memory from elsewhere
//! (`parse_kernel_log_with_memory`) gives the same TDX lines and CMRs, or the same error when
//! the error was the text's.

use tdmr::addr::{MAX_PA, PhysRange, SZ_1M, SZ_4K, is_aligned};
use tdmr::memmap::firmware::{E820_USABLE, E820Entry, memory_map, ram_from_e820};
use tdmr::memmap::{Cmrs, MAX_CMRS, MemoryMap, ModuleLineForm, ParseErrorKind, TdxLines};
use tdmr::memmap::{MapWarning, parse_kernel_log, parse_kernel_log_with_memory};
use tdmr::sysinfo::PrivateKeyIds;

/// The TDX lines' invariants, and that each fact has a line in the text that could state it.
fn check_tdx_lines(t: &TdxLines, text: &str) {
    if let Some(k) = t.keyids() {
        assert!(text.contains("private KeyID range"));
        assert!(
            PrivateKeyIds::new(k.start, k.end - k.start).is_ok(),
            "{k:?} is no private KeyID range"
        );
    }
    if let Some(m) = t.module() {
        assert!(!m.to_string().is_empty());
        let fields = (
            m.update.is_some(),
            m.internal.is_some(),
            m.build_num.is_some(),
            m.build_date.is_some(),
            m.attributes.is_some(),
            m.vendor_id.is_some(),
        );
        let want = match m.form {
            ModuleLineForm::Version => (true, false, false, false, false, false),
            ModuleLineForm::Attributes => (false, false, true, true, true, true),
            ModuleLineForm::Build => (true, true, true, true, false, false),
        };
        assert_eq!(fields, want, "{m:?}");
        assert!(text.contains("TDX module") || text.contains("odule version: "));
    }
    if t.init().is_some() {
        assert!(text.contains("odule initializ"));
    }
    if t.dynamic_pamt() {
        assert!(
            text.lines()
                .any(|l| !l.trim_start().starts_with('#') && l.contains("Enable Dynamic PAMT"))
        );
    }
    if t.pamt_kb().is_some() {
        assert!(text.contains("allocated for PAMT"));
    }
    if t.extension_kb().is_some() {
        assert!(text.contains("KB consumed for TDX module extensions"));
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let result = parse_kernel_log(&text);
    assert_eq!(
        result,
        parse_kernel_log(&text),
        "parsing is not deterministic"
    );
    // The same text over 2 GiB of memory from firmware tables.
    let firmware = memory_map(
        &ram_from_e820(&[E820Entry::new(SZ_1M, (2 << 30) - SZ_1M, E820_USABLE)]).unwrap(),
        None,
    )
    .unwrap();
    let over = parse_kernel_log_with_memory(&text, firmware.clone());
    match (&result, &over) {
        (Ok(p), Ok(o)) => {
            assert_eq!(p.tdx_lines(), o.tdx_lines());
            assert_eq!(p.cmrs_listed(), o.cmrs_listed());
            if o.cmrs_listed() {
                assert_eq!(p.cmrs(), o.cmrs());
            } else {
                assert_eq!(o.cmrs(), &Cmrs::covering(firmware.memory()));
            }
            assert_eq!(o.memory(), firmware.memory());
            check_tdx_lines(o.tdx_lines(), &text);
        }
        // Errors of the text are errors either way; the memory's may go.
        (Err(e), _)
            if matches!(
                e.kind,
                ParseErrorKind::NoMemory
                    | ParseErrorKind::Memory(_)
                    | ParseErrorKind::SratOverlap { .. }
            ) => {}
        (Err(e), Err(f)) => assert_eq!(e, f),
        (a, b) => panic!("parse_kernel_log {a:?}, over firmware memory {b:?}"),
    }
    let parsed = match result {
        Ok(p) => p,
        Err(e) => {
            assert!(
                e.line <= text.lines().count(),
                "error names line {} of {}",
                e.line,
                text.lines().count()
            );
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let memory = parsed.memory();
    let cmrs = parsed.cmrs();

    // Memory: non-empty, sorted, disjoint, page aligned, from 1 MiB up, below 2^52; abutting
    // regions only at a node boundary (same-node neighbours are merged), unless one of them is
    // an SRAT `hotplug` range (memblock keeps those apart) or RAM in no node.
    let regions = memory.regions();
    assert!(!regions.is_empty());
    let mut total = 0u64;
    for (k, r) in regions.iter().enumerate() {
        assert!(
            r.size > 0 && is_aligned(r.base, SZ_4K) && is_aligned(r.size, SZ_4K),
            "{r:?}"
        );
        assert!(r.base >= SZ_1M, "{r:?} below 1 MiB");
        let end = r.base.checked_add(r.size).expect("region end overflows");
        assert!(end <= MAX_PA, "{r:?} beyond 2^52");
        if k > 0 {
            let prev = &regions[k - 1];
            assert!(prev.end() <= r.base, "{prev:?} and {r:?} out of order");
            let kept_apart = text.contains("hotplug")
                || parsed
                    .warnings()
                    .iter()
                    .any(|w| matches!(w, MapWarning::RamWithoutNode { .. }));
            assert!(
                prev.end() < r.base || prev.node != r.node || kept_apart,
                "{prev:?} and {r:?} abut on one node"
            );
        }
        total += r.size;
    }
    assert_eq!(memory.total_bytes(), total);
    assert_eq!(MemoryMap::new(regions.to_vec()).as_ref(), Ok(memory));
    if !text.contains("SRAT: Node ")
        || parsed
            .warnings()
            .iter()
            .any(|w| matches!(w, MapWarning::NumaOff { .. }))
    {
        assert!(
            regions.iter().all(|r| r.node == 0),
            "a node without SRAT, or with NUMA off"
        );
    }

    // CMRs: valid as the module reports them, merged view consistent with the list.
    let listed = cmrs.listed();
    for (k, c) in listed.iter().enumerate() {
        assert!(
            c.size > 0 && is_aligned(c.base, SZ_4K) && is_aligned(c.size, SZ_4K),
            "{c:?}"
        );
        assert!(
            c.base.checked_add(c.size).is_some_and(|e| e <= MAX_PA),
            "{c:?}"
        );
        if k > 0 {
            assert!(
                listed[k - 1].base + listed[k - 1].size <= c.base,
                "CMRs out of order"
            );
        }
    }
    let merged = cmrs.merged();
    for w in merged.windows(2) {
        assert!(
            w[0].end() < w[1].start(),
            "merged CMRs {} and {} touch",
            w[0],
            w[1]
        );
    }
    assert_eq!(
        cmrs.total_bytes(),
        listed.iter().map(|c| c.size).sum::<u64>()
    );
    for m in merged {
        assert!(cmrs.contains(*m));
    }
    for c in listed {
        assert!(cmrs.contains(PhysRange::new(c.base, c.base + c.size).unwrap()));
    }

    if parsed.cmrs_listed() {
        assert!(listed.len() <= MAX_CMRS);
        assert_eq!(Cmrs::new(listed.to_vec()).as_ref(), Ok(cmrs));
        // Without RAM lines the memory is made of the CMRs.
        if !text.contains("BIOS-e820:") && !text.contains(" : System RAM") {
            assert_eq!(memory.check_within(cmrs), Ok(()));
        }
    } else {
        assert_eq!(cmrs, &Cmrs::covering(memory));
        assert_eq!(memory.check_within(cmrs), Ok(()));
    }
}

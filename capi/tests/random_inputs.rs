//! Random inputs over the whole space at the boundary: region and CMR arrays of any values,
//! options with any selector values, gate calls with any ranges, CPUs and packages. Every
//! call returns one of the documented codes, fills `tdmr_error` to match, and never reports
//! `TDMR_ERR_INTERNAL` (which, in this `std` build, is what a caught panic would be).

use std::ptr::{null, null_mut};

use proptest::prelude::*;
use tdmr_capi::error::*;
use tdmr_capi::gate::*;
use tdmr_capi::memory::*;
use tdmr_capi::plan::*;
use tdmr_capi::validate::*;

fn empty_err() -> tdmr_error {
    // SAFETY: tdmr_error is plain integers; all zeroes is a valid value.
    unsafe { std::mem::zeroed() }
}

/// The code is documented, matches `err`, and is not a caught panic.
fn sane(code: tdmr_code, err: &tdmr_error) {
    assert_ne!(code, TDMR_ERR_INTERNAL, "a panic at the boundary");
    assert_eq!(err.code, code as i32);
    let msg = err.message.iter().position(|&c| c == 0);
    assert!(msg.is_some(), "message not NUL-terminated");
    assert_eq!(msg == Some(0), code == TDMR_OK, "message iff failure");
}

/// Addresses near the interesting edges: 0, page and GiB multiples, 2^52, u64::MAX.
fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        (0u64..(1 << 20)).prop_map(|x| x << 12),
        (0u64..64).prop_map(|x| x << 30),
        (0u64..4096).prop_map(|x| (1u64 << 52) - (x << 12)),
        any::<u64>(),
        (0u64..4096).prop_map(|x| u64::MAX - x),
    ]
}

fn region() -> impl Strategy<Value = tdmr_region> {
    (addr(), addr(), 0u32..4).prop_map(|(base, size, node)| tdmr_region {
        base,
        size: size % (1 << 40),
        node,
    })
}

/// Regions sorted and disjoint by construction (so most maps plan), each a whole number of
/// pages, on up to 4 nodes.
fn valid_regions() -> impl Strategy<Value = Vec<tdmr_region>> {
    prop::collection::vec((0u64..(1 << 22), 1u64..(1 << 22), 0u32..4), 1..12).prop_map(|v| {
        let mut at = 1u64 << 20;
        v.into_iter()
            .map(|(gap, size, node)| {
                let base = at + (gap << 12);
                at = base + (size << 12);
                tdmr_region {
                    base,
                    size: size << 12,
                    node,
                }
            })
            .collect()
    })
}

#[derive(Clone, Debug)]
struct Case {
    regions: Vec<tdmr_region>,
    sort: bool,
    cmr_count: usize,
    strategy: u32,
    holes: u32,
    exclusions: u32,
    max_tdmrs: u16,
    max_reserved: u16,
    dpamt: u16,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![3 => valid_regions(), 1 => prop::collection::vec(region(), 0..12)],
        any::<bool>(),
        0usize..40,
        prop_oneof![Just(0u32), Just(1), 0u32..3],
        prop_oneof![Just(0u32), 0u32..4],
        prop_oneof![Just(0u32), 0u32..3],
        prop_oneof![Just(64u16), 0u16..6],
        prop_oneof![Just(16u16), 0u16..20],
        prop_oneof![Just(0u16), Just(0), Just(1), any::<u16>()],
    )
        .prop_map(
            |(
                regions,
                sort,
                cmr_count,
                strategy,
                holes,
                exclusions,
                max_tdmrs,
                max_reserved,
                dpamt,
            )| Case {
                regions,
                sort,
                cmr_count,
                strategy,
                holes,
                exclusions,
                max_tdmrs,
                max_reserved,
                dpamt,
            },
        )
}

/// How far one case got: 0 refused map, 1 refused plan, 2 planned and validated.
fn run_case(c: Case) -> Result<usize, TestCaseError> {
    let Case {
        mut regions,
        sort,
        cmr_count,
        strategy,
        holes,
        exclusions,
        max_tdmrs,
        max_reserved,
        dpamt,
    } = c;
    if sort {
        regions.sort_by_key(|r| r.base);
    }
    // CMRs: none (the memory stands in), exactly the regions, or garbage cycled from them.
    let cmrs: Vec<tdmr_cmr> = match cmr_count % 3 {
        0 => Vec::new(),
        1 => regions
            .iter()
            .map(|r| tdmr_cmr {
                base: r.base,
                size: r.size,
            })
            .collect(),
        _ => regions
            .iter()
            .cycle()
            .take(cmr_count.min(regions.len() * 3))
            .map(|r| tdmr_cmr {
                base: r.base,
                size: r.size,
            })
            .collect(),
    };
    let mut err = empty_err();
    let mut mem = null_mut();
    // SAFETY: arrays of the given lengths, valid out-pointers.
    let code = unsafe {
        tdmr_memory_new(
            regions.as_ptr(),
            regions.len(),
            cmrs.as_ptr(),
            cmrs.len(),
            &mut mem,
            &mut err,
        )
    };
    sane(code, &err);
    prop_assert_eq!(code == TDMR_OK, !mem.is_null());
    if mem.is_null() {
        return Ok(0);
    }
    // SAFETY: integers, a nullable function pointer and a raw pointer: all zeroes is valid.
    let mut o = unsafe { std::mem::zeroed::<tdmr_plan_options>() };
    // SAFETY: valid out-pointer.
    sane(unsafe { tdmr_plan_options_default(&mut o, &mut err) }, &err);
    o.strategy = strategy;
    o.holes = holes;
    o.allow_exclusions = exclusions;
    o.limits.max_tdmrs = max_tdmrs;
    o.limits.max_reserved_per_tdmr = max_reserved;
    o.limits.dynamic_pamt_bits = dpamt;
    let mut plan = null_mut();
    // SAFETY: a live memory handle, valid options and out-pointer.
    let code = unsafe { tdmr_plan_new(mem, &o, &mut plan, &mut err) };
    sane(code, &err);
    let planned = code == TDMR_OK;
    if code == TDMR_OK {
        let mut n = 0;
        // SAFETY: a live plan; size query.
        sane(
            unsafe { tdmr_plan_tdmr_infos(plan, null_mut(), 0, &mut n, &mut err) },
            &err,
        );
        let mut infos = vec![[0u8; 512]; n + 1];
        let aligned = infos.as_mut_ptr().cast::<u8>();
        let off = aligned.align_offset(512);
        // A Vec of [u8; 512] is not 512-aligned; use an aligned slot within it when one
        // exists, else expect the misalignment refusal.
        // SAFETY: `off < 512` bytes into a buffer of (n + 1) * 512 bytes.
        let buf = unsafe { aligned.add(off) }.cast::<tdmr_tdmr_info>();
        // SAFETY: `buf` has room for n entries after the offset.
        let code = unsafe { tdmr_plan_tdmr_infos(plan, buf, n, &mut n, &mut err) };
        sane(code, &err);
        prop_assert_eq!(code, TDMR_OK);
        let mut status = 0;
        // The CMRs the map was checked against (the memory itself when none were given).
        let mut k = 0;
        // SAFETY: a live memory handle; size query, then a buffer of that many.
        sane(
            unsafe { tdmr_memory_cmrs(mem, null_mut(), 0, &mut k, &mut err) },
            &err,
        );
        let mut listed = vec![tdmr_cmr { base: 0, size: 0 }; k];
        // SAFETY: as above.
        sane(
            unsafe { tdmr_memory_cmrs(mem, listed.as_mut_ptr(), k, &mut k, &mut err) },
            &err,
        );
        // SAFETY: plain integers: all zeroes is valid.
        let mut vo = unsafe { std::mem::zeroed::<tdmr_validate_options>() };
        // SAFETY: valid out-pointer.
        sane(
            unsafe { tdmr_validate_options_default(&mut vo, &mut err) },
            &err,
        );
        vo.limits = o.limits;
        {
            // SAFETY: arrays of the given lengths.
            let code = unsafe {
                tdmr_validate(
                    buf,
                    n,
                    listed.as_ptr(),
                    listed.len(),
                    &vo,
                    &mut status,
                    &mut err,
                )
            };
            sane(code, &err);
            // What the planner made, the module accepts.
            prop_assert_eq!(code, TDMR_OK, "{:#x}", status);
        }
    }
    // SAFETY: live handles, freed once.
    unsafe {
        tdmr_plan_free(plan);
        tdmr_memory_free(mem);
    }
    Ok(if planned { 2 } else { 1 })
}

#[test]
fn memory_and_plans_answer_with_codes() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    });
    let reached = std::cell::RefCell::new([0usize; 3]);
    runner
        .run(&case(), |c| {
            let r = run_case(c)?;
            reached.borrow_mut()[r] += 1;
            Ok(())
        })
        .unwrap();
    let [refused_map, refused_plan, planned] = *reached.borrow();
    // Count what was checked: each stage was reached often enough to mean something.
    assert!(
        refused_map >= 40 && refused_plan >= 20 && planned >= 60,
        "{refused_map} {refused_plan} {planned}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn gate_calls_answer_with_codes(
        cpus in 0u32..6,
        packages in 0u32..6,
        ops in prop::collection::vec((0u8..8, addr(), addr(), 0u32..8, 0u32..8), 1..60),
    ) {
        let cmrs = [tdmr_cmr { base: 1 << 20, size: 4 << 30 }, tdmr_cmr { base: 8 << 30, size: 8 << 30 }];
        let regions = [tdmr_region { base: 1 << 20, size: 4 << 30, node: 0 }, tdmr_region { base: 8 << 30, size: 8 << 30, node: 1 }];
        let (mut mem, mut plan, mut gate) = (null_mut(), null_mut(), null_mut());
        let mut err = empty_err();
        // SAFETY: valid arrays and out-pointers.
        unsafe {
            prop_assert_eq!(tdmr_memory_new(regions.as_ptr(), 2, cmrs.as_ptr(), 2, &mut mem, &mut err), TDMR_OK);
            prop_assert_eq!(tdmr_plan_new(mem, null(), &mut plan, &mut err), TDMR_OK);
        }
        // SAFETY: as above.
        let code = unsafe { tdmr_gate_new(cmrs.as_ptr(), 2, cpus, packages, null(), &mut gate, &mut err) };
        sane(code, &err);
        if code != TDMR_OK {
            prop_assert_eq!(code, TDMR_ERR_GATE_CONFIG);
            // SAFETY: live handles.
            unsafe { tdmr_plan_free(plan); tdmr_memory_free(mem); }
            return Ok(());
        }
        let mut admissions = Vec::new();
        let mut onlines = Vec::new();
        let mut ticket: *mut tdmr_init_ticket = null_mut();
        for (op, a, b, cpu, pkg) in ops {
            // SAFETY: a live gate; tokens are ended once, below or at the end.
            let code = unsafe {
                match op {
                    0 | 1 => {
                        let mut adm = null_mut();
                        let c = tdmr_gate_admit_memory(gate, a, b % (1 << 34), &mut adm, &mut err);
                        if !adm.is_null() { admissions.push(adm); }
                        c
                    }
                    2 => {
                        let mut on = null_mut();
                        let c = tdmr_gate_cpu_online(gate, cpu, pkg, &mut on, null_mut(), &mut err);
                        if !on.is_null() { onlines.push(on); }
                        c
                    }
                    3 => tdmr_gate_cpu_offline(gate, cpu, pkg, &mut err),
                    4 => {
                        if ticket.is_null() {
                            tdmr_gate_begin_init(gate, &mut ticket, &mut err)
                        } else {
                            let t = std::mem::replace(&mut ticket, null_mut());
                            if a % 2 == 0 { tdmr_init_ticket_publish(t, plan, null_mut(), &mut err) } else { tdmr_init_ticket_fail(t); TDMR_OK }
                        }
                    }
                    5 => tdmr_gate_acquire_guest_keyid(gate, &mut err),
                    6 => tdmr_gate_release_guest_keyid(gate, &mut err),
                    _ => {
                        for adm in admissions.drain(..) { prop_assert_eq!(tdmr_memory_admission_finish(adm), TDMR_OK); }
                        if let Some(on) = onlines.pop() { prop_assert_eq!(tdmr_cpu_online_finish(on), TDMR_OK); }
                        let mut info = std::mem::zeroed::<tdmr_gate_info>();
                        tdmr_gate_get_info(gate, &mut info, &mut err)
                    }
                }
            };
            if op != 4 || !ticket.is_null() || code != TDMR_OK {
                sane(code, &err);
            }
        }
        // SAFETY: every token once; then the handles.
        unsafe {
            for adm in admissions { prop_assert_eq!(tdmr_memory_admission_finish(adm), TDMR_OK); }
            for on in onlines { prop_assert_eq!(tdmr_cpu_online_abandon(on), TDMR_OK); }
            if !ticket.is_null() { prop_assert_eq!(tdmr_init_ticket_fail(ticket), TDMR_OK); }
            let mut info = std::mem::zeroed::<tdmr_gate_info>();
            prop_assert_eq!(tdmr_gate_get_info(gate, &mut info, &mut err), TDMR_OK);
            prop_assert_eq!(info.in_flight, 0, "every token ended");
            tdmr_gate_free(gate);
            tdmr_plan_free(plan);
            tdmr_memory_free(mem);
        }
    }
}

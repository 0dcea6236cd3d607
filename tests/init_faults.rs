//! Every fault the TDX module can return transiently, injected into a bring-up: recovered by
//! retrying while the budget lasts (one extra call per injected fault), and reported with its
//! raw status, leaf and CPU once it runs out. Non-transient failures are reported at once.

use tdmr::init::{Bringup, InitError, InitErrorKind, Initialized, RetryPolicy, Stage};
use tdmr::memmap::ParsedLog;
use tdmr::memmap::parse_kernel_log;
use tdmr::mock::{MockModule, Platform, SysState};
use tdmr::seamcall::SeamcallCounts;
use tdmr::seamcall::{FaultInjector, FaultKind, FaultSpec};
use tdmr::sysinfo::PrivateKeyIds;
use tdmr::tdx::leaf::{self, Leaf};
use tdmr::tdx::status::{
    TDX_KEY_GENERATION_FAILED, TDX_OPERAND_BUSY, TDX_OPERAND_INVALID, TDX_RND_NO_ENTROPY,
    TDX_SYS_BUSY, operand,
};

/// 2 GiB + 8 GiB of TDMRs: 2560 TDH.SYS.TDMR.INIT calls.
const LOG: &str =
    "virt/tdx: CMR: [0x100000, 0x7f000000)\nvirt/tdx: CMR: [0x100000000, 0x300000000)\n";
const LPS: u32 = 4;
const PACKAGES: u32 = 2;

fn input() -> ParsedLog {
    parse_kernel_log(LOG).unwrap()
}

fn module() -> MockModule {
    let p = Platform::new(input().cmrs().listed())
        .unwrap()
        .with_topology(LPS, PACKAGES)
        .unwrap();
    MockModule::new(p)
}

const KEYIDS: PrivateKeyIds = PrivateKeyIds::DEFAULT;

fn run(faults: &[FaultSpec]) -> (MockModule, Result<Initialized, InitError>, usize) {
    let m = module();
    let injected;
    let r = {
        let mut f = FaultInjector::new(&m, 0xC0FFEE);
        for s in faults {
            f = f.with(*s);
        }
        let r = Bringup::new(&f, &m, &m, KEYIDS).run(input().memory());
        injected = f.injections().len();
        r
    };
    (m, r, injected)
}

fn clean() -> SeamcallCounts {
    run(&[]).1.unwrap().seamcalls
}

/// The index of the first call of `l` in a fault-free bring-up.
fn first_call_of(l: Leaf) -> u64 {
    let order = [
        leaf::TDH_SYS_INIT,
        leaf::TDH_SYS_LP_INIT,
        leaf::TDH_SYS_RD,
        leaf::TDH_SYS_CONFIG,
        leaf::TDH_SYS_KEY_CONFIG,
        leaf::TDH_SYS_TDMR_INIT,
    ];
    let c = clean();
    order
        .iter()
        .take_while(|&&x| x != l)
        .map(|&x| c.get(x))
        .sum()
}

/// A recovered bring-up made exactly one more call of `l` per injected fault.
fn assert_recovered(faults: &[FaultSpec], l: Leaf, extra: u64) {
    let base = clean();
    let (m, r, injected) = run(faults);
    let done = r.unwrap_or_else(|e| panic!("{faults:?}: {e}"));
    assert_eq!(injected as u64, extra);
    assert_eq!(m.state(), SysState::SysReady);
    assert!(m.tdmrs().iter().all(|t| t.is_done()));
    for (x, n) in base.iter() {
        let want = if x == l { n + extra } else { n };
        assert_eq!(done.seamcalls.get(x), want, "{x} with {faults:?}");
    }
}

fn seamcall_error(e: &InitError) -> &tdmr::init::SeamcallError {
    match &e.kind {
        InitErrorKind::Seamcall(s) => s,
        other => panic!("expected a SEAMCALL error, got {other}"),
    }
}

#[test]
fn rnd_no_entropy_is_retried_up_to_10_attempts() {
    assert_recovered(
        &[FaultSpec::at_times(FaultKind::RndNoEntropy, 0, 9)],
        leaf::TDH_SYS_INIT,
        9,
    );
    // LP.INIT draws random numbers too.
    assert_recovered(
        &[FaultSpec::at(
            FaultKind::RndNoEntropy,
            first_call_of(leaf::TDH_SYS_LP_INIT) + 2,
        )],
        leaf::TDH_SYS_LP_INIT,
        1,
    );
    let (m, r, _) = run(&[FaultSpec::at_times(FaultKind::RndNoEntropy, 0, 10)]);
    let e = r.unwrap_err();
    assert_eq!(e.stage, Stage::SysInit);
    let s = seamcall_error(&e);
    assert_eq!(s.status.raw(), TDX_RND_NO_ENTROPY);
    assert_eq!(
        (s.leaf, s.cpu, s.attempts),
        (leaf::TDH_SYS_INIT, Some(0), 10)
    );
    assert_eq!(e.seamcalls.get(leaf::TDH_SYS_INIT), 10);
    assert_eq!(e.teardown, None);
    assert_eq!(m.state(), SysState::SysinitPending);
}

#[test]
fn sys_busy_is_retried_with_backoff() {
    assert_recovered(
        &[FaultSpec::at(FaultKind::SysBusy, 0)],
        leaf::TDH_SYS_INIT,
        1,
    );
    let config = first_call_of(leaf::TDH_SYS_CONFIG);
    assert_recovered(
        &[FaultSpec::at_times(FaultKind::SysBusy, config, 5)],
        leaf::TDH_SYS_CONFIG,
        5,
    );
    // Out of attempts on CONFIG: the module is still SYSINIT_DONE; PAMTs only need freeing.
    let (m, r, _) = run(&[FaultSpec::at_times(FaultKind::SysBusy, config, 64)]);
    let e = r.unwrap_err();
    assert_eq!(e.stage, Stage::Config);
    let s = seamcall_error(&e);
    assert_eq!((s.status.raw(), s.attempts), (TDX_SYS_BUSY, 64));
    assert_eq!(s.inputs.rdx, 2);
    assert_eq!(s.inputs.r8, 32);
    let t = e.teardown.unwrap();
    assert!(!t.reset_required);
    assert!(!t.pamt.is_empty());
    assert_eq!(m.state(), SysState::SysinitDone);
}

#[test]
fn operand_busy_on_key_config_and_tdmr_init_is_retried() {
    let key = first_call_of(leaf::TDH_SYS_KEY_CONFIG);
    assert_recovered(
        &[FaultSpec::at(FaultKind::OperandBusy, key)],
        leaf::TDH_SYS_KEY_CONFIG,
        1,
    );
    let tdmr = first_call_of(leaf::TDH_SYS_TDMR_INIT);
    assert_recovered(
        &[FaultSpec::at_times(FaultKind::OperandBusy, tdmr + 300, 3)],
        leaf::TDH_SYS_TDMR_INIT,
        3,
    );
    // 1 % of TDMR.INIT calls busy, seeded: recovered whatever the interleaving.
    let rate = [FaultSpec::rate(FaultKind::OperandBusy, 10_000).on_leaf(leaf::TDH_SYS_TDMR_INIT)];
    let (_, r, injected) = run(&rate);
    let done = r.unwrap();
    assert!(injected > 0);
    assert_eq!(
        done.seamcalls.get(leaf::TDH_SYS_TDMR_INIT),
        2560 + injected as u64
    );
}

#[test]
fn operand_busy_forever_on_tdmr_init_is_reported_with_teardown() {
    let always =
        [FaultSpec::rate(FaultKind::OperandBusy, 1_000_000).on_leaf(leaf::TDH_SYS_TDMR_INIT)];
    let (m, r, _) = run(&always);
    let e = r.unwrap_err();
    assert_eq!(e.stage, Stage::TdmrInit);
    let s = seamcall_error(&e);
    assert_eq!(s.status.raw(), TDX_OPERAND_BUSY | operand::RCX as u64);
    // The lowest-numbered TDMR's failure is the one reported.
    assert_eq!((s.inputs.rcx, s.attempts), (0, 64));
    // Both TDMRs were attempted to the end of their budget.
    assert_eq!(e.seamcalls.get(leaf::TDH_SYS_TDMR_INIT), 2 * 64);
    let t = e.teardown.unwrap();
    assert!(t.reset_required, "CONFIG succeeded: PAMTs must be reset");
    assert_eq!(m.state(), SysState::SysReady);
}

#[test]
fn key_generation_failed_is_retried_then_reported() {
    let key = first_call_of(leaf::TDH_SYS_KEY_CONFIG);
    assert_recovered(
        &[FaultSpec::at_times(FaultKind::KeyGenerationFailed, key, 2)],
        leaf::TDH_SYS_KEY_CONFIG,
        2,
    );
    let (m, r, _) = run(&[FaultSpec::at_times(FaultKind::KeyGenerationFailed, key, 10)]);
    let e = r.unwrap_err();
    assert_eq!(e.stage, Stage::KeyConfig);
    let s = seamcall_error(&e);
    assert_eq!(
        (s.status.raw(), s.attempts),
        (TDX_KEY_GENERATION_FAILED, 10)
    );
    assert_eq!(s.cpu, Some(0));
    let t = e.teardown.unwrap();
    assert!(t.reset_required);
    assert_eq!(m.state(), SysState::SysconfigDone);
    assert!(m.packages_configured().is_empty());
}

#[test]
fn retry_budget_is_the_policy() {
    let m = module();
    let f = FaultInjector::new(&m, 1).with(FaultSpec::at_times(FaultKind::SysBusy, 0, 3));
    let policy = RetryPolicy {
        busy_attempts: 3,
        ..RetryPolicy::default()
    };
    let e = Bringup::new(&f, &m, &m, KEYIDS)
        .with_retry(policy)
        .run(input().memory())
        .unwrap_err();
    assert_eq!(seamcall_error(&e).attempts, 3);
}

#[test]
fn non_transient_failure_is_reported_at_once() {
    // KeyIDs the BIOS did not give TDX: TDH.SYS.CONFIG refuses R8.
    let m = module();
    let e = Bringup::new(&m, &m, &m, PrivateKeyIds::new(5, 8).unwrap())
        .run(input().memory())
        .unwrap_err();
    assert_eq!(e.stage, Stage::Config);
    let s = seamcall_error(&e);
    assert_eq!(s.status.raw(), TDX_OPERAND_INVALID | operand::R8 as u64);
    assert_eq!(
        (s.leaf, s.attempts, s.inputs.r8),
        (leaf::TDH_SYS_CONFIG, 1, 5)
    );
    assert!(!e.teardown.unwrap().reset_required);
    // Too few KeyIDs never reach the module.
    let m = module();
    let e = Bringup::new(&m, &m, &m, PrivateKeyIds::new(32, 1).unwrap())
        .run(input().memory())
        .unwrap_err();
    assert_eq!(
        (e.stage, e.kind),
        (Stage::Inputs, InitErrorKind::TooFewKeyIds { count: 1 })
    );
    assert_eq!(e.seamcalls.total(), 0);
}

/// The planner carves PAMT out of TDX memory; a host that cannot give up part of it stops the
/// bring-up before TDH.SYS.CONFIG, with every claim given back and the range named.
#[test]
fn pamt_the_host_cannot_give_up_stops_before_config() {
    // Two nodes, planned as Linux does, so the PAMTs land in two places (each TDMR's at the top
    // of its node's memory).
    let input = parse_kernel_log(
        "BIOS-e820: [mem 0x0000000000100000-0x000000007fffffff] usable\n\
         BIOS-e820: [mem 0x0000000100000000-0x00000003ffffffff] usable\n\
         ACPI: SRAT: Node 0 PXM 0 [mem 0x00000000-0x1ffffffff]\n\
         ACPI: SRAT: Node 1 PXM 1 [mem 0x200000000-0x3ffffffff]\n",
    )
    .unwrap();
    let planner = tdmr::layout::Planner::new().with_strategy(tdmr::layout::Strategy::Linux);
    let plan = planner.plan(input.memory(), input.cmrs()).unwrap();
    let pamt = plan.pamt_ranges();
    assert!(
        pamt.len() >= 2,
        "the fixture needs two PAMT ranges: {pamt:?}"
    );
    // Pin one page of the last range: the first ranges are claimed, then this one fails.
    let last = pamt.as_slice()[pamt.len() - 1];
    let pinned = tdmr::addr::PhysRange::from_base_size(last.start(), 0x1000).unwrap();
    let p = Platform::new(input.cmrs().listed())
        .unwrap()
        .with_topology(LPS, PACKAGES)
        .unwrap()
        .with_pinned(pinned);
    let m = MockModule::new(p);
    let e = Bringup::new(&m, &m, &m, KEYIDS)
        .with_planner(planner)
        .run(input.memory())
        .unwrap_err();
    assert_eq!(e.stage, Stage::PamtClaim);
    assert_eq!(
        e.kind,
        InitErrorKind::HostMemory(tdmr::init::HostMemoryError::PamtUnavailable { range: last })
    );
    assert!(e.to_string().contains(&last.to_string()), "{e}");
    assert_eq!(e.teardown, None, "nothing is left to undo");
    assert!(m.claimed_pamt().is_empty(), "claims were given back");
    assert_eq!(m.state(), SysState::SysinitDone);
    assert_eq!(e.seamcalls.get(leaf::TDH_SYS_CONFIG), 0);

    // Without the pin the same plan is claimed in full, and released by no one: the module
    // owns it now.
    let p = Platform::new(input.cmrs().listed())
        .unwrap()
        .with_topology(LPS, PACKAGES)
        .unwrap();
    let m = MockModule::new(p);
    let done = Bringup::new(&m, &m, &m, KEYIDS)
        .with_planner(planner)
        .run(input.memory())
        .unwrap();
    assert_eq!(done.plan.pamt_origin(), tdmr::layout::PamtOrigin::Carved);
    assert_eq!(m.claimed_pamt(), pamt);
}

/// PAMT from the caller's allocator is the allocator's promise: nothing is claimed.
#[test]
fn pamt_from_the_callers_allocator_is_not_claimed() {
    use tdmr::addr::PhysRange;
    use tdmr::memmap::NodeId;
    use tdmr::pamt::{PamtAllocator, TopDownAllocator};

    struct Reserved(TopDownAllocator);
    // SAFETY: the mock's simulated memory; the test stands in for a kernel that reserved these
    // blocks at boot.
    unsafe impl PamtAllocator for Reserved {
        fn allocate(&mut self, size: u64, node: NodeId) -> Option<PhysRange> {
            self.0.allocate(size, node)
        }
    }
    let input = input();
    let m = module();
    let mut alloc = Reserved(TopDownAllocator::new(input.memory()));
    let done = Bringup::new(&m, &m, &m, KEYIDS)
        .with_pamt_allocator(&mut alloc)
        .run(input.memory())
        .unwrap();
    assert_eq!(done.plan.pamt_origin(), tdmr::layout::PamtOrigin::Allocator);
    assert!(m.claimed_pamt().is_empty());
    assert!(m.tdmrs().iter().all(|t| t.is_done()));
}

/// The `next` profile (module extensions, TDH.SYS.DISABLE) on the same platform.
fn next_module() -> MockModule {
    let p = Platform::new(input().cmrs().listed())
        .unwrap()
        .with_topology(LPS, PACKAGES)
        .unwrap()
        .with_module(tdmr::mock::ModuleProfile::next());
    MockModule::new(p)
}

fn run_next(faults: &[FaultSpec]) -> (MockModule, Result<Initialized, InitError>, usize) {
    let m = next_module();
    let injected;
    let r = {
        let mut f = FaultInjector::new(&m, 7);
        for s in faults {
            f = f.with(*s);
        }
        let r = Bringup::new(&f, &m, &m, KEYIDS).run(input().memory());
        injected = f.injections().len();
        r
    };
    (m, r, injected)
}

#[test]
fn interrupted_extension_calls_are_resumed_with_one_more_call_each() {
    let clean = run_next(&[]).1.unwrap();
    assert!(clean.seamcalls.get(leaf::TDH_EXT_MEM_ADD) > 1);
    for (l, times) in [(leaf::TDH_EXT_MEM_ADD, 7), (leaf::TDH_EXT_INIT, 3)] {
        let spec = FaultSpec::at_times(FaultKind::InterruptedResumable, 0, times).on_leaf(l);
        let (m, r, injected) = run_next(&[spec]);
        let done = r.unwrap_or_else(|e| panic!("{l}: {e}"));
        assert_eq!(injected, times as usize, "{l}");
        assert_eq!(m.state(), SysState::SysReady);
        // The same memory handed over, one more call per interruption, nothing else changed.
        assert_eq!(done.extension_memory, clean.extension_memory);
        for (x, n) in clean.seamcalls.iter() {
            let want = if x == l { n + u64::from(times) } else { n };
            assert_eq!(done.seamcalls.get(x), want, "{x} with {l} interrupted");
        }
    }
}

#[test]
fn an_extension_call_interrupted_for_ever_fails_keeping_the_memory_handed_over() {
    let clean = run_next(&[]).1.unwrap();
    let spec =
        FaultSpec::rate(FaultKind::InterruptedResumable, 1_000_000).on_leaf(leaf::TDH_EXT_INIT);
    let (_, r, injected) = run_next(&[spec]);
    let e = r.unwrap_err();
    assert_eq!(e.stage, Stage::Extensions);
    // Resumption is bounded: it gave up, naming the leaf, and every call it made was
    // interrupted.
    match e.kind {
        InitErrorKind::ResumeStalled { leaf: l, calls } => {
            assert_eq!(l, leaf::TDH_EXT_INIT);
            assert_eq!(calls as usize, injected);
        }
        ref other => panic!("expected ResumeStalled, got {other}"),
    }
    assert!(injected > 1);
    assert_eq!(e.seamcalls.get(leaf::TDH_EXT_INIT), injected as u64);
    // Every page TDH.EXT.MEM.ADD handed over stays the module's.
    let t = e.teardown.as_ref().unwrap();
    assert_eq!(t.extension_memory, clean.extension_memory);
    assert!(!t.extension_memory.is_empty());
}

#[test]
fn disable_resumes_interruptions_and_retries_busy_ones_it_is_given() {
    for (kind, resumed, busy) in [
        (FaultKind::InterruptedResumable, 4, 0),
        (FaultKind::SysBusy, 0, 3),
    ] {
        let m = next_module();
        let _done = Bringup::new(&m, &m, &m, KEYIDS)
            .run(input().memory())
            .unwrap();
        let clean = {
            let m2 = next_module();
            Bringup::new(&m2, &m2, &m2, KEYIDS)
                .run(input().memory())
                .unwrap();
            tdmr::init::disable(&m2, tdmr::init::DisablePolicy::default()).unwrap()
        };
        let times = resumed + busy;
        let f = FaultInjector::new(&m, 3)
            .with(FaultSpec::at_times(kind, 0, times).on_leaf(leaf::TDH_SYS_DISABLE));
        let d = tdmr::init::disable(&f, tdmr::init::DisablePolicy::default()).unwrap();
        assert_eq!(f.injections().len(), times as usize);
        assert_eq!(d.calls, clean.calls + times, "{kind}");
        assert_eq!(d.resumed, clean.resumed + resumed, "{kind}");
        assert_eq!(d.busy, clean.busy + busy, "{kind}");
        assert_eq!(m.state(), SysState::Disabled);
    }
}

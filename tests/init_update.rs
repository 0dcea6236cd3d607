//! Runtime module update over the frozen layout (`init::Update`) against the mock: the
//! sequence in lock-step on every CPU with every step's calls counted, the check before
//! TDH.SYS.SHUTDOWN refusing with the precise reason (and agreeing with what the mock's
//! TDH.SYS.UPDATE would refuse, over random incoming modules), faults at each step recovered or
//! reported with the step and raw status, and `resume` after a stop.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tdmr::addr::PageSize;
use tdmr::init::{
    Bringup, IncomingModule, Initialized, ModuleLeft, ModuleLoader, Update, UpdateErrorKind,
    UpdateRefusal, UpdateStep,
};
use tdmr::memmap::parse_kernel_log;
use tdmr::mock::{LpThreads, MockModule, ModuleProfile, Platform, SeamLoader, SysState};
use tdmr::seamcall::Seamcall;
use tdmr::tdx::leaf::{self, Leaf};
use tdmr::tdx::status::*;
use tdmr::tdx::{Output, Regs};

const LOG: &str = "virt/tdx: CMR: [0x100000, 0x7f000000)\nvirt/tdx: CMR: [0x100000000, 0x500000000)\nvirt/tdx: CMR: [0x800000000, 0xa00000000)\n";

fn platform(profile: &str, lps: u32) -> Platform {
    let input = parse_kernel_log(LOG).unwrap();
    Platform::new(input.cmrs().listed())
        .unwrap()
        .with_topology(lps, 2)
        .unwrap()
        .with_module(profile.parse().unwrap())
}

fn boot(m: &MockModule, dynamic_pamt: bool) -> Initialized {
    let input = parse_kernel_log(LOG).unwrap();
    Bringup::new(m, m, m, m.platform().private_keyids())
        .with_dynamic_pamt(dynamic_pamt)
        .run(input.memory())
        .unwrap()
}

/// A wrapper that answers chosen calls with a chosen status instead of the module: call `n`
/// (0-based, counting only calls of `leaf`) gets `status`, `times` times in a row.
struct Script<'m> {
    inner: &'m MockModule,
    rules: Vec<(Leaf, u64, u64, u32)>,
    seen: Mutex<Vec<(Leaf, u64)>>,
}

impl<'m> Script<'m> {
    fn new(inner: &'m MockModule) -> Self {
        Script {
            inner,
            rules: Vec::new(),
            seen: Mutex::new(Vec::new()),
        }
    }

    fn fail(mut self, leaf: Leaf, nth: u64, status: u64, times: u32) -> Self {
        self.rules.push((leaf, nth, status, times));
        self
    }
}

impl Seamcall for Script<'_> {
    fn seamcall(&self, l: Leaf, regs: &Regs) -> Output {
        let n = {
            let mut seen = self.seen.lock().unwrap();
            match seen.iter_mut().find(|(x, _)| *x == l) {
                Some((_, n)) => {
                    *n += 1;
                    *n - 1
                }
                None => {
                    seen.push((l, 1));
                    0
                }
            }
        };
        for &(leaf, nth, status, times) in &self.rules {
            if leaf == l && n >= nth && n < nth + u64::from(times) {
                return Output::new(Status::new(status), *regs);
            }
        }
        self.inner.seamcall(l, regs)
    }
}

#[test]
fn an_update_runs_every_step_in_lock_step_and_counts_each() {
    for (from, to, lps, threads) in [
        ("1.5.06", "1.5.25", 4, false),
        ("1.5.06", "1.5.24", 8, true),
        ("2.0.04", "2.0.08", 4, true),
        ("next", "next,update=1", 6, false),
    ] {
        let m = MockModule::new(platform(from, lps));
        let dpamt = ModuleProfile::named(from).unwrap().supports_dynamic_pamt();
        let booted = boot(&m, dpamt);
        let before = m.tdmrs();
        let loader = SeamLoader::new(&m, to.parse().unwrap());
        let threads_cpus = LpThreads::new(&m);
        let done = if threads {
            Update::new(&m, &threads_cpus, &loader, &booted).run()
        } else {
            Update::new(&m, &m, &loader, &booted).run()
        }
        .unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
        assert_eq!(done.version, ModuleProfile::named(to).unwrap().version());
        assert_eq!(done.from, booted.info.version);
        let n = u64::from(lps);
        let c = |s: UpdateStep| done.calls(s);
        assert_eq!(c(UpdateStep::Check).seamcalls.get(leaf::TDH_SYS_RD), 2);
        assert_eq!(
            c(UpdateStep::Shutdown)
                .seamcalls
                .get(leaf::TDH_SYS_SHUTDOWN),
            1
        );
        assert_eq!(c(UpdateStep::Install).loader, n);
        assert_eq!(
            c(UpdateStep::LpInit).seamcalls.get(leaf::TDH_SYS_LP_INIT),
            n
        );
        let update_leaf = leaf::TDH_SYS_UPDATE;
        assert_eq!(c(UpdateStep::Update).seamcalls.get(update_leaf), 1);
        assert_eq!(c(UpdateStep::Verify).seamcalls.get(leaf::TDH_SYS_RD), 4);
        assert_eq!(done.seamcalls().total(), 2 + 1 + n + 1 + 4);
        // The module runs the new version over the same TDMRs, still initialized.
        assert_eq!((m.state(), m.updates()), (SysState::SysReady, 1));
        assert_eq!(m.module().version(), done.version);
        assert_eq!(m.tdmrs(), before);
        assert_eq!(m.lp_conflicts(), 0);
        // Two updates in a row: the second from the first's result.
        let mut booted = booted;
        booted.record_update(&done);
        let again: ModuleProfile = format!("{to},update=30").parse().unwrap();
        let loader = SeamLoader::new(&m, again);
        Update::new(&m, &m, &loader, &booted).run().unwrap();
        assert_eq!(m.updates(), 2);
    }
}

/// Every step ordered after the previous one on every CPU, installs one at a time: events
/// numbered by one counter across the wrappers.
#[test]
fn steps_never_overlap_and_installs_are_serialised() {
    struct Seq<'a> {
        inner: &'a MockModule,
        clock: &'a AtomicU64,
        log: &'a Mutex<Vec<(u64, &'static str)>>,
    }
    impl Seamcall for Seq<'_> {
        fn seamcall(&self, l: Leaf, regs: &Regs) -> Output {
            let name = match l.number() {
                52 => "shutdown",
                35 => "lp_init",
                53 => "update",
                _ => return self.inner.seamcall(l, regs),
            };
            let t = self.clock.fetch_add(1, Ordering::SeqCst);
            let out = self.inner.seamcall(l, regs);
            self.log.lock().unwrap().push((t, name));
            out
        }
    }
    struct SeqLoader<'a> {
        inner: SeamLoader<'a>,
        clock: &'a AtomicU64,
        log: &'a Mutex<Vec<(u64, &'static str)>>,
        inside: AtomicU64,
    }
    impl ModuleLoader for SeqLoader<'_> {
        fn incoming(&self) -> IncomingModule {
            self.inner.incoming()
        }
        fn install(&self) -> Output {
            assert_eq!(
                self.inside.fetch_add(1, Ordering::SeqCst),
                0,
                "two installs at once"
            );
            let t = self.clock.fetch_add(1, Ordering::SeqCst);
            let out = self.inner.install();
            self.log.lock().unwrap().push((t, "install"));
            self.inside.fetch_sub(1, Ordering::SeqCst);
            out
        }
    }
    let m = MockModule::new(platform("1.5.06", 8));
    let booted = boot(&m, false);
    let clock = AtomicU64::new(0);
    let log = Mutex::new(Vec::new());
    let seq = Seq {
        inner: &m,
        clock: &clock,
        log: &log,
    };
    let loader = SeqLoader {
        inner: SeamLoader::new(&m, "1.5.25".parse().unwrap()),
        clock: &clock,
        log: &log,
        inside: AtomicU64::new(0),
    };
    let cpus = LpThreads::new(&m);
    Update::new(&seq, &cpus, &loader, &booted).run().unwrap();
    let mut events = log.into_inner().unwrap();
    events.sort();
    let names: Vec<&str> = events.iter().map(|e| e.1).collect();
    let mut expect = vec!["shutdown"];
    expect.extend(["install"; 8]);
    expect.extend(["lp_init"; 8]);
    expect.push("update");
    assert_eq!(names, expect);
}

/// `(boot profile, incoming profile, Dynamic PAMT at boot, the refusal)`.
type RefusalCase = (&'static str, &'static str, bool, fn(&UpdateRefusal) -> bool);

fn refusal_cases() -> Vec<RefusalCase> {
    vec![
        ("1.0", "1.0,update=1", false, |r| {
            matches!(r, UpdateRefusal::NotSupported { features0: 0 })
        }),
        ("1.5.06", "2.0.08", false, |r| {
            matches!(r, UpdateRefusal::NotAnUpdate { .. })
        }),
        ("1.5.25", "1.5.24", false, |r| {
            matches!(r, UpdateRefusal::NotAnUpdate { .. })
        }),
        ("1.5.06", "1.5.25,max_tdmrs=2", false, |r| {
            matches!(r, UpdateRefusal::TooManyTdmrs { tdmrs: 3, limit: 2 })
        }),
        ("1.5.06", "1.5.25,max_reserved=1", false, |r| {
            matches!(
                r,
                UpdateRefusal::TooManyReservedAreas {
                    index: 0,
                    limit: 1,
                    ..
                }
            )
        }),
        ("1.5.06", "1.5.25,pamt_entry_size=32", false, |r| {
            matches!(
                r,
                UpdateRefusal::PamtTooSmall {
                    index: 0,
                    level: PageSize::Size4K,
                    ..
                }
            )
        }),
        ("2.0.04", "2.0.05", true, |r| {
            matches!(r, UpdateRefusal::DynamicPamtUnsupported { .. })
        }),
        ("2.0.04", "2.0.08,pamt_entry_size=32", true, |r| {
            // With Dynamic PAMT the 4K level is a bitmap: the 2M level is the first too small.
            matches!(
                r,
                UpdateRefusal::PamtTooSmall {
                    level: PageSize::Size2M,
                    ..
                }
            )
        }),
        ("next", "next,update=1,ext_pages=12801", false, |r| {
            matches!(
                r,
                UpdateRefusal::ExtensionMemory {
                    needs: 12801,
                    added: 12800
                }
            )
        }),
    ]
}

#[test]
fn the_check_refuses_before_shutdown_with_the_precise_reason() {
    let mut checked = 0;
    for (from, to, dpamt, is) in refusal_cases() {
        let m = MockModule::new(platform(from, 4));
        let booted = boot(&m, dpamt);
        let loader = SeamLoader::new(&m, to.parse().unwrap());
        let err = Update::new(&m, &m, &loader, &booted).run().unwrap_err();
        assert_eq!(err.step, UpdateStep::Check, "{from} -> {to}: {err}");
        assert_eq!(err.module, ModuleLeft::Running);
        match &err.kind {
            UpdateErrorKind::Refused(r) => assert!(is(r), "{from} -> {to}: {r}"),
            other => panic!("{from} -> {to}: {other}"),
        }
        // Nothing happened: no TDH.SYS.SHUTDOWN reached the module, which still serves.
        assert_eq!(m.log().counts().get(leaf::TDH_SYS_SHUTDOWN), 0);
        assert_eq!(m.state(), SysState::SysReady);
        assert_eq!(m.module().version(), booted.info.version);
        checked += 1;
    }
    assert_eq!(checked, 9);

    // Handoff versions the incoming module cannot take over from.
    let m = MockModule::new(platform("2.0.04", 4));
    let booted = boot(&m, false);
    let incoming: ModuleProfile = ModuleProfile::named("2.0.08")
        .unwrap()
        .with_handoff_versions(3, 3);
    let loader = SeamLoader::new(&m, incoming);
    let err = Update::new(&m, &m, &loader, &booted).run().unwrap_err();
    assert!(matches!(
        err.kind,
        UpdateErrorKind::Refused(UpdateRefusal::HandoffVersion {
            running: 2,
            incoming: (3, 3)
        })
    ));
    // Add-on features the incoming module cannot keep.
    let m = MockModule::new(platform("next,add_ons=0x40", 4));
    let input = parse_kernel_log(LOG).unwrap();
    let booted = Bringup::new(&m, &m, &m, m.platform().private_keyids())
        .with_add_on_features(0x40)
        .run(input.memory())
        .unwrap();
    let loader = SeamLoader::new(&m, "next,update=1".parse().unwrap());
    let err = Update::new(&m, &m, &loader, &booted).run().unwrap_err();
    assert!(matches!(
        err.kind,
        UpdateErrorKind::Refused(UpdateRefusal::AddOnFeatures { missing: 0x40 })
    ));
    // No updates left.
    let m = MockModule::new(platform("1.5.06", 2));
    let booted = boot(&m, false);
    let loader = SeamLoader::new(&m, "1.5.25".parse().unwrap()).with_remaining_updates(0);
    let err = Update::new(&m, &m, &loader, &booted).run().unwrap_err();
    assert!(matches!(
        err.kind,
        UpdateErrorKind::Refused(UpdateRefusal::NoUpdatesLeft)
    ));
    // The version policy can be turned off (a same-version reload).
    let loader = SeamLoader::new(&m, "1.5.06".parse().unwrap());
    assert!(Update::new(&m, &m, &loader, &booted).run().is_err());
    Update::new(&m, &m, &loader, &booted)
        .with_version_policy(false)
        .run()
        .unwrap();
}

/// The driver's check and the module's own refusal at TDH.SYS.UPDATE agree, over random
/// incoming limits: when the check passes the update completes; when it refuses for a layout
/// reason, the module (driven past the check by hand) refuses too.
#[test]
fn the_check_agrees_with_what_the_module_refuses() {
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..60 {
        let dpamt = next(2) == 0;
        let from = if dpamt { "2.0.04" } else { "1.5.06" };
        let m = MockModule::new(platform(from, 2));
        let booted = boot(&m, dpamt);
        let max_tdmrs = 1 + next(5);
        let max_reserved = next(4);
        let entry = [8, 16, 16, 16, 24][next(5) as usize];
        let to = if dpamt {
            format!(
                "2.0.08,max_tdmrs={max_tdmrs},max_reserved={max_reserved},pamt_entry_size={entry}"
            )
        } else {
            format!(
                "1.5.25,max_tdmrs={max_tdmrs},max_reserved={max_reserved},pamt_entry_size={entry}"
            )
        };
        let incoming: ModuleProfile = to.parse().unwrap();
        let loader = SeamLoader::new(&m, incoming.clone());
        match Update::new(&m, &m, &loader, &booted).run() {
            Ok(_) => {
                accepted += 1;
                assert_eq!(m.module(), incoming);
            }
            Err(e) => {
                assert!(matches!(e.kind, UpdateErrorKind::Refused(_)), "{to}: {e}");
                refused += 1;
                // By hand, past the check: the module refuses at TDH.SYS.UPDATE.
                let on = |lp: u32, l: Leaf, r: Regs| {
                    let mut out = 0;
                    tdmr::init::Cpus::run_on(&m, lp, &mut || out = m.seamcall(l, &r).status.raw())
                        .unwrap();
                    out
                };
                let hv = if dpamt { 2 } else { 1 };
                let shutdown = Regs {
                    rcx: hv,
                    ..Regs::ZERO
                };
                assert_eq!(on(0, leaf::TDH_SYS_SHUTDOWN, shutdown), TDX_SUCCESS);
                for lp in 0..2 {
                    let mut s = 0;
                    tdmr::init::Cpus::run_on(&m, lp, &mut || s = loader.install().status.raw())
                        .unwrap();
                    assert_eq!(s, TDX_SUCCESS);
                }
                for lp in 0..2 {
                    assert_eq!(on(lp, leaf::TDH_SYS_LP_INIT, Regs::ZERO), TDX_SUCCESS);
                }
                assert_eq!(
                    on(0, leaf::TDH_SYS_UPDATE, Regs::ZERO),
                    TDX_SYS_STATE_INCORRECT,
                    "{to}: the module would have taken what the check refused"
                );
            }
        }
    }
    assert!(
        accepted >= 5 && refused >= 20,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn transient_faults_at_each_step_are_retried() {
    let m = MockModule::new(platform("next", 4));
    let booted = boot(&m, false);
    let faulty = Script::new(&m)
        .fail(leaf::TDH_SYS_SHUTDOWN, 0, TDX_SYS_BUSY, 3)
        .fail(leaf::TDH_SYS_LP_INIT, 0, TDX_RND_NO_ENTROPY, 2)
        .fail(leaf::TDH_SYS_UPDATE, 0, TDX_SYS_BUSY, 2);
    let loader = SeamLoader::new(&m, "next,update=1".parse().unwrap());
    // Compatibility-sensitive work ends after a while: its first answers are retried too.
    m.set_compat_sensitive(false);
    let done = Update::new(&faulty, &m, &loader, &booted).run().unwrap();
    assert_eq!(
        done.calls(UpdateStep::Shutdown)
            .seamcalls
            .get(leaf::TDH_SYS_SHUTDOWN),
        4
    );
    assert_eq!(
        done.calls(UpdateStep::LpInit)
            .seamcalls
            .get(leaf::TDH_SYS_LP_INIT),
        4 + 2
    );
    assert_eq!(
        done.calls(UpdateStep::Update)
            .seamcalls
            .get(leaf::TDH_SYS_UPDATE),
        3
    );
    assert_eq!(m.updates(), 1);
}

#[test]
fn failures_stop_with_the_step_and_raw_status_and_resume_carries_on() {
    // 1. SHUTDOWN refused: the old module runs; resume is a fresh run.
    let m = MockModule::new(platform("1.5.06", 4));
    let booted = boot(&m, false);
    let loader = SeamLoader::new(&m, "1.5.25".parse().unwrap());
    let bad = Script::new(&m).fail(leaf::TDH_SYS_SHUTDOWN, 0, TDX_OPERAND_INVALID | 1, 1);
    let err = Update::new(&bad, &m, &loader, &booted).run().unwrap_err();
    assert_eq!(
        (err.step, err.module),
        (UpdateStep::Shutdown, ModuleLeft::Running)
    );
    match &err.kind {
        UpdateErrorKind::Seamcall(e) => assert_eq!(e.status.raw(), TDX_OPERAND_INVALID | 1),
        other => panic!("{other}"),
    }
    assert_eq!(m.state(), SysState::SysReady);
    Update::new(&m, &m, &loader, &booted).resume(&err).unwrap();
    assert_eq!(m.updates(), 1);

    // 2. The loader busy for good: stop at Install, module shut down; resume installs.
    let m = MockModule::new(platform("1.5.06", 4));
    let booted = boot(&m, false);
    let loader = SeamLoader::new(&m, "1.5.25".parse().unwrap());
    let held = loader.hold().unwrap();
    let err = Update::new(&m, &m, &loader, &booted).run().unwrap_err();
    assert_eq!(
        (err.step, err.module),
        (UpdateStep::Install, ModuleLeft::ShutDown)
    );
    match err.kind {
        UpdateErrorKind::Loader {
            status, attempts, ..
        } => {
            assert_eq!(status.raw(), TDX_SEAMCALL_VMFAILINVALID);
            assert_eq!(attempts, 64);
        }
        ref other => panic!("{other}"),
    }
    assert_eq!(m.state(), SysState::Shutdown);
    drop(held);
    // The shut-down module cannot be asked for its handoff version; resume has it.
    assert_eq!(err.handoff_version, Some(1));
    let done = Update::new(&m, &m, &loader, &booted).resume(&err).unwrap();
    assert_eq!(done.calls(UpdateStep::Shutdown).seamcalls.total(), 0);
    assert_eq!(done.calls(UpdateStep::Install).loader, 4);
    assert_eq!((m.state(), m.updates()), (SysState::SysReady, 1));

    // 3. LP.INIT failing on one CPU: stop at LpInit; resume re-runs LP.INIT (done LPs answer
    //    LP_INIT_DONE) and UPDATE.
    let m = MockModule::new(platform("1.5.06", 4));
    let booted = boot(&m, false);
    let loader = SeamLoader::new(&m, "1.5.25".parse().unwrap());
    let bad = Script::new(&m).fail(
        leaf::TDH_SYS_LP_INIT,
        2,
        TDX_INCOMPATIBLE_SEAM_CAPABILITIES,
        1,
    );
    let err = Update::new(&bad, &m, &loader, &booted).run().unwrap_err();
    assert_eq!(
        (err.step, err.module),
        (UpdateStep::LpInit, ModuleLeft::ShutDown)
    );
    match &err.kind {
        UpdateErrorKind::Seamcall(e) => {
            assert_eq!(e.status.raw(), TDX_INCOMPATIBLE_SEAM_CAPABILITIES);
            assert_eq!(e.leaf, leaf::TDH_SYS_LP_INIT);
            assert!(e.cpu.is_some());
        }
        other => panic!("{other}"),
    }
    assert!(m.update_pending());
    Update::new(&m, &m, &loader, &booted).resume(&err).unwrap();
    assert_eq!(m.updates(), 1);

    // 4. UPDATE failing: stop at Update; resume issues it again.
    let m = MockModule::new(platform("1.5.06", 4));
    let booted = boot(&m, false);
    let loader = SeamLoader::new(&m, "1.5.25".parse().unwrap());
    let bad = Script::new(&m).fail(leaf::TDH_SYS_UPDATE, 0, TDX_SYS_STATE_INCORRECT, 1);
    let err = Update::new(&bad, &m, &loader, &booted).run().unwrap_err();
    assert_eq!(
        (err.step, err.module),
        (UpdateStep::Update, ModuleLeft::ShutDown)
    );
    let done = Update::new(&m, &m, &loader, &booted).resume(&err).unwrap();
    assert_eq!(done.calls(UpdateStep::LpInit).seamcalls.total(), 0);
    assert_eq!(
        done.calls(UpdateStep::Update)
            .seamcalls
            .get(leaf::TDH_SYS_UPDATE),
        1
    );
    assert_eq!(m.updates(), 1);

    // 5. Compatibility-sensitive work that does not end: try later, the old module runs.
    let m = MockModule::new(platform("next", 2));
    let booted = boot(&m, false);
    let loader = SeamLoader::new(&m, "next,update=1".parse().unwrap());
    m.set_compat_sensitive(true);
    let err = Update::new(&m, &m, &loader, &booted).run().unwrap_err();
    assert_eq!(
        (err.step, err.module),
        (UpdateStep::Shutdown, ModuleLeft::Running)
    );
    assert!(matches!(
        err.kind,
        UpdateErrorKind::TryLater { status } if status.raw() == TDX_UPDATE_COMPAT_SENSITIVE
    ));
    // Without asking to avoid it, the update goes ahead.
    Update::new(&m, &m, &loader, &booted)
        .with_avoid_compat_sensitive(false)
        .run()
        .unwrap();

    // 6. A loader that installs something else than it said: the check after UPDATE says so.
    struct Liar<'a>(SeamLoader<'a>);
    impl ModuleLoader for Liar<'_> {
        fn incoming(&self) -> IncomingModule {
            let mut i = self.0.incoming();
            i.version.update = 24;
            i
        }
        fn install(&self) -> Output {
            self.0.install()
        }
    }
    let m = MockModule::new(platform("1.5.06", 2));
    let booted = boot(&m, false);
    let liar = Liar(SeamLoader::new(&m, "1.5.25".parse().unwrap()));
    let err = Update::new(&m, &m, &liar, &booted).run().unwrap_err();
    assert_eq!(
        (err.step, err.module),
        (UpdateStep::Verify, ModuleLeft::Updated)
    );
    assert!(matches!(err.kind, UpdateErrorKind::NotTheIncoming { .. }));
}

#[test]
fn dynamic_pamt_pairs_survive_an_update() {
    use tdmr::dpamt::{DynamicPamt, Get, PairCache};
    use tdmr::mock::PagePool;
    let m = MockModule::new(platform("2.0.04", 2));
    let booted = boot(&m, true);
    let dpamt = DynamicPamt::for_plan(&m, &booted.plan).unwrap();
    let free = booted
        .plan
        .tdmrs()
        .iter()
        .flat_map(|t| t.available())
        .find(|r| r.size() >= 64 << 20)
        .unwrap();
    let base = free.start().next_multiple_of(2 << 20);
    let mut pool = PagePool::new(base + (32 << 20), 4).unwrap();
    let mut cache = PairCache::new(4);
    cache.top_up(&mut pool);
    assert_eq!(dpamt.get(base >> 12, &mut cache).unwrap(), Get::Added);
    let pair = m.pamt_pair(base).unwrap();
    let loader = SeamLoader::new(&m, "2.0.08".parse().unwrap());
    Update::new(&m, &m, &loader, &booted).run().unwrap();
    assert_eq!(m.pamt_pair(base), Some(pair));
    assert!(m.dynamic_pamt());
}

/// The hotplug gate through an update, as a kernel runs one: the check first (a refused update
/// never touches the gate), then `begin_update` before TDH.SYS.SHUTDOWN; while the update runs
/// a hotplug thread is answered `Busy` every time; afterwards the gate admits exactly what it
/// admitted before, with the frozen memory of the boot-time layout.
#[test]
fn the_hotplug_gate_is_busy_through_an_update_and_keeps_the_frozen_memory() {
    use std::sync::atomic::AtomicBool;
    use tdmr::hotplug_gate::{AdmitError, CpuOnlineError, GateConfig, HotplugGate, ModuleState};

    let input = parse_kernel_log(LOG).unwrap();
    let m = MockModule::new(platform("2.0.04", 4));
    let booted = boot(&m, true);
    let gate = HotplugGate::new(input.cmrs().clone(), GateConfig::new(5, 2)).unwrap();
    for cpu in 0..4 {
        gate.cpu_online(cpu, cpu % 2).unwrap().finish();
    }
    gate.begin_init()
        .unwrap()
        .publish(&booted.plan, input.memory())
        .unwrap();
    let frozen: Vec<_> = gate.frozen_memory().collect();
    let owned: Vec<_> = gate.tdx_metadata().collect();
    let probes: Vec<_> = frozen
        .iter()
        .copied()
        .chain(owned.iter().map(|(r, _)| *r))
        .collect();
    let answers = |g: &HotplugGate| -> Vec<bool> {
        probes
            .iter()
            .map(|&r| g.admit_memory(r).map(|t| t.finish()).is_ok())
            .collect()
    };
    let before = answers(&gate);
    assert!(before.contains(&true) && before.contains(&false));

    // A module whose limits the layout breaks: refused at the check, the gate untouched.
    let tight = SeamLoader::new(&m, "2.0.08,max_reserved=1".parse().unwrap());
    let refused = Update::new(&m, &m, &tight, &booted).check().unwrap_err();
    assert!(
        matches!(refused.kind, UpdateErrorKind::Refused(_)),
        "{refused}"
    );
    assert_eq!(gate.state(), ModuleState::Initialized);

    let loader = SeamLoader::new(&m, "2.0.08".parse().unwrap());
    let update = Update::new(&m, &m, &loader, &booted);
    update.check().unwrap();
    let ticket = gate.begin_update().unwrap();
    let running = AtomicBool::new(true);
    let busy = std::thread::scope(|s| {
        let hotplug = s.spawn(|| {
            let mut answered = 0u32;
            loop {
                assert_eq!(gate.admit_memory(frozen[0]).unwrap_err(), AdmitError::Busy);
                assert_eq!(gate.cpu_online(4, 0).unwrap_err(), CpuOnlineError::Busy);
                answered += 1;
                if !running.load(Ordering::Acquire) {
                    return answered;
                }
            }
        });
        let done = update.run().unwrap();
        assert_eq!(
            done.version,
            ModuleProfile::named("2.0.08").unwrap().version()
        );
        running.store(false, Ordering::Release);
        hotplug.join().unwrap()
    });
    assert!(busy >= 1);
    ticket.finish();

    assert_eq!(gate.state(), ModuleState::Initialized);
    assert_eq!(gate.frozen_memory().collect::<Vec<_>>(), frozen);
    assert_eq!(gate.tdx_metadata().collect::<Vec<_>>(), owned);
    assert_eq!(answers(&gate), before);
    let online = gate.cpu_online(4, 0).unwrap();
    assert!(online.lp_init_required(), "LP.INIT on the new module");
    online.finish();
}

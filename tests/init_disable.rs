//! TDH.SYS.DISABLE for kexec and kdump (`init::disable`): retried while the module answers
//! busy or interrupted, bounded, unsupported on every released module, and the module's state
//! after it — everything refused but a new bring-up, which then works.

use std::sync::Mutex;

use tdmr::init::{Bringup, DisableError, DisablePolicy, disable};
use tdmr::memmap::parse_kernel_log;
use tdmr::mock::{MockModule, ModuleProfile, Platform, SysState};
use tdmr::seamcall::Seamcall;
use tdmr::tdx::leaf::{self, Leaf};
use tdmr::tdx::status::*;
use tdmr::tdx::{Output, Regs};

const LOG: &str = "virt/tdx: CMR: [0x100000, 0x7f000000)\nvirt/tdx: CMR: [0x100000000, 0x500000000)\nvirt/tdx: CMR: [0x800000000, 0xa00000000)\n";

fn module(profile: &str) -> MockModule {
    let input = parse_kernel_log(LOG).unwrap();
    MockModule::new(
        Platform::new(input.cmrs().listed())
            .unwrap()
            .with_topology(4, 2)
            .unwrap()
            .with_module(profile.parse().unwrap()),
    )
}

fn bring_up(m: &MockModule) -> tdmr::init::Initialized {
    let input = parse_kernel_log(LOG).unwrap();
    Bringup::new(m, m, m, m.platform().private_keyids())
        .run(input.memory())
        .unwrap()
}

/// Answers TDH.SYS.DISABLE with `script` (in order) before passing it on.
struct Scripted<'m> {
    inner: &'m MockModule,
    script: Mutex<Vec<u64>>,
}

impl Seamcall for Scripted<'_> {
    fn seamcall(&self, l: Leaf, regs: &Regs) -> Output {
        if l == leaf::TDH_SYS_DISABLE
            && let Some(s) = self.script.lock().unwrap().pop()
        {
            return Output::new(Status::new(s), *regs);
        }
        self.inner.seamcall(l, regs)
    }
}

#[test]
fn disable_after_bring_up_resumes_until_done_and_a_new_bring_up_works() {
    let m = module("next");
    let done = bring_up(&m);
    let tdmrs = done.plan.tdmrs().len() as u32;
    assert!(tdmrs >= 2);
    let d = disable(&m, DisablePolicy::default()).unwrap();
    // The mock reclaims one TDMR per call.
    assert_eq!((d.calls, d.resumed, d.busy), (tdmrs, tdmrs - 1, 0));
    assert_eq!(m.state(), SysState::Disabled);
    assert!(m.tdmrs().is_empty() && m.extension_pages() == 0);
    // The next kernel (its page allocator has the old PAMT memory back): a full bring-up on the
    // same module, extensions included.
    for r in done.plan.pamt_ranges().iter() {
        tdmr::init::HostMemory::unclaim_pamt(&m, r);
    }
    let again = bring_up(&m);
    assert_eq!(again.plan, done.plan);
    assert_eq!(again.extension_pages(), 12_800);
    assert_eq!(m.state(), SysState::SysReady);
}

#[test]
fn busy_and_interrupted_answers_are_retried_other_failures_reported() {
    let m = module("next");
    bring_up(&m);
    let s = Scripted {
        inner: &m,
        script: Mutex::new(vec![
            TDX_INTERRUPTED_RESUMABLE,
            TDX_SYS_BUSY,
            TDX_SYS_BUSY,
            TDX_INTERRUPTED_RESUMABLE,
        ]),
    };
    let d = disable(&s, DisablePolicy::default()).unwrap();
    let tdmrs = 3; // the three CMRs, one TDMR each
    assert_eq!((d.busy, d.resumed), (2, 2 + tdmrs - 1));
    assert_eq!(d.calls, 4 + tdmrs);

    // A module that never finishes: bounded.
    let m = module("next");
    bring_up(&m);
    let s = Scripted {
        inner: &m,
        script: Mutex::new(vec![TDX_INTERRUPTED_RESUMABLE; 100]),
    };
    let policy = DisablePolicy {
        max_calls: 50,
        busy_spins: 1,
    };
    assert_eq!(
        disable(&s, policy),
        Err(DisableError::GaveUp {
            status: Status::new(TDX_INTERRUPTED_RESUMABLE),
            calls: 50
        })
    );
    assert_eq!(m.state(), SysState::SysReady);

    // A refusal is reported with its raw status.
    let s = Scripted {
        inner: &m,
        script: Mutex::new(vec![TDX_SYS_STATE_INCORRECT]),
    };
    assert_eq!(
        disable(&s, DisablePolicy::default()),
        Err(DisableError::Failed {
            status: Status::new(TDX_SYS_STATE_INCORRECT),
            calls: 1
        })
    );
    // No module loaded: the instruction fails; harmless on the kexec path.
    let s = Scripted {
        inner: &m,
        script: Mutex::new(vec![TDX_SEAMCALL_VMFAILINVALID]),
    };
    assert!(matches!(
        disable(&s, DisablePolicy::default()),
        Err(DisableError::Unsupported { .. })
    ));
}

#[test]
fn released_modules_have_no_disable_before_or_after_bring_up() {
    let mut checked = 0;
    for p in ModuleProfile::releases()
        .into_iter()
        .filter(|p| p.is_release())
    {
        let name = p.to_string();
        let m = module(&name);
        let before = disable(&m, DisablePolicy::default()).unwrap_err();
        assert_eq!(
            before,
            DisableError::Unsupported {
                status: Status::new(TDX_SYS_NOT_READY)
            },
            "{name}"
        );
        bring_up(&m);
        let after = disable(&m, DisablePolicy::default()).unwrap_err();
        assert_eq!(
            after,
            DisableError::Unsupported {
                status: Status::new(TDX_OPERAND_INVALID)
            },
            "{name}"
        );
        assert_eq!(m.state(), SysState::SysReady, "{name}: untouched");
        checked += 1;
    }
    assert_eq!(checked, 8);
}

#[test]
fn disable_works_in_every_state_of_next() {
    // Before TDH.SYS.INIT, after it, after CONFIG (mid bring-up), after shutdown for update.
    let m = module("next");
    disable(&m, DisablePolicy::default()).unwrap();
    assert_eq!(m.state(), SysState::Disabled);
    let m = module("next");
    let input = parse_kernel_log(LOG).unwrap();
    // A bring-up that fails after CONFIG (no extension memory): the module is configured,
    // not usable; disable reclaims it and the next bring-up works.
    struct Host<'m>(&'m MockModule);
    // SAFETY: forwards to the mock's host memory; claims no extension pages.
    unsafe impl tdmr::init::HostMemory for Host<'_> {
        fn place(&self, b: &[u8], a: u64) -> Result<u64, tdmr::init::HostMemoryError> {
            self.0.place(b, a)
        }
        fn release(&self, pa: u64, len: usize) {
            self.0.release(pa, len)
        }
        fn claim_pamt(&self, r: tdmr::addr::PhysRange) -> Result<(), tdmr::init::HostMemoryError> {
            self.0.claim_pamt(r)
        }
        fn unclaim_pamt(&self, r: tdmr::addr::PhysRange) {
            self.0.unclaim_pamt(r)
        }
    }
    let e = Bringup::new(&m, &m, &Host(&m), m.platform().private_keyids())
        .run(input.memory())
        .unwrap_err();
    assert_eq!(e.stage, tdmr::init::Stage::Extensions);
    for r in e.teardown.unwrap().pamt {
        tdmr::init::HostMemory::unclaim_pamt(&m, r);
    }
    disable(&m, DisablePolicy::default()).unwrap();
    bring_up(&m);
}

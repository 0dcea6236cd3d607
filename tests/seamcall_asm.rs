//! The real backend really emits SEAMCALL: a child process executes it at CPL 3, where the
//! instruction faults, and the parent observes the signal the fault becomes.
//!
//! Which fault (SDM, SEAMCALL): outside VMX operation the instruction raises #UD; in VMX
//! non-root operation (a guest) it exits to the hypervisor, which reflects #UD into the guest
//! (KVM does); in VMX root operation at CPL > 0 it raises #GP(0). Linux turns #UD into SIGILL
//! and #GP into SIGSEGV. Which one a machine shows depends on how it is virtualised: a
//! hardware-virtualised guest sees #UD, but a guest of a paravirtual hypervisor that runs guest
//! code at the host's CPL 3 (PVM, as on the CI machines) executes it in the host's VMX root
//! operation and sees #GP. So the test accepts either signal, and insists that the instruction
//! was reached and never returned.
#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use tdmr::seamcall::Seamcall;
use tdmr::seamcall::SeamcallInstruction;
use tdmr::tdx::{Regs, leaf};

const CHILD_ENV: &str = "TDMR_SEAMCALL_CHILD";
const REACHED: &str = "child: issuing SEAMCALL";
const RETURNED: &str = "child: SEAMCALL returned";
const SIGILL: i32 = 4;
const SIGSEGV: i32 = 11;

fn child() -> ! {
    // SAFETY: deliberately not met. This process runs at CPL 3, so the instruction faults
    // before it can touch any state; the fault's signal ends the process, which is what the
    // parent checks. Nothing runs after a fault.
    let insn = unsafe { SeamcallInstruction::new() };
    eprintln!("{REACHED}");
    std::io::stderr().flush().ok();
    let out = insn.seamcall(leaf::TDH_SYS_LP_INIT, &Regs::ZERO);
    eprintln!("{RETURNED}: {}", out.status);
    std::process::exit(0);
}

#[test]
fn seamcall_faults_at_cpl3() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
    }
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "seamcall_faults_at_cpl3",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .expect("spawn child");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(REACHED),
        "child never reached the instruction: {stderr}"
    );
    assert!(
        !stderr.contains(RETURNED),
        "SEAMCALL returned at CPL 3: {stderr}"
    );
    let signal = out.status.signal();

    assert!(
        matches!(signal, Some(SIGILL | SIGSEGV)),
        "expected #UD (SIGILL) or #GP (SIGSEGV), got {:?}",
        out.status
    );
}

//! The machine's vCPUs as `tdmr::init::Cpus`, through UEFI MP Services (PI 1.8, vol. 2,
//! §13.4): `StartupThisAP` for one CPU, `StartupAllAPs` without blocking for a set (the
//! bootstrap processor runs its own share meanwhile, then waits for the APs' event), WBINVD on
//! every CPU for the cache flush.
//!
//! CPU numbers are MP Services' processor numbers; packages are the firmware's. An AP finds
//! its own number from its initial APIC id (CPUID leaf 1), through a table filled on the
//! bootstrap processor before any AP runs: APs may not call boot services, and `WhoAmI` is the
//! only MP Services call they could make.

use alloc::vec::Vec;
use core::ffi::c_void;
use core::sync::atomic::{AtomicU32, Ordering};

use tdmr::init::{Cpu, CpuId, CpuUnavailable, Cpus};
use uefi::boot::{self, EventType, ScopedProtocol, Tpl};
use uefi::proto::pi::mp::MpServices;

/// APIC ids the table maps (xAPIC ids are 8 bits).
const APIC_IDS: usize = 256;
/// No CPU has this APIC id.
const NONE: u32 = u32::MAX;

/// Initial APIC id → processor number.
static APIC_TO_CPU: [AtomicU32; APIC_IDS] = [const { AtomicU32::new(NONE) }; APIC_IDS];

/// The initial APIC id of the CPU this runs on (CPUID.01H:EBX[31:24]).
fn apic_id() -> usize {
    // CPUID is always available on x86_64 and only reads.
    let leaf = core::arch::x86_64::__cpuid(1);
    (leaf.ebx >> 24) as usize
}

/// The processor number of the CPU this runs on (0 if the table does not know it): what the
/// mock module is told each call comes from.
pub fn who_am_i() -> u32 {
    let n = APIC_TO_CPU[apic_id()].load(Ordering::Relaxed);
    if n == NONE { 0 } else { n }
}

/// The vCPUs, driven through MP Services from the bootstrap processor.
pub struct MpCpus {
    mp: ScopedProtocol<MpServices>,
    cpus: Vec<Cpu>,
    bsp: CpuId,
}

// SAFETY: the protocol handle is used only on the bootstrap processor: bring-up calls `cpus`,
// `run_on`, `run_on_each` and `flush_caches` there (the closures it hands to other CPUs get
// only a CPU number), and the APs' procedures below touch nothing of `MpCpus` but the closure
// they are given. So no two CPUs use the protocol at once.
unsafe impl Sync for MpCpus {}

/// Why the vCPUs could not be listed.
#[derive(Debug)]
pub struct CpusError(pub uefi::Error);

impl MpCpus {
    /// Opens MP Services and lists every enabled processor with its package.
    pub fn new() -> Result<MpCpus, CpusError> {
        let handle = boot::get_handle_for_protocol::<MpServices>().map_err(CpusError)?;
        let mp = boot::open_protocol_exclusive::<MpServices>(handle).map_err(CpusError)?;
        let count = mp.get_number_of_processors().map_err(CpusError)?;
        let mut cpus = Vec::with_capacity(count.total);
        let mut bsp = 0;
        for n in 0..count.total {
            let info = mp.get_processor_info(n).map_err(CpusError)?;
            if !info.is_enabled() {
                continue;
            }
            if info.is_bsp() {
                bsp = n as CpuId;
            }
            if let Some(slot) = APIC_TO_CPU.get(info.processor_id as usize) {
                slot.store(n as u32, Ordering::Relaxed);
            }
            cpus.push(Cpu {
                id: n as CpuId,
                package: info.location.package,
            });
        }
        // The bootstrap processor first: it issues the global SEAMCALLs.
        cpus.sort_by_key(|c| (c.id != bsp, c.id));
        Ok(MpCpus { mp, cpus, bsp })
    }

    /// The bootstrap processor's number.
    pub fn bsp(&self) -> CpuId {
        self.bsp
    }

    fn known(&self, cpu: CpuId) -> bool {
        self.cpus.iter().any(|c| c.id == cpu)
    }
}

/// What an AP is handed by `run_on`.
extern "efiapi" fn run_one(arg: *mut c_void) {
    // SAFETY: `run_on` passes a pointer to its `&mut dyn FnMut()` and blocks until this AP is
    // done, so the pointer is valid and nothing else uses the closure meanwhile.
    let f = unsafe { &mut *arg.cast::<&mut dyn FnMut()>() };
    f();
}

/// A set of CPUs and the work for each, shared by the APs of one `run_on_each`.
struct Job<'a> {
    cpus: &'a [CpuId],
    f: &'a (dyn Fn(CpuId) + Sync),
}

/// What every AP is handed by `run_on_each`: its share if it is in the set.
extern "efiapi" fn run_each(arg: *mut c_void) {
    // SAFETY: `run_on_each` passes a pointer to its `Job` and waits for every AP before it
    // returns; `Job` is only read, and its closure is `Sync`.
    let job = unsafe { &*arg.cast::<Job<'_>>() };
    let me = who_am_i();
    if job.cpus.contains(&me) {
        (job.f)(me);
    }
}

/// WBINVD on the CPU this runs on.
fn wbinvd() {
    // SAFETY: WBINVD writes back and invalidates this CPU's caches; it touches no memory the
    // program owns and needs CPL 0, which UEFI runs at.
    unsafe { core::arch::asm!("wbinvd", options(nostack, preserves_flags)) };
}

extern "efiapi" fn wbinvd_here(_: *mut c_void) {
    wbinvd();
}

impl Cpus for MpCpus {
    fn cpus(&self) -> Vec<Cpu> {
        self.cpus.clone()
    }

    fn run_on(&self, cpu: CpuId, f: &mut dyn FnMut()) -> Result<(), CpuUnavailable> {
        if !self.known(cpu) {
            return Err(CpuUnavailable { cpu });
        }
        if cpu == self.bsp {
            f();
            return Ok(());
        }
        let mut f = f;
        let arg = (&mut f as *mut &mut dyn FnMut()).cast::<c_void>();
        self.mp
            .startup_this_ap(cpu as usize, run_one, arg, None, None)
            .map_err(|_| CpuUnavailable { cpu })
    }

    fn run_on_each(
        &self,
        cpus: &[CpuId],
        f: &(dyn Fn(CpuId) + Sync),
    ) -> Result<(), CpuUnavailable> {
        if let Some(&cpu) = cpus.iter().find(|&&c| !self.known(c)) {
            return Err(CpuUnavailable { cpu });
        }
        let job = Job { cpus, f };
        let arg = (&job as *const Job<'_>).cast_mut().cast::<c_void>();
        let aps = cpus.iter().any(|&c| c != self.bsp);
        // SAFETY: an event with no notification function, only waited on below.
        let event = aps
            .then(|| unsafe {
                boot::create_event(EventType::empty(), Tpl::APPLICATION, None, None)
            })
            .transpose()
            .map_err(|_| CpuUnavailable { cpu: self.bsp })?;
        if let Some(e) = event.as_ref() {
            // SAFETY: the clone is handed to the firmware, which signals it when every AP is
            // done; this function keeps the original to wait on and closes it afterwards.
            let signal = unsafe { e.unsafe_clone() };
            let started = self
                .mp
                .startup_all_aps(false, run_each, arg, Some(signal), None)
                .is_ok();
            if !started {
                if let Some(e) = event {
                    let _ = boot::close_event(e);
                }
                return Err(CpuUnavailable {
                    cpu: cpus.iter().copied().find(|&c| c != self.bsp).unwrap_or(0),
                });
            }
        }
        if cpus.contains(&self.bsp) {
            f(self.bsp);
        }
        if let Some(e) = event {
            // SAFETY: as above; the event stays valid until closed here.
            let mut wait = [unsafe { e.unsafe_clone() }];
            let _ = boot::wait_for_event(&mut wait);
            let _ = boot::close_event(e);
        }
        Ok(())
    }

    fn flush_caches(&self) {
        let aps = self.cpus.iter().any(|c| c.id != self.bsp);
        if aps {
            let _ = self
                .mp
                .startup_all_aps(false, wbinvd_here, core::ptr::null_mut(), None, None);
        }
        wbinvd();
    }
}

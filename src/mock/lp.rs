//! Which simulated logical processor the current thread is running on.
//!
//! [`crate::init::Cpus::run_on`] on a [`super::MockModule`] enters an LP for the duration of
//! the closure; calls made outside any `run_on` execute on LP 0 (the boot CPU). With `std` the
//! context is per thread, so concurrent `run_on`s on different threads see their own LPs.
//! A host that runs the calls on CPUs of its own (a kernel's per-CPU work, UEFI MP Services)
//! gives the mock a function that answers "which CPU am I" instead
//! ([`super::MockModule::with_lp_source`]); that answer wins over the context.

#[cfg(feature = "std")]
mod imp {
    use core::cell::Cell;
    use core::sync::atomic::{AtomicUsize, Ordering};

    std::thread_local! {
        static CURRENT: Cell<Option<(usize, u32)>> = const { Cell::new(None) };
    }

    static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

    #[derive(Debug)]
    pub(crate) struct LpContext {
        id: usize,
    }

    /// What to put back when a `run_on` ends.
    pub(crate) struct Saved(Option<(usize, u32)>);

    impl LpContext {
        pub(crate) fn new() -> Self {
            LpContext {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            }
        }

        pub(crate) fn current(&self) -> Option<u32> {
            CURRENT.with(|c| c.get().filter(|(id, _)| *id == self.id).map(|(_, lp)| lp))
        }

        pub(crate) fn enter(&self, lp: u32) -> Saved {
            Saved(CURRENT.with(|c| c.replace(Some((self.id, lp)))))
        }

        pub(crate) fn leave(&self, saved: Saved) {
            CURRENT.with(|c| c.set(saved.0));
        }
    }
}

#[cfg(not(feature = "std"))]
mod imp {
    use core::sync::atomic::{AtomicU32, Ordering};

    /// No LP entered.
    const NONE: u32 = u32::MAX;

    /// Without threads to key it on, the context is the LP of the innermost `run_on` on this
    /// module: right when one CPU at a time calls in. A host whose CPUs call concurrently
    /// tells the mock who calls ([`super::super::MockModule::with_lp_source`]).
    #[derive(Debug)]
    pub(crate) struct LpContext {
        current: AtomicU32,
    }

    /// What to put back when a `run_on` ends.
    pub(crate) struct Saved(u32);

    impl LpContext {
        pub(crate) fn new() -> Self {
            LpContext {
                current: AtomicU32::new(NONE),
            }
        }

        pub(crate) fn current(&self) -> Option<u32> {
            let lp = self.current.load(Ordering::Relaxed);
            (lp != NONE).then_some(lp)
        }

        pub(crate) fn enter(&self, lp: u32) -> Saved {
            Saved(self.current.swap(lp, Ordering::Relaxed))
        }

        pub(crate) fn leave(&self, saved: Saved) {
            self.current.store(saved.0, Ordering::Relaxed);
        }
    }
}

pub(crate) use imp::LpContext;

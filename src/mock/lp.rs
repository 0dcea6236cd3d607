//! Which simulated logical processor the current thread is running on.
//!
//! [`crate::init::Cpus::run_on`] on a [`super::MockModule`] enters an LP for the duration of
//! the closure; calls made outside any `run_on` execute on LP 0 (the boot CPU). With `std` the
//! context is per thread, so concurrent `run_on`s on different threads see their own LPs.

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
    use core::cell::Cell;

    #[derive(Debug)]
    pub(crate) struct LpContext {
        current: Cell<Option<u32>>,
    }

    /// What to put back when a `run_on` ends.
    pub(crate) struct Saved(Option<u32>);

    impl LpContext {
        pub(crate) fn new() -> Self {
            LpContext {
                current: Cell::new(None),
            }
        }

        pub(crate) fn current(&self) -> Option<u32> {
            self.current.get()
        }

        pub(crate) fn enter(&self, lp: u32) -> Saved {
            Saved(self.current.replace(Some(lp)))
        }

        pub(crate) fn leave(&self, saved: Saved) {
            self.current.set(saved.0);
        }
    }
}

pub(crate) use imp::LpContext;

//! The boundary's machinery: the entry-point wrapper (error reporting, and `catch_unwind` with
//! `std`), checks of every pointer and length C hands in, handles, and the sizes-asked-first
//! output protocol.

use alloc::boxed::Box;
use core::alloc::Layout;
use core::mem::{align_of, size_of};
use core::ptr::addr_of_mut;

use crate::error::{
    ArgProblem, Detail, Fail, TDMR_ERR_BUFFER_TOO_SMALL, TDMR_ERR_INVALID_HANDLE,
    TDMR_ERR_MISALIGNED, TDMR_ERR_NO_MEMORY, TDMR_ERR_NULL_POINTER, TDMR_ERR_TOO_LARGE, TDMR_OK,
    tdmr_code, tdmr_error,
};

/// Runs one entry point's body: reports its outcome through `err` (when not NULL) and returns
/// its code. With `std`, a panic in the body (a bug) becomes `TDMR_ERR_INTERNAL`.
pub(crate) fn entry(err: *mut tdmr_error, body: impl FnOnce() -> Result<(), Fail>) -> tdmr_code {
    if !err.is_null() && !err.is_aligned() {
        // Nowhere to write the details: the code alone says it.
        return TDMR_ERR_MISALIGNED;
    }
    let outcome = run(body);
    if !err.is_null() {
        match &outcome {
            // SAFETY: `err` is non-null and aligned (checked above), and the header requires it
            // to point at a writable `tdmr_error` that no other call uses meanwhile. Only
            // fields are written through raw pointers: no reference to caller memory is made.
            Ok(()) => unsafe {
                addr_of_mut!((*err).code).write(TDMR_OK as i32);
                addr_of_mut!((*err).truncated).write(0);
                addr_of_mut!((*err).tdx_status).write(0);
                addr_of_mut!((*err).message).cast::<u8>().write(0);
            },
            // SAFETY: as above.
            Err(fail) => unsafe { err.write(tdmr_error::from_outcome(Err(fail))) },
        }
    }
    match outcome {
        Ok(()) => TDMR_OK,
        Err(fail) => fail.code,
    }
}

#[cfg(feature = "std")]
fn run(body: impl FnOnce() -> Result<(), Fail>) -> Result<(), Fail> {
    // The objects a body touches are either its own or the gate's atomics, which stay
    // consistent at every step; the caller is told to free the handles involved anyway.
    std::panic::catch_unwind(core::panic::AssertUnwindSafe(body)).unwrap_or(Err(Fail::new(
        crate::error::TDMR_ERR_INTERNAL,
        Detail::Panic,
    )))
}

#[cfg(not(feature = "std"))]
fn run(body: impl FnOnce() -> Result<(), Fail>) -> Result<(), Fail> {
    // No unwinding without std: a panic ends in the host's tdmr_host_panic (see runtime.rs).
    body()
}

/// Bytes of `count` values of `T` at `addr`, refusing what overflows the address space (or
/// `isize::MAX`, the most a Rust slice may span).
fn span<T>(addr: usize, count: usize, name: &'static str) -> Result<usize, Fail> {
    let too_large = || {
        Fail::arg(
            TDMR_ERR_TOO_LARGE,
            name,
            ArgProblem::TooLarge {
                count,
                elem: size_of::<T>(),
            },
        )
    };
    let bytes = count.checked_mul(size_of::<T>()).ok_or_else(too_large)?;
    if bytes > isize::MAX as usize || addr.checked_add(bytes).is_none() {
        return Err(too_large());
    }
    Ok(bytes)
}

fn misaligned(name: &'static str, addr: usize, align: usize) -> Fail {
    Fail::arg(
        TDMR_ERR_MISALIGNED,
        name,
        ArgProblem::Misaligned { addr, align },
    )
}

/// The input array `[ptr, ptr + len)`, copied out of caller memory. NULL is allowed when
/// `len` is 0.
///
/// # Safety
///
/// When `len > 0`, `ptr` points at `len` initialised values of `T` that nothing writes during
/// the call. `T` is a `repr(C)` type of plain integers, valid for every bit pattern.
pub(crate) unsafe fn input<T: Copy>(
    ptr: *const T,
    len: usize,
    name: &'static str,
) -> Result<alloc::vec::Vec<T>, Fail> {
    if len == 0 {
        return Ok(alloc::vec::Vec::new());
    }
    if ptr.is_null() {
        return Err(Fail::arg(
            TDMR_ERR_NULL_POINTER,
            name,
            ArgProblem::NullWithLength(len),
        ));
    }
    if !ptr.is_aligned() {
        return Err(misaligned(name, ptr as usize, align_of::<T>()));
    }
    span::<T>(ptr as usize, len, name)?;
    // SAFETY: non-null, aligned, `len * size_of::<T>()` bytes fit the address space and
    // isize::MAX (checked above); the caller promises the values are initialised and stable.
    let slice = unsafe { core::slice::from_raw_parts(ptr, len) };
    Ok(slice.to_vec())
}

/// One input value at `ptr`, or `None` when `ptr` is NULL (the caller's "use the defaults").
///
/// # Safety
///
/// A non-null `ptr` points at an initialised `T` that nothing writes during the call; `T` is
/// valid for every bit pattern.
pub(crate) unsafe fn input_opt<T: Copy>(
    ptr: *const T,
    name: &'static str,
) -> Result<Option<T>, Fail> {
    if ptr.is_null() {
        return Ok(None);
    }
    if !ptr.is_aligned() {
        return Err(misaligned(name, ptr as usize, align_of::<T>()));
    }
    // SAFETY: non-null and aligned (checked); the caller promises an initialised value.
    Ok(Some(unsafe { ptr.read() }))
}

/// A checked out-parameter: non-null and aligned. Written only through [`Out::write`].
pub(crate) struct Out<T>(*mut T);

impl<T> Out<T> {
    /// # Safety
    ///
    /// A non-null `ptr` points at memory writable as a `T` for the call's duration.
    pub(crate) unsafe fn new(ptr: *mut T, name: &'static str) -> Result<Self, Fail> {
        if ptr.is_null() {
            return Err(Fail::arg(TDMR_ERR_NULL_POINTER, name, ArgProblem::Null));
        }
        if !ptr.is_aligned() {
            return Err(misaligned(name, ptr as usize, align_of::<T>()));
        }
        Ok(Out(ptr))
    }

    /// An optional out-parameter: `None` when NULL.
    ///
    /// # Safety
    ///
    /// As [`Out::new`].
    pub(crate) unsafe fn new_opt(ptr: *mut T, name: &'static str) -> Result<Option<Self>, Fail> {
        if ptr.is_null() {
            return Ok(None);
        }
        // SAFETY: forwarded.
        unsafe { Out::new(ptr, name) }.map(Some)
    }

    pub(crate) fn write(self, value: T) {
        // SAFETY: non-null, aligned and writable (checked or promised in `new`). `write` does
        // not read or drop the old contents, which are the caller's and maybe uninitialised.
        unsafe { self.0.write(value) }
    }
}

/// A checked output array: `capacity` slots of `T` at `ptr`, aligned to `align`.
pub(crate) struct OutArray<T> {
    ptr: *mut T,
    capacity: usize,
    count: Out<usize>,
    name: &'static str,
}

impl<T: Copy> OutArray<T> {
    /// The sizes-asked-first protocol: `count` must be valid; `ptr` may be NULL only with
    /// `capacity` 0 (a size query).
    ///
    /// # Safety
    ///
    /// A non-null `ptr` points at `capacity` writable slots of `T`; `count` at a writable
    /// `size_t`.
    pub(crate) unsafe fn new(
        ptr: *mut T,
        capacity: usize,
        align: usize,
        count: *mut usize,
        name: &'static str,
        count_name: &'static str,
    ) -> Result<Self, Fail> {
        // SAFETY: forwarded.
        let count = unsafe { Out::new(count, count_name) }?;
        if ptr.is_null() {
            if capacity != 0 {
                return Err(Fail::arg(
                    TDMR_ERR_NULL_POINTER,
                    name,
                    ArgProblem::NullWithLength(capacity),
                ));
            }
        } else {
            let align = align.max(align_of::<T>());
            if !(ptr as usize).is_multiple_of(align) {
                return Err(misaligned(name, ptr as usize, align));
            }
            span::<T>(ptr as usize, capacity, name)?;
        }
        Ok(OutArray {
            ptr,
            capacity,
            count,
            name,
        })
    }

    /// Writes `*count = items.len()`, then the items if they fit; nothing but the count when
    /// they do not (`TDMR_ERR_BUFFER_TOO_SMALL`) or when this is a size query.
    pub(crate) fn write(self, items: &[T]) -> Result<(), Fail> {
        let needed = items.len();
        self.count.write(needed);
        if self.ptr.is_null() {
            return Ok(());
        }
        if self.capacity < needed {
            return Err(Fail::arg(
                TDMR_ERR_BUFFER_TOO_SMALL,
                self.name,
                ArgProblem::Short {
                    needed,
                    given: self.capacity,
                },
            ));
        }
        // SAFETY: `ptr` holds `capacity >= needed` writable, aligned slots (checked in `new`
        // and promised by the caller); `items` is our own memory, so the two do not overlap.
        unsafe { core::ptr::copy_nonoverlapping(items.as_ptr(), self.ptr, needed) };
        Ok(())
    }
}

/// A handle type: `repr(C)` with its `magic` word first, allocated by this library.
pub(crate) trait Handle: Sized {
    /// The word at offset 0 of a live handle of this kind.
    const MAGIC: u64;
    /// Its name in messages.
    const KIND: &'static str;
}

/// The word a freed handle's magic is overwritten with.
pub(crate) const FREED: u64 = 0xdead_dead_dead_dead;

/// The live handle at `ptr`.
///
/// # Safety
///
/// A non-null, aligned `ptr` points at memory this library allocated for a handle (of any
/// kind) that is still allocated, or at least 8 readable bytes; the header forbids anything
/// else. The kind is checked by its magic word.
pub(crate) unsafe fn handle<'a, H: Handle>(
    ptr: *const H,
    name: &'static str,
) -> Result<&'a H, Fail> {
    if ptr.is_null() {
        return Err(Fail::arg(TDMR_ERR_NULL_POINTER, name, ArgProblem::Null));
    }
    let not_a_handle = || {
        Fail::arg(
            TDMR_ERR_INVALID_HANDLE,
            name,
            ArgProblem::NotAHandle(H::KIND),
        )
    };
    if !ptr.is_aligned() {
        return Err(not_a_handle());
    }
    // SAFETY: every handle is `repr(C)` with a `u64` magic first, and the caller promises
    // `ptr` is one (so 8 readable, aligned bytes).
    let magic = unsafe { ptr.cast::<u64>().read() };
    if magic != H::MAGIC {
        return Err(not_a_handle());
    }
    // SAFETY: the magic says it is a live `H` this library made; nothing mutates a handle
    // through a shared path but its atomics.
    Ok(unsafe { &*ptr })
}

/// Moves `value` to the heap and returns the owning pointer, or `TDMR_ERR_NO_MEMORY`.
pub(crate) fn try_box<T>(value: T) -> Result<*mut T, Fail> {
    let layout = Layout::new::<T>();
    if layout.size() == 0 {
        return Ok(Box::into_raw(Box::new(value)));
    }
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { alloc::alloc::alloc(layout) }.cast::<T>();
    if p.is_null() {
        return Err(Fail::new(
            TDMR_ERR_NO_MEMORY,
            Detail::NoMemory(layout.size()),
        ));
    }
    // SAFETY: `p` is a fresh allocation of `Layout::new::<T>()`: aligned, writable, unaliased.
    unsafe { p.write(value) };
    Ok(p)
}

/// Takes back a handle made by [`try_box`], or `None` for NULL and for what is not a live
/// handle of kind `H` (the free functions ignore those). Marks it freed.
///
/// # Safety
///
/// As [`handle`]; and no other call uses the handle meanwhile or afterwards.
pub(crate) unsafe fn take<H: Handle>(ptr: *mut H) -> Option<Box<H>> {
    // SAFETY: forwarded.
    unsafe { handle(ptr.cast_const(), "handle") }.ok()?;
    // SAFETY: a live handle of kind `H`, allocated by `try_box` with the global allocator and
    // `Layout::new::<H>()`, which is what `Box::from_raw` needs; the caller gives up its use.
    // The magic is cleared first so that a second free of the same pointer is refused for as
    // long as the memory stays mapped.
    unsafe {
        ptr.cast::<u64>().write(FREED);
        Some(Box::from_raw(ptr))
    }
}

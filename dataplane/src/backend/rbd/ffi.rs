//! The part of librados' and librbd's C API the RBD backend uses, loaded at run time.
//!
//! Why our own FFI: the maintained crates either generate bindings at build time against
//! the installed headers (`rbd-sys`/`rados-sys` need librbd-dev and libclang to build), no
//! longer build (`ceph-rbd`), or need Ceph 17 or later (`async-ceph`). The gateway needs
//! about twenty functions, so they are declared here once, each with its C signature as
//! `rbd/librbd.h` and `rados/librados.h` of Ceph 16.2 (Pacific, Debian 12's librbd-dev
//! 16.2.15) spell it, and looked up with `dlopen`/`dlsym` the first time an RBD storage
//! is opened. The data plane therefore builds and runs on a machine without Ceph; only
//! a configured RBD storage needs the shared libraries, and without them it is refused with
//! an error naming the package to install ([`LIBRBD_PACKAGE`]).
//!
//! The libraries stay loaded for the life of the process (never `dlclose`d): librbd keeps
//! threads whose code lives in them.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::OnceLock;

/// The Debian package that ships `librbd.so.1` (and pulls in `librados2`).
pub const LIBRBD_PACKAGE: &str = "librbd1";

/// The shared objects, by soname.
const LIBRADOS_SONAME: &CStr = c"librados.so.2";
const LIBRBD_SONAME: &CStr = c"librbd.so.1";

/// `typedef void *rados_t;` (librados.h)
pub type RadosT = *mut c_void;
/// `typedef void *rados_ioctx_t;` (librados.h)
pub type RadosIoctxT = *mut c_void;
/// `typedef void *rbd_image_t;` (librbd.h)
pub type RbdImageT = *mut c_void;
/// `typedef void *rbd_completion_t;` (librbd.h)
pub type RbdCompletionT = *mut c_void;
/// `typedef void (*rbd_callback_t)(rbd_completion_t cb, void *arg);` (librbd.h)
pub type RbdCallbackT = unsafe extern "C" fn(cb: RbdCompletionT, arg: *mut c_void);
/// `typedef void (*rbd_update_callback_t)(void *arg);` (librbd.h): the image's header changed
/// (resize, features, snapshots), called on a librbd thread.
pub type RbdUpdateCallbackT = unsafe extern "C" fn(arg: *mut c_void);
/// The callback of `rbd_diff_iterate2`: `int (*cb)(uint64_t, size_t, int, void *)`.
pub type RbdDiffCallbackT =
    unsafe extern "C" fn(offset: u64, len: usize, exists: c_int, arg: *mut c_void) -> c_int;

/// `RBD_LOCK_MODE_EXCLUSIVE = 0` of `rbd_lock_mode_t` (librbd.h).
pub const RBD_LOCK_MODE_EXCLUSIVE: c_int = 0;
/// `#define RBD_FEATURE_EXCLUSIVE_LOCK (1ULL<<2)` (rbd/features.h).
pub const RBD_FEATURE_EXCLUSIVE_LOCK: u64 = 1 << 2;
/// `LIBRADOS_OP_FLAG_FADVISE_DONTNEED = 0x20` is not used: the gateway passes no op flags.
pub const OP_FLAGS_NONE: c_int = 0;
/// Ceph's `EBLOCKLISTED`, which `include/compat.h` defines as `ESHUTDOWN`: this client was
/// blocklisted (another client broke its lock).
pub const EBLOCKLISTED: c_int = libc::ESHUTDOWN;

/// Every function the backend calls, resolved once.
#[derive(Debug)]
pub struct Lib {
    /// `int rados_create(rados_t *cluster, const char * const id);`
    pub rados_create: unsafe extern "C" fn(*mut RadosT, *const c_char) -> c_int,
    /// `int rados_conf_read_file(rados_t cluster, const char *path);`
    pub rados_conf_read_file: unsafe extern "C" fn(RadosT, *const c_char) -> c_int,
    /// `int rados_conf_set(rados_t cluster, const char *option, const char *value);`
    pub rados_conf_set: unsafe extern "C" fn(RadosT, *const c_char, *const c_char) -> c_int,
    /// `int rados_connect(rados_t cluster);`
    pub rados_connect: unsafe extern "C" fn(RadosT) -> c_int,
    /// `void rados_shutdown(rados_t cluster);`
    pub rados_shutdown: unsafe extern "C" fn(RadosT),
    /// `int rados_ioctx_create(rados_t cluster, const char *pool_name, rados_ioctx_t *ioctx);`
    pub rados_ioctx_create: unsafe extern "C" fn(RadosT, *const c_char, *mut RadosIoctxT) -> c_int,
    /// `void rados_ioctx_destroy(rados_ioctx_t io);`
    pub rados_ioctx_destroy: unsafe extern "C" fn(RadosIoctxT),
    /// `void rados_ioctx_set_namespace(rados_ioctx_t io, const char *nspace);`
    pub rados_ioctx_set_namespace: unsafe extern "C" fn(RadosIoctxT, *const c_char),
    /// `void rbd_version(int *major, int *minor, int *extra);`
    pub rbd_version: unsafe extern "C" fn(*mut c_int, *mut c_int, *mut c_int),
    /// `int rbd_open(rados_ioctx_t io, const char *name, rbd_image_t *image,
    ///               const char *snap_name);`
    pub rbd_open:
        unsafe extern "C" fn(RadosIoctxT, *const c_char, *mut RbdImageT, *const c_char) -> c_int,
    /// `int rbd_close(rbd_image_t image);`
    pub rbd_close: unsafe extern "C" fn(RbdImageT) -> c_int,
    /// `int rbd_get_size(rbd_image_t image, uint64_t *size);`
    pub rbd_get_size: unsafe extern "C" fn(RbdImageT, *mut u64) -> c_int,
    /// `int rbd_get_features(rbd_image_t image, uint64_t *features);`
    pub rbd_get_features: unsafe extern "C" fn(RbdImageT, *mut u64) -> c_int,
    /// `int rbd_lock_acquire(rbd_image_t image, rbd_lock_mode_t lock_mode);`
    pub rbd_lock_acquire: unsafe extern "C" fn(RbdImageT, c_int) -> c_int,
    /// `int rbd_lock_release(rbd_image_t image);`
    pub rbd_lock_release: unsafe extern "C" fn(RbdImageT) -> c_int,
    /// `int rbd_is_exclusive_lock_owner(rbd_image_t image, int *is_owner);`
    pub rbd_is_exclusive_lock_owner: unsafe extern "C" fn(RbdImageT, *mut c_int) -> c_int,
    /// `int rbd_aio_create_completion(void *cb_arg, rbd_callback_t complete_cb,
    ///                                rbd_completion_t *c);`
    pub rbd_aio_create_completion:
        unsafe extern "C" fn(*mut c_void, RbdCallbackT, *mut RbdCompletionT) -> c_int,
    /// `ssize_t rbd_aio_get_return_value(rbd_completion_t c);`
    pub rbd_aio_get_return_value: unsafe extern "C" fn(RbdCompletionT) -> isize,
    /// `void rbd_aio_release(rbd_completion_t c);`
    pub rbd_aio_release: unsafe extern "C" fn(RbdCompletionT),
    /// `int rbd_aio_read2(rbd_image_t image, uint64_t off, size_t len, char *buf,
    ///                    rbd_completion_t c, int op_flags);`
    pub rbd_aio_read2:
        unsafe extern "C" fn(RbdImageT, u64, usize, *mut c_char, RbdCompletionT, c_int) -> c_int,
    /// `int rbd_aio_write2(rbd_image_t image, uint64_t off, size_t len, const char *buf,
    ///                     rbd_completion_t c, int op_flags);`
    pub rbd_aio_write2:
        unsafe extern "C" fn(RbdImageT, u64, usize, *const c_char, RbdCompletionT, c_int) -> c_int,
    /// `int rbd_aio_flush(rbd_image_t image, rbd_completion_t c);`
    pub rbd_aio_flush: unsafe extern "C" fn(RbdImageT, RbdCompletionT) -> c_int,
    /// `int rbd_aio_discard(rbd_image_t image, uint64_t off, uint64_t len,
    ///                      rbd_completion_t c);`
    pub rbd_aio_discard: unsafe extern "C" fn(RbdImageT, u64, u64, RbdCompletionT) -> c_int,
    /// `int rbd_aio_write_zeroes(rbd_image_t image, uint64_t off, size_t len,
    ///                           rbd_completion_t c, int zero_flags, int op_flags);`
    pub rbd_aio_write_zeroes:
        unsafe extern "C" fn(RbdImageT, u64, usize, RbdCompletionT, c_int, c_int) -> c_int,
    /// `int rbd_aio_writesame(rbd_image_t image, uint64_t off, size_t len, const char *buf,
    ///                        size_t data_len, rbd_completion_t c, int op_flags);`
    /// (librbd 12 and later; `None` when the library lacks it: WRITE SAME is then written by
    /// the logical unit block by block.)
    pub rbd_aio_writesame: Option<
        unsafe extern "C" fn(
            RbdImageT,
            u64,
            usize,
            *const c_char,
            usize,
            RbdCompletionT,
            c_int,
        ) -> c_int,
    >,
    /// `ssize_t rbd_aio_compare_and_write(rbd_image_t image, uint64_t off, size_t len,
    ///                                    const char *cmp_buf, const char *buf,
    ///                                    rbd_completion_t c, uint64_t *mismatch_off,
    ///                                    int op_flags);`
    /// (librbd 12 and later; `None` when the library lacks it: COMPARE AND WRITE is then
    /// done by the logical unit, read, compare and write under this gateway's lock.)
    pub rbd_aio_compare_and_write: Option<
        unsafe extern "C" fn(
            RbdImageT,
            u64,
            usize,
            *const c_char,
            *const c_char,
            RbdCompletionT,
            *mut u64,
            c_int,
        ) -> isize,
    >,
    /// `int rbd_update_watch(rbd_image_t image, uint64_t *handle,
    ///                       rbd_update_callback_t watch_cb, void *arg);`
    /// (`None` when missing: a resize by another client is then not noticed.)
    pub rbd_update_watch:
        Option<unsafe extern "C" fn(RbdImageT, *mut u64, RbdUpdateCallbackT, *mut c_void) -> c_int>,
    /// `int rbd_update_unwatch(rbd_image_t image, uint64_t handle);`
    pub rbd_update_unwatch: Option<unsafe extern "C" fn(RbdImageT, u64) -> c_int>,
    /// `int rbd_diff_iterate2(rbd_image_t image, const char *fromsnapname, uint64_t ofs,
    ///                        uint64_t len, uint8_t include_parent, uint8_t whole_object,
    ///                        int (*cb)(uint64_t, size_t, int, void *), void *arg);`
    pub rbd_diff_iterate2: unsafe extern "C" fn(
        RbdImageT,
        *const c_char,
        u64,
        u64,
        u8,
        u8,
        RbdDiffCallbackT,
        *mut c_void,
    ) -> c_int,
}

/// The last `dlerror()` message, or a generic one.
fn dl_error() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string owned by libc that stays
    // valid until the next dl* call on this thread; it is copied at once.
    let p = unsafe { libc::dlerror() };
    if p.is_null() {
        "unknown dlopen error".to_owned()
    } else {
        // SAFETY: non-null, NUL-terminated (see above).
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

fn open(soname: &CStr) -> Result<*mut c_void, String> {
    // SAFETY: the name is a valid C string; RTLD_NOW resolves every symbol now, so a
    // broken install fails here and not at the first I/O.
    let h = unsafe { libc::dlopen(soname.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if h.is_null() {
        return Err(format!(
            "cannot load {}: {} (install the Debian package {LIBRBD_PACKAGE})",
            soname.to_string_lossy(),
            dl_error()
        ));
    }
    Ok(h)
}

/// [`sym`] for a function the backend can do without: `None` (logged) when it is missing.
///
/// # Safety
/// As [`sym`].
unsafe fn optional_sym<F: Copy>(handle: *mut c_void, name: &str) -> Option<F> {
    // SAFETY: the caller's contract is sym's.
    match unsafe { sym(handle, name) } {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(error = %e, "librbd lacks an optional function; the data plane does without it");
            None
        }
    }
}

/// Looks `name` up in `handle` and reinterprets it as the function pointer type `F`.
///
/// # Safety
/// `F` must be an `extern "C"` function pointer type matching the symbol's C signature.
unsafe fn sym<F: Copy>(handle: *mut c_void, name: &str) -> Result<F, String> {
    let c = CString::new(name).map_err(|_| format!("bad symbol name {name}"))?;
    // SAFETY: handle came from a successful dlopen and is never closed.
    let p = unsafe { libc::dlsym(handle, c.as_ptr()) };
    if p.is_null() {
        return Err(format!(
            "{name} missing from librados/librbd: {} (Ceph 16 or later is needed; install {LIBRBD_PACKAGE})",
            dl_error()
        ));
    }
    debug_assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
    // SAFETY: the caller promises F is a function pointer type of the symbol's signature;
    // function pointers and data pointers have the same size and representation on the
    // platforms librbd supports.
    Ok(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&p) })
}

impl Lib {
    fn load() -> Result<Self, String> {
        let rados = open(LIBRADOS_SONAME)?;
        let rbd = open(LIBRBD_SONAME)?;
        // SAFETY: every field's type is the C signature documented on it, copied from the
        // Ceph 16 headers.
        unsafe {
            Ok(Self {
                rados_create: sym(rados, "rados_create")?,
                rados_conf_read_file: sym(rados, "rados_conf_read_file")?,
                rados_conf_set: sym(rados, "rados_conf_set")?,
                rados_connect: sym(rados, "rados_connect")?,
                rados_shutdown: sym(rados, "rados_shutdown")?,
                rados_ioctx_create: sym(rados, "rados_ioctx_create")?,
                rados_ioctx_destroy: sym(rados, "rados_ioctx_destroy")?,
                rados_ioctx_set_namespace: sym(rados, "rados_ioctx_set_namespace")?,
                rbd_version: sym(rbd, "rbd_version")?,
                rbd_open: sym(rbd, "rbd_open")?,
                rbd_close: sym(rbd, "rbd_close")?,
                rbd_get_size: sym(rbd, "rbd_get_size")?,
                rbd_get_features: sym(rbd, "rbd_get_features")?,
                rbd_lock_acquire: sym(rbd, "rbd_lock_acquire")?,
                rbd_lock_release: sym(rbd, "rbd_lock_release")?,
                rbd_is_exclusive_lock_owner: sym(rbd, "rbd_is_exclusive_lock_owner")?,
                rbd_aio_create_completion: sym(rbd, "rbd_aio_create_completion")?,
                rbd_aio_get_return_value: sym(rbd, "rbd_aio_get_return_value")?,
                rbd_aio_release: sym(rbd, "rbd_aio_release")?,
                rbd_aio_read2: sym(rbd, "rbd_aio_read2")?,
                rbd_aio_write2: sym(rbd, "rbd_aio_write2")?,
                rbd_aio_flush: sym(rbd, "rbd_aio_flush")?,
                rbd_aio_discard: sym(rbd, "rbd_aio_discard")?,
                rbd_aio_write_zeroes: sym(rbd, "rbd_aio_write_zeroes")?,
                rbd_aio_writesame: optional_sym(rbd, "rbd_aio_writesame"),
                rbd_aio_compare_and_write: optional_sym(rbd, "rbd_aio_compare_and_write"),
                rbd_update_watch: optional_sym(rbd, "rbd_update_watch"),
                rbd_update_unwatch: optional_sym(rbd, "rbd_update_unwatch"),
                rbd_diff_iterate2: sym(rbd, "rbd_diff_iterate2")?,
            })
        }
    }

    /// librbd's version as `major.minor.extra`.
    pub fn version(&self) -> String {
        let (mut a, mut b, mut c) = (0, 0, 0);
        // SAFETY: rbd_version writes three ints through valid pointers to locals.
        unsafe { (self.rbd_version)(&mut a, &mut b, &mut c) };
        format!("{a}.{b}.{c}")
    }
}

/// The loaded libraries, or why they could not be loaded (the message names the package).
pub fn lib() -> Result<&'static Lib, String> {
    static LIB: OnceLock<Result<Lib, String>> = OnceLock::new();
    LIB.get_or_init(Lib::load).as_ref().map_err(Clone::clone)
}

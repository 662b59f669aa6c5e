//! Small libbpf helpers shared by our BPF programs' loaders (`io::xdp::program` for the XDP
//! steering program, `io::fault_bpf` for the tc fault program).

use std::ffi::{c_int, c_void, CString};
use std::io;
use std::ptr::NonNull;

use bytemuck::Pod;
use libxdp_sys as sys;

/// libbpf returns `-errno` on failure.
pub(crate) fn neg_errno(ret: c_int) -> io::Result<c_int> {
    if ret < 0 {
        Err(io::Error::from_raw_os_error(-ret))
    } else {
        Ok(ret)
    }
}

pub(crate) fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in static names")
}

/// Opens (parses, does not load) an embedded object file. Needs no privilege.
pub(crate) fn open_object(
    name: &str,
    object: &'static [u8],
) -> io::Result<NonNull<sys::bpf_object>> {
    let cname = cstr(name);
    // SAFETY: all-zero is the documented "no options" state of this C struct; `sz` tells libbpf
    // which fields we know about.
    let mut opts: sys::bpf_object_open_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<sys::bpf_object_open_opts>();
    opts.object_name = cname.as_ptr();
    // No BPF token (an empty path prevents it). Otherwise `bpf_object__load` looks for one by
    // opening /sys/fs/bpf, without O_CLOEXEC: a child another thread forks meanwhile inherits
    // that descriptor (tests/api_cloexec.rs caught it, about 1 run in 14). The stack runs with
    // CAP_BPF and never loads through a delegated token.
    opts.bpf_token_path = c"".as_ptr();
    // SAFETY: the buffer is 'static and outlives the object; libbpf copies what it keeps.
    // `opts` and `cname` are valid for the call.
    let obj = unsafe { sys::bpf_object__open_mem(object.as_ptr().cast(), object.len(), &opts) };
    NonNull::new(obj).ok_or_else(io::Error::last_os_error)
}

/// Checks that each named map's value size in the object matches its Rust mirror, so a layout
/// drift between C and Rust fails loudly instead of corrupting counters.
pub(crate) fn check_layout(
    obj: NonNull<sys::bpf_object>,
    file: &str,
    expect: &[(&str, usize)],
) -> io::Result<()> {
    for &(name, size) in expect {
        let cname = cstr(name);
        // SAFETY: `obj` is a valid open object; the name is a valid C string for the call.
        let map = unsafe { sys::bpf_object__find_map_by_name(obj.as_ptr(), cname.as_ptr()) };
        if map.is_null() {
            return Err(io::Error::other(format!("map {name} missing from {file}")));
        }
        // SAFETY: `map` was just returned non-null by libbpf and belongs to `obj`.
        let got = unsafe { sys::bpf_map__value_size(map) } as usize;
        if got != size {
            return Err(io::Error::other(format!(
                "map {name}: value size {got} in {file}, {size} in Rust: update both sides"
            )));
        }
    }
    Ok(())
}

/// Number of possible CPUs: the slot count of a per-CPU map's value.
pub(crate) fn possible_cpus() -> io::Result<usize> {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let bad = || io::Error::other(format!("cannot parse possible CPUs {s:?}"));
    let mut max = 0usize;
    for part in s.trim().split(',') {
        let last = part.rsplit('-').next().ok_or_else(bad)?;
        max = max.max(last.parse::<usize>().map_err(|_| bad())?);
    }
    Ok(max + 1)
}

/// Sets `key` to `value` in map `fd`. The types must have the map's key and value sizes, which
/// the loaders check against the object (`check_layout`).
pub(crate) fn map_update<K: Pod, V: Pod>(fd: c_int, key: &K, value: &V) -> io::Result<()> {
    // SAFETY: key and value are plain data of the map's sizes, valid for the call.
    let ret = unsafe {
        sys::bpf_map_update_elem(
            fd,
            (key as *const K).cast(),
            (value as *const V).cast(),
            u64::from(sys::BPF_ANY),
        )
    };
    neg_errno(ret).map(|_| ())
}

/// Removes `key` from map `fd` (a key of the map's key size).
pub(crate) fn map_delete<K: Pod>(fd: c_int, key: &K) -> io::Result<()> {
    // SAFETY: the key is plain data of the map's key size, valid for the call.
    neg_errno(unsafe { sys::bpf_map_delete_elem(fd, (key as *const K).cast()) }).map(|_| ())
}

/// The `cpus` per-CPU values of `key` in the per-CPU array `fd`, whose value type is `T` (its
/// size a multiple of 8, as the kernel lays out per-CPU values).
pub(crate) fn map_lookup_percpu<T: Pod>(fd: c_int, key: u32, cpus: usize) -> io::Result<Vec<T>> {
    assert_eq!(
        std::mem::size_of::<T>() % 8,
        0,
        "per-CPU values are 8-byte aligned"
    );
    let mut per_cpu = vec![T::zeroed(); cpus];
    // SAFETY: a per-CPU array lookup writes value_size (a multiple of 8, asserted above) times
    // the number of possible CPUs, which is exactly the buffer's size.
    let ret = unsafe {
        sys::bpf_map_lookup_elem(
            fd,
            (&key as *const u32).cast(),
            per_cpu.as_mut_ptr().cast::<c_void>(),
        )
    };
    neg_errno(ret)?;
    Ok(per_cpu)
}

/// Opens and loads an embedded object after checking its map layouts; closes it on any error.
pub(crate) fn load_object(
    name: &str,
    object: &'static [u8],
    layouts: &[(&str, usize)],
) -> io::Result<NonNull<sys::bpf_object>> {
    let obj = open_object(name, object)?;
    let loaded = check_layout(obj, &format!("{name}.o"), layouts).and_then(|()| {
        // SAFETY: `obj` is a valid, not yet loaded object.
        neg_errno(unsafe { sys::bpf_object__load(obj.as_ptr()) })
    });
    match loaded {
        Ok(_) => Ok(obj),
        Err(e) => {
            // SAFETY: `obj` came from `bpf_object__open_mem` and is not used after this.
            unsafe { sys::bpf_object__close(obj.as_ptr()) };
            Err(e)
        }
    }
}

/// The fd of program `name` in the loaded object `obj`.
pub(crate) fn program_fd(obj: NonNull<sys::bpf_object>, name: &str) -> io::Result<c_int> {
    let cname = cstr(name);
    // SAFETY: `obj` is loaded; the name is valid for the call.
    let prog = unsafe { sys::bpf_object__find_program_by_name(obj.as_ptr(), cname.as_ptr()) };
    if prog.is_null() {
        return Err(io::Error::other(format!("program {name} missing")));
    }
    // SAFETY: `prog` is non-null and belongs to the loaded `obj`.
    neg_errno(unsafe { sys::bpf_program__fd(prog) })
}

/// The fd of map `name` in the loaded object `obj`.
pub(crate) fn map_fd(obj: NonNull<sys::bpf_object>, name: &str) -> io::Result<c_int> {
    let cname = cstr(name);
    // SAFETY: `obj` is loaded; the name is valid for the call.
    neg_errno(unsafe { sys::bpf_object__find_map_fd_by_name(obj.as_ptr(), cname.as_ptr()) })
}

/// Passes `result` through, closing `obj` first if it is an error (a loader giving up).
pub(crate) fn close_on_err<T>(
    obj: NonNull<sys::bpf_object>,
    result: io::Result<T>,
) -> io::Result<T> {
    if result.is_err() {
        // SAFETY: the caller gives up on `obj` with the error and does not use it afterwards.
        unsafe { sys::bpf_object__close(obj.as_ptr()) };
    }
    result
}

/// Verifies an embedded object parses and its map layouts match the Rust mirrors, without
/// loading it (no privilege needed).
pub(crate) fn check_object(
    name: &str,
    object: &'static [u8],
    layouts: &[(&str, usize)],
) -> io::Result<()> {
    let obj = open_object(name, object)?;
    let res = check_layout(obj, &format!("{name}.o"), layouts);
    // SAFETY: `obj` came from `bpf_object__open_mem` and is not used afterwards.
    unsafe { sys::bpf_object__close(obj.as_ptr()) };
    res
}

/// Attaches `prog_fd` to device `ifindex` (of the calling thread's namespace) at hook
/// `attach_type` through a BPF link with `flags`; closing the returned fd (or the process
/// ending) detaches it.
pub(crate) fn link_create(
    prog_fd: c_int,
    ifindex: u32,
    attach_type: sys::bpf_attach_type,
    flags: u32,
) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: all-zero is a valid value of this plain C struct (no relative program, any
    // revision); libbpf also requires the bytes it does not know to be zero.
    let mut opts: sys::bpf_link_create_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<sys::bpf_link_create_opts>();
    opts.flags = flags;
    // SAFETY: plain FFI call with a valid program fd; `opts` is valid for the call.
    let fd = unsafe { sys::bpf_link_create(prog_fd, ifindex as c_int, attach_type, &opts) };
    let fd = neg_errno(fd)?;
    // SAFETY: `fd` is a new link fd that nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

//! The one place with `unsafe` in the workspace: asking the kernel how many bytes written to
//! a TCP socket its peer has not acknowledged yet (`SIOCOUTQ`, also known as `TIOCOUTQ`),
//! which none of the crates we use exposes. A reset is passed on only once that is zero,
//! so a reset never destroys bytes already written to the client. And, for the tests, how
//! many segments a socket sent and received (`TCP_INFO`). And which CPUs the process may
//! run on, and binding a worker's thread to one of them (`sched_getaffinity`,
//! `sched_setaffinity`), which std does not offer.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Bytes written to the TCP socket `fd` that its peer has not acknowledged (sent or not).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn unacked(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: `ioctl(TIOCOUTQ)` on a socket writes one `c_int` through its third argument,
    // which points to `n`, alive and writable for the whole call; `fd` is a borrowed, open
    // descriptor, so it cannot be closed (or reused) during the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &mut n as *mut libc::c_int) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Segments a TCP socket has sent and received, from `TCP_INFO` (`tcpi_segs_out`,
/// `tcpi_segs_in`, Linux 4.2 and later): how the tests see that a FIN shared a segment.
#[doc(hidden)]
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn segments(fd: BorrowedFd<'_>) -> io::Result<Segments> {
    // `struct tcp_info` up to `tcpi_segs_in`: `tcpi_segs_out` is the `u32` at byte 136,
    // `tcpi_segs_in` the one at 140 (after eight bytes of flags, 24 `u32`s and four `u64`s).
    const SEGS_OUT: usize = 136;
    let mut info = [0u8; 256];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: `getsockopt(TCP_INFO)` writes at most `len` bytes to `info`, which is alive
    // and writable for the whole call, and stores the length written in `len`; `fd` is a
    // borrowed, open descriptor.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let u32_at =
        |at: usize| u32::from_ne_bytes([info[at], info[at + 1], info[at + 2], info[at + 3]]);
    if (len as usize) < SEGS_OUT + 8 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this kernel's TCP_INFO has no segment counts",
        ));
    }
    Ok(Segments {
        sent: u32_at(SEGS_OUT),
        received: u32_at(SEGS_OUT + 4),
    })
}

/// A TCP socket's segment counts ([`segments`]).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segments {
    /// Segments sent, retransmissions included.
    pub sent: u32,
    /// Segments received.
    pub received: u32,
}

/// The CPUs this thread may run on (its affinity set, inherited from the process: what
/// `taskset` or a container's cpuset allows), in ascending order.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: `cpu_set_t` is a plain bit array, valid when zeroed.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `sched_getaffinity` writes at most the given size to `set`, which is alive
    // and writable for the whole call; pid 0 is the calling thread.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: `CPU_ISSET` reads one bit of `set` for each `cpu` below the set's size.
    Ok((0..max)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Binds the calling thread to `cpu`: it runs there and nowhere else.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn bind_thread_to(cpu: usize) -> io::Result<()> {
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    if cpu >= max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("CPU {cpu} is past the {max} an affinity set can name"),
        ));
    }
    // SAFETY: `cpu_set_t` is a plain bit array, valid when zeroed; `CPU_SET` sets one bit
    // of it, `cpu` being below its size (checked above).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `sched_setaffinity` reads the given size from `set`, alive for the whole
    // call; pid 0 is the calling thread.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Elsewhere nothing is known about the CPUs (so no worker is bound).
#[cfg(not(target_os = "linux"))]
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    Ok(Vec::new())
}

/// Elsewhere threads are not bound.
#[cfg(not(target_os = "linux"))]
pub fn bind_thread_to(_cpu: usize) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Elsewhere the count is not known: report everything delivered.
#[cfg(not(target_os = "linux"))]
pub fn unacked(_fd: BorrowedFd<'_>) -> io::Result<usize> {
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    /// A thread bound to one of the allowed CPUs sees only that one allowed, and runs
    /// there; the process's other threads keep the whole set.
    #[test]
    #[cfg(target_os = "linux")]
    #[allow(clippy::disallowed_methods)] // A real thread.
    fn a_bound_thread_runs_on_its_cpu_alone() {
        let allowed = allowed_cpus().unwrap();
        assert!(!allowed.is_empty(), "no CPU allowed");
        assert!(allowed.windows(2).all(|w| w[0] < w[1]), "{allowed:?}");
        let last = *allowed.last().unwrap();
        let seen = std::thread::spawn(move || {
            bind_thread_to(last).unwrap();
            // SAFETY: `sched_getcpu` takes no arguments.
            #[allow(unsafe_code)]
            let running_on = unsafe { libc::sched_getcpu() };
            (allowed_cpus().unwrap(), running_on)
        })
        .join()
        .unwrap();
        assert_eq!(seen, (vec![last], last as libc::c_int));
        assert_eq!(allowed_cpus().unwrap(), allowed);
        assert!(bind_thread_to(1 << 20).is_err());
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // A test on real sockets and the real clock.
    fn counts_what_the_peer_has_not_acknowledged() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        assert_eq!(unacked(client.as_fd()).unwrap(), 0);
        client.write_all(b"hello").unwrap();
        // On loopback the peer acknowledges at once; read it to be sure, then it is zero.
        let mut buf = [0u8; 5];
        server.read_exact(&mut buf).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while unacked(client.as_fd()).unwrap() != 0 && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(unacked(client.as_fd()).unwrap(), 0);
    }
}

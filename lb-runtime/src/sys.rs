//! The one place with `unsafe` in the workspace: asking the kernel how many bytes written to
//! a TCP socket its peer has not acknowledged yet (`SIOCOUTQ`, also known as `TIOCOUTQ`),
//! which none of the crates we use exposes. A reset is passed on only once that is zero,
//! so a reset never destroys bytes already written to the client. And, for the tests, how
//! many segments a socket sent and received (`TCP_INFO`).

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

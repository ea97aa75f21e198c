//! The echo mode: every byte back, and a FIN after the client's.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Size of the echo mode's buffer.
pub const ECHO_BUF: usize = 64 * 1024;

/// Echoes every byte of `stream` back to it. On the client's FIN it flushes, shuts its write
/// side down and returns (dropping the stream closes it). Errors end the connection quietly.
pub async fn echo_conn<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    match echo_loop(&mut stream).await {
        Ok(bytes) => tracing::debug!(bytes, "demo echo: client finished"),
        Err(error) => tracing::debug!(%error, "demo echo: connection ended"),
    }
}

async fn echo_loop<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> io::Result<u64> {
    let mut buf = vec![0u8; ECHO_BUF];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        stream.write_all(&buf[..n]).await?;
        total += n as u64;
    }
    stream.flush().await?;
    stream.shutdown().await?;
    Ok(total)
}

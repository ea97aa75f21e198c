//! The demo backend: what the `server` binary and `loadbalancer --demo` run as backends to
//! balance over. It is not part of the load balancer's driver: the driver never calls it,
//! and it shares nothing with it but the [`Net`] trait (so it also runs inside the turmoil
//! simulation).
//!
//! - this module: the accept loop ([`serve`]), the modes ([`DemoMode`], [`DemoServer`]) and
//!   the names backends answer with;
//! - [`http`]: a small keep-alive-aware HTTP/1.1 responder that answers every request with
//!   `Hello from NAME\n` ([`http_conn`]); it reads request heads with the workspace's one
//!   parser, [`lb_sans_io::http`], like the admin endpoint;
//! - [`echo`]: a raw TCP echo that honours half-close ([`echo_conn`]).
//!
//! It owns nothing else: no configuration files, no timeouts besides a short lingering close
//! after a `Connection: close` response, and no state shared between connections.

pub mod cli;
pub mod echo;
pub mod http;
pub mod proxy;

pub use echo::{echo_conn, ECHO_BUF};
pub use http::{http_conn, MAX_BODY, MAX_HEAD};

use std::fmt;
use std::sync::Arc;

use crate::accept::accept_loop;
use crate::failure_log::FailureRun;
use crate::net::Net;

/// What a demo backend does with its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DemoMode {
    /// Answer every HTTP/1.x request with `200 OK` and `Hello from NAME\n`.
    Http,
    /// Echo every byte back; after the client's FIN, finish echoing and send a FIN.
    Echo,
}

impl DemoMode {
    /// The mode's lower-case name, as logged: `http` or `echo`.
    pub fn as_str(self) -> &'static str {
        match self {
            DemoMode::Http => "http",
            DemoMode::Echo => "echo",
        }
    }
}

impl fmt::Display for DemoMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One demo backend: its name (shown in bodies and the `X-Backend` header), its mode, and
/// whether its connections start with a PROXY protocol header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoServer {
    /// The name in `Hello from NAME\n` and `X-Backend: NAME`.
    pub name: String,
    /// HTTP responder or echo.
    pub mode: DemoMode,
    /// Read (and drop) a PROXY protocol header, version 1 or 2, from the front of every
    /// connection first; a connection without one is closed.
    pub proxy_protocol: bool,
}

impl DemoServer {
    /// A backend for `port`, named `name` or, by default, [`default_name`]`(port)`.
    pub fn new(port: u16, name: Option<String>, mode: DemoMode) -> Self {
        DemoServer {
            name: name.unwrap_or_else(|| default_name(port)),
            mode,
            proxy_protocol: false,
        }
    }

    /// Serves `listener` forever, through the workspace's one accept loop
    /// ([`accept_loop`]): an accept error is logged (rate-limited) and followed by a short
    /// pause; it never ends the loop. Each client is served on its own task (spawned with
    /// [`Net::spawn`]).
    pub async fn run<N: Net>(self, net: N, listener: N::Listener) {
        let DemoServer {
            name,
            mode,
            proxy_protocol,
        } = self;
        let name: Arc<str> = Arc::from(name);
        let failures = FailureRun::new("demo: accept failed", "demo: accepting again");
        accept_loop(
            &net,
            &listener,
            failures,
            std::future::pending(),
            |mut stream, peer| {
                tracing::debug!(%peer, mode = mode.as_str(), "demo: accepted");
                let name = Arc::clone(&name);
                net.spawn(async move {
                    if proxy_protocol {
                        match proxy::read_header(&mut stream).await {
                            Ok(origin) => tracing::debug!(?origin, "demo: PROXY header"),
                            Err(error) => {
                                tracing::debug!(%error, "demo: closing");
                                return;
                            }
                        }
                    }
                    match mode {
                        DemoMode::Http => http_conn(stream, &name).await,
                        DemoMode::Echo => echo_conn(stream).await,
                    }
                });
            },
        )
        .await;
    }
}

/// The default backend name for `port`: `server-PORT`.
pub fn default_name(port: u16) -> String {
    format!("server-{port}")
}

/// The body the HTTP mode answers with: `Hello from NAME\n`.
pub fn hello_body(name: &str) -> String {
    format!("Hello from {name}\n")
}

/// Serves `listener` forever as backend `name` in `mode`; see [`DemoServer::run`].
pub async fn serve<N: Net>(net: N, listener: N::Listener, name: String, mode: DemoMode) {
    DemoServer {
        name,
        mode,
        proxy_protocol: false,
    }
    .run(net, listener)
    .await;
}

#[cfg(test)]
mod tests;

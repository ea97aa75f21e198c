//! The floor on tokio: what `floor_proxy` does, but on the runtime the project uses, so that
//! the project's CPU per request above the floor can be split into what tokio costs and what
//! the project's own work costs (the flow machine, the shared balancer, the access log,
//! timers). NOT the product: a measuring stick for `docs/performance.md`.
//!
//! One thread per CPU, bound to it, each with a current-thread tokio runtime (as the
//! project's workers) and its own `SO_REUSEPORT` listener (`SO_INCOMING_CPU` set); a task per
//! connection that connects to the next backend in turn and copies both ways with
//! `tokio::io::copy_bidirectional_with_sizes` (16 KiB per direction; a direction's end of
//! stream shuts down the other side's writes); no timers, no clock, no log, no health checks.
//!
//! usage: cargo run --release -p lb-runtime --example floor_tokio -- LISTEN=BACKEND[,BACKEND...]...
//!   (`FLOOR_BIN=target/release/examples/floor_tokio bench/floor-lb.sh` runs it in
//!   `bench/run.sh` in the project's place)
//!   environment: FLOOR_WORKERS (default: the CPUs it may use; bound one each when equal),
//!                FLOOR_BIND=0 (never bind)

#[path = "floor_common/mod.rs"]
mod floor_common;

use floor_common::Route;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

const BUF: usize = 16 * 1024;

async fn serve(listener: TcpListener, backends: Rc<Vec<SocketAddr>>) {
    let mut next = 0usize;
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        let addr = backends[next % backends.len()];
        next += 1;
        // Not the product: no simulation here, a plain local task.
        #[allow(clippy::disallowed_methods)]
        tokio::task::spawn_local(async move {
            let Ok(mut backend) = TcpStream::connect(addr).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = backend.set_nodelay(true);
            let _ =
                tokio::io::copy_bidirectional_with_sizes(&mut client, &mut backend, BUF, BUF).await;
        });
    }
}

fn worker(routes: Arc<Vec<Route>>, cpu: Option<usize>) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        for route in routes.iter() {
            let l = TcpListener::from_std(floor_common::listener(route.listen, cpu)?)?;
            let backends = Rc::new(route.backends.clone());
            #[allow(clippy::disallowed_methods)]
            tokio::task::spawn_local(serve(l, backends));
        }
        std::future::pending::<io::Result<()>>().await
    })
}

fn main() {
    floor_common::run("floor_tokio", floor_common::routes("floor_tokio"), worker);
}

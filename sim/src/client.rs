//! The simulated clients: each client host runs a few lanes of sequential connections
//! through a load balancer, each connection a [`SessionKind`] drawn from the plan's mix,
//! and records what it sent and received in a [`SessionRecord`].
//!
//! Every request is valid HTTP/1.1 and names its session (`GET /c0.1.7/r0 HTTP/1.1`), so an
//! HTTP backend answers it, an echo backend sends it back, and the checkers can tell which
//! backend connection carried which client connection. A client does not know which kind
//! of backend it reached: it counts answers either way. Every connect and every connection
//! has a timeout, so a client never hangs.

use crate::net::sim_now;
use crate::rng::SimRng;
use crate::scenario::{Greeting, Plan, SessionKind};
use crate::services::{self, NEW, OLD, PLAIN, TLS};
use crate::trace::Trace;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use turmoil::net::TcpStream;

/// How a client connection ended, as the client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every request was answered completely (and, after a half-close, the connection
    /// ended with a clean end of stream).
    Complete,
    /// The connection to the load balancer itself failed or timed out.
    ConnectFailed,
    /// Closed (end of stream or reset) before any answer byte arrived.
    Refused,
    /// Closed after part of the answer.
    Cut,
    /// The client's own deadline passed with the connection still open: the load
    /// balancer neither served nor closed it.
    TimedOut,
}

/// When, in a run, a client connection was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// During the faults (and the operator's work).
    Chaos,
    /// After every fault healed: it must complete.
    Liveness,
    /// Shortly before the graceful stop: open when it comes. A `long` one pauses past
    /// the end of the shutdown grace period, so the load balancer must abort it then.
    Stopping {
        /// It pauses past the end of the grace period.
        long: bool,
    },
    /// After the stop: the listener is closed, so it must not be served.
    Stopped,
}

/// One client connection, as the client recorded it.
#[derive(Clone, Debug)]
pub struct SessionRecord {
    /// Unique name, also in every request's path: `c{client}.{lane}.{n}`.
    pub id: String,
    /// The client host's index.
    pub client: usize,
    /// The load balancer connected to.
    pub lb: usize,
    /// The listener connected to (an index into the plan's listeners; 0 in the flat
    /// config).
    pub listener: usize,
    /// Its port.
    pub port: u16,
    /// What it sent first: a ClientHello (whose bytes start [`SessionRecord::sent`]), or
    /// nothing special.
    pub greeting: Greeting,
    /// What it did.
    pub kind: SessionKind,
    /// When it was opened.
    pub phase: Phase,
    /// When the connect started.
    pub start: Duration,
    /// When the client was done with it.
    pub end: Duration,
    /// The client's address on this connection.
    pub local: Option<SocketAddr>,
    /// Bytes written, in order.
    pub sent: Vec<u8>,
    /// Bytes read, in order.
    pub recv: Vec<u8>,
    /// Requests sent.
    pub requests: usize,
    /// Answers received completely.
    pub answered: usize,
    /// The client's deliberate pause: from, to.
    pub stall: Option<(Duration, Duration)>,
    /// When the client last read a byte before its pause ended (nothing but the echo of
    /// what it sent before the pause arrives during it).
    pub stall_last_read: Option<Duration>,
    /// Whether the client half-closed (sent FIN) before the end.
    pub half_closed: bool,
    /// A read ended with an error (reset).
    pub reset: bool,
    /// When the client's reader saw the connection end (end of stream or reset).
    pub closed_at: Option<Duration>,
    /// When the client last read a byte.
    pub last_read: Option<Duration>,
    /// How it ended.
    pub outcome: Outcome,
}

/// What a client host needs.
#[derive(Clone)]
pub struct ClientCtx {
    /// The run's plan.
    pub plan: Arc<Plan>,
    /// This client's index.
    pub client: usize,
    /// Where sessions are recorded.
    pub sessions: Arc<Mutex<Vec<SessionRecord>>>,
    /// The run's trace.
    pub trace: Trace,
}

/// The client host's software: its lanes, until the liveness phase is over.
pub async fn run(ctx: ClientCtx) -> turmoil::Result {
    tokio::time::sleep(ctx.plan.warmup).await;
    let mut lanes = Vec::new();
    for lane in 0..ctx.plan.lanes {
        lanes.push(tokio::task::spawn_local(run_lane(ctx.clone(), lane)));
    }
    for lane in lanes {
        lane.await?;
    }
    Ok(())
}

async fn run_lane(ctx: ClientCtx, lane: usize) {
    let plan = ctx.plan.clone();
    let mut rng = SimRng::seed_from_u64(
        plan.seed ^ ((ctx.client as u64) << 32) ^ ((lane as u64) << 48) ^ 0x5eed,
    );
    // Lanes start a little apart.
    tokio::time::sleep(Duration::from_millis(rng.gen_range(0..200))).await;
    let mut n = 0;
    while sim_now() < plan.chaos_end {
        let kind = plan.mix.pick(&mut rng);
        session(&ctx, lane, n, kind, Phase::Chaos, &mut rng).await;
        n += 1;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..300))).await;
    }
    let wait = plan.liveness_start.saturating_sub(sim_now());
    tokio::time::sleep(wait).await;
    for _ in 0..plan.liveness_sessions {
        let kind = match rng.gen_range(0..3u32) {
            0 => SessionKind::Pipelined,
            1 => SessionKind::Interactive,
            _ => SessionKind::EarlyHalfClose,
        };
        session(&ctx, lane, n, kind, Phase::Liveness, &mut rng).await;
        n += 1;
    }
    let Some(stop) = plan.stop else {
        return;
    };
    // A connection open when the stop comes: a short one finishes within the grace period,
    // a long one pauses past it (but not past the idle timeout) and is aborted.
    let lead = Duration::from_millis(rng.gen_range(100..=800));
    let long = rng.gen_bool(0.5);
    let open_at = stop.at.saturating_sub(lead);
    if sim_now() < open_at {
        tokio::time::sleep(open_at - sim_now()).await;
        session(
            &ctx,
            lane,
            n,
            SessionKind::Stall,
            Phase::Stopping { long },
            &mut rng,
        )
        .await;
        n += 1;
    }
    // And one after it, which must not be served.
    let after = stop.at + Duration::from_millis(rng.gen_range(100..=400));
    if sim_now() < after {
        tokio::time::sleep(after - sim_now()).await;
    }
    session(
        &ctx,
        lane,
        n,
        SessionKind::Interactive,
        Phase::Stopped,
        &mut rng,
    )
    .await;
}

/// What the reader and writer halves of a session share.
#[derive(Default)]
struct Shared {
    sent: Vec<u8>,
    /// Offsets in `sent` where each request ends.
    ends: Vec<usize>,
    recv: Vec<u8>,
    answered: usize,
    eof: bool,
    reset: bool,
    /// When the reader saw the end of stream or a reset.
    closed_at: Option<Duration>,
    /// When the reader last read a byte.
    last_read: Option<Duration>,
    /// The reader is done (end of stream, error, or every answer in).
    reader_done: bool,
}

/// Answers complete in `recv`: parsed HTTP responses, or echoed requests.
pub fn count_answers(recv: &[u8], ends: &[usize]) -> usize {
    if recv.starts_with(b"HTTP/") {
        count_http_responses(recv)
    } else {
        ends.iter().filter(|&&e| e <= recv.len()).count()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn count_http_responses(mut buf: &[u8]) -> usize {
    let mut n = 0;
    while let Some(h) = find(buf, b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&buf[..h]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let end = h + 4 + len;
        if end > buf.len() {
            break;
        }
        n += 1;
        buf = &buf[end..];
    }
    n
}

/// The body byte at `i` of a bulk upload: printable and position-dependent, so a byte
/// out of place shows.
fn body_byte(seed: u64, i: usize) -> u8 {
    let x = (i as u64)
        .wrapping_add(seed)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    b'a' + ((x >> 59) as u8 % 26)
}

async fn session(
    ctx: &ClientCtx,
    lane: usize,
    n: usize,
    kind: SessionKind,
    phase: Phase,
    rng: &mut SimRng,
) {
    let plan = &ctx.plan;
    let id = format!("c{}.{}.{}", ctx.client, lane, n);
    let lb = rng.gen_range(0..plan.lbs);
    // A load balancer that has not joined yet (`fleet`) is not asked.
    let lb = if sim_now() < plan.lb_ready(lb) { 0 } else { lb };
    let host = format!("c{}", ctx.client);
    let start = sim_now();
    // Which listener, and what first (only `services` plans draw these).
    let (listener, greeting) = match &plan.services {
        Some(s) => {
            let listener = match (phase, rng.gen_range(0..100u32)) {
                (Phase::Chaos, 85..) => {
                    if rng.gen_bool(0.5) {
                        OLD
                    } else {
                        NEW
                    }
                }
                (_, x) if x < 45 => PLAIN,
                _ => TLS,
            };
            (listener, services::draw_greeting(s, listener, &id, rng))
        }
        None => (0, Greeting::Plain),
    };
    let port = plan.listener_port(listener);
    ctx.trace.push(
        start,
        host.clone(),
        if plan.services.is_some() {
            format!(
                "{id} open lb{lb}:{port} {} {}",
                kind.name(),
                greeting.describe()
            )
        } else {
            format!("{id} open lb{lb} {}", kind.name())
        },
    );
    let requests = match kind {
        SessionKind::Bulk | SessionKind::HalfOpen => 1,
        _ => rng.gen_range(1..=5),
    };
    let pause = Duration::from_millis(rng.gen_range(0..50));
    let idle = plan.lb.idle_timeout;
    let stall_len = if rng.gen_bool(0.5) {
        idle / 2 - Duration::from_millis(rng.gen_range(0..500))
    } else {
        idle + Duration::from_millis(rng.gen_range(200..1500))
    };
    let stall_at = rng.gen_range(0..requests);
    // Around a stop: one answer, then a pause that ends before the grace period does, or
    // well after it (and before the idle timeout).
    let (requests, stall_len, stall_at) = match (phase, plan.stop) {
        (Phase::Stopping { long }, Some(stop)) => {
            let to_end = (stop.at + stop.grace).saturating_sub(sim_now());
            let len = if long {
                to_end + Duration::from_millis(300)
            } else {
                Duration::from_millis(50)
            };
            (2, len, 1)
        }
        _ => (requests, stall_len, stall_at),
    };
    let bulk_len = rng.gen_range(20_000..300_000usize);
    let bulk_seed = rng.next_u64();
    let chunk = rng.gen_range(1_000..16_000usize);
    let chunk_pause = Duration::from_millis(rng.gen_range(0..6));
    let hello_pause = match greeting {
        Greeting::Hello { .. } => Duration::from_millis(rng.gen_range(0..20)),
        Greeting::Plain => Duration::ZERO,
    };

    let mut record = SessionRecord {
        id: id.clone(),
        client: ctx.client,
        lb,
        listener,
        port,
        greeting: greeting.clone(),
        kind,
        phase,
        start,
        end: start,
        local: None,
        sent: Vec::new(),
        recv: Vec::new(),
        requests,
        answered: 0,
        stall: None,
        stall_last_read: None,
        half_closed: false,
        reset: false,
        closed_at: None,
        last_read: None,
        outcome: Outcome::ConnectFailed,
    };
    let lb_ip = turmoil::lookup(format!("lb{lb}"));
    let connect =
        tokio::time::timeout(Duration::from_secs(2), TcpStream::connect((lb_ip, port))).await;
    let stream = match connect {
        Ok(Ok(s)) => s,
        _ => {
            record.end = sim_now();
            finish(ctx, record);
            return;
        }
    };
    record.local = stream.local_addr().ok();
    let (mut rd, mut wr) = stream.into_split();
    let shared = Rc::new(RefCell::new(Shared::default()));
    let progress = Rc::new(Notify::new());
    let closed = Rc::new(Notify::new());
    let stall = Rc::new(RefCell::new(None));
    let stall_read = Rc::new(RefCell::new(None));

    let deadline = idle * 2
        + plan.lb.half_close_timeout
        + plan.lb.connect_timeout * (plan.lb.retries + 1)
        + pause * requests as u32
        + stall_len
        + Duration::from_secs(5);

    let interactive = matches!(kind, SessionKind::Interactive | SessionKind::Stall);
    let half_open_hold = plan.lb.half_close_timeout + Duration::from_secs(1);
    let reader = {
        let shared = shared.clone();
        let progress = progress.clone();
        let closed = closed.clone();
        async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let r = rd.read(&mut buf).await;
                let mut s = shared.borrow_mut();
                match r {
                    Ok(0) => {
                        s.eof = true;
                        s.closed_at = Some(sim_now());
                        break;
                    }
                    Ok(k) => {
                        s.recv.extend_from_slice(&buf[..k]);
                        s.last_read = Some(sim_now());
                        let answered = count_answers(&s.recv, &s.ends);
                        s.answered = answered;
                        if interactive && answered >= requests {
                            break;
                        }
                    }
                    Err(_) => {
                        s.reset = true;
                        s.closed_at = Some(sim_now());
                        break;
                    }
                }
                drop(s);
                progress.notify_one();
            }
            shared.borrow_mut().reader_done = true;
            progress.notify_one();
            closed.notify_waiters();
            rd
        }
    };
    let writer = {
        let shared = shared.clone();
        let progress = progress.clone();
        let stall = stall.clone();
        let stall_read = stall_read.clone();
        let closed = closed.clone();
        async move {
            let mut half_closed = false;
            // A ClientHello first, in the planned writes (a few milliseconds apart).
            if let Greeting::Hello { bytes, cuts, .. } = &greeting {
                let mut from = 0;
                for &to in cuts.iter().chain(std::iter::once(&bytes.len())) {
                    if !write(&mut wr, &shared, &closed, bytes[from..to].to_vec()).await {
                        return (wr, false);
                    }
                    from = to;
                    tokio::time::sleep(hello_pause).await;
                }
            }
            match kind {
                SessionKind::Bulk => {
                    let head = format!(
                        "POST /{id}/bulk HTTP/1.1\r\nHost: sim\r\nContent-Length: {bulk_len}\r\n\r\n"
                    );
                    let end = shared.borrow().sent.len() + head.len() + bulk_len;
                    shared.borrow_mut().ends.push(end);
                    let mut ok = write(&mut wr, &shared, &closed, head.into_bytes()).await;
                    let mut i = 0;
                    while ok && i < bulk_len {
                        let k = chunk.min(bulk_len - i);
                        let bytes: Vec<u8> = (i..i + k).map(|j| body_byte(bulk_seed, j)).collect();
                        ok = write(&mut wr, &shared, &closed, bytes).await;
                        i += k;
                        tokio::time::sleep(chunk_pause).await;
                    }
                    if ok {
                        half_closed = wr.shutdown().await.is_ok();
                    }
                }
                SessionKind::Pipelined | SessionKind::EarlyHalfClose => {
                    let mut ok = true;
                    for r in 0..requests {
                        let req = format!("GET /{id}/r{r} HTTP/1.1\r\nHost: sim\r\n\r\n");
                        let end = shared.borrow().sent.len() + req.len();
                        shared.borrow_mut().ends.push(end);
                        ok = write(&mut wr, &shared, &closed, req.into_bytes()).await;
                        if !ok {
                            break;
                        }
                        if kind == SessionKind::Pipelined {
                            tokio::time::sleep(pause).await;
                        }
                    }
                    if ok {
                        half_closed = wr.shutdown().await.is_ok();
                    }
                }
                SessionKind::HalfOpen => {
                    let req =
                        format!("GET /{id}/r0 HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n");
                    let end = shared.borrow().sent.len() + req.len();
                    shared.borrow_mut().ends.push(end);
                    if write(&mut wr, &shared, &closed, req.into_bytes()).await {
                        // Never a FIN: wait for the end of the stream, then stay open and
                        // silent until the load balancer has surely closed its side.
                        loop {
                            let notified = progress.notified();
                            if shared.borrow().reader_done {
                                break;
                            }
                            notified.await;
                        }
                        tokio::time::sleep(half_open_hold).await;
                    }
                }
                SessionKind::Interactive | SessionKind::Stall => {
                    for r in 0..requests {
                        if kind == SessionKind::Stall && r == stall_at {
                            let from = sim_now();
                            tokio::time::sleep(stall_len).await;
                            *stall.borrow_mut() = Some((from, sim_now()));
                            // The last byte read before the pause ended: the echo of a
                            // ClientHello may still arrive after it began.
                            *stall_read.borrow_mut() = shared.borrow().last_read;
                        }
                        let req = format!("GET /{id}/r{r} HTTP/1.1\r\nHost: sim\r\n\r\n");
                        let end = shared.borrow().sent.len() + req.len();
                        shared.borrow_mut().ends.push(end);
                        if !write(&mut wr, &shared, &closed, req.into_bytes()).await {
                            break;
                        }
                        // Wait for this answer (or the end of the connection).
                        loop {
                            let notified = progress.notified();
                            {
                                let s = shared.borrow();
                                if s.answered > r || s.reader_done {
                                    break;
                                }
                            }
                            notified.await;
                        }
                        if shared.borrow().reader_done && shared.borrow().answered <= r {
                            break;
                        }
                        tokio::time::sleep(pause).await;
                    }
                }
            }
            (wr, half_closed)
        }
    };
    let joined = tokio::time::timeout(deadline, async { tokio::join!(reader, writer) }).await;
    let timed_out = joined.is_err();
    if let Ok((_rd, (_wr, half_closed))) = joined {
        record.half_closed = half_closed;
        // Both halves drop here: for interactive sessions this is the client's close.
    }
    let s = shared.borrow();
    record.end = sim_now();
    record.sent = s.sent.clone();
    record.recv = s.recv.clone();
    record.answered = count_answers(&s.recv, &s.ends);
    record.reset = s.reset;
    record.closed_at = s.closed_at;
    record.last_read = s.last_read;
    record.stall = *stall.borrow();
    record.stall_last_read = *stall_read.borrow();
    let complete = record.answered >= requests;
    record.outcome = if timed_out {
        Outcome::TimedOut
    } else if complete && (interactive || (s.eof && !s.reset)) {
        Outcome::Complete
    } else if s.recv.is_empty() {
        Outcome::Refused
    } else {
        Outcome::Cut
    };
    drop(s);
    finish(ctx, record);
}

/// Writes `bytes`, recording each part as it is written. Gives up (false) on an error,
/// or when the reader has seen the connection end: the load balancer closed it, and
/// turmoil, which sends no reset for data arriving at a closed socket, would otherwise
/// leave the write waiting forever where a real network would fail it.
async fn write(
    wr: &mut turmoil::net::tcp::OwnedWriteHalf,
    shared: &Rc<RefCell<Shared>>,
    end: &Notify,
    bytes: Vec<u8>,
) -> bool {
    let mut off = 0;
    while off < bytes.len() {
        let ended = async {
            loop {
                let notified = end.notified();
                if shared.borrow().reader_done {
                    return;
                }
                notified.await;
            }
        };
        tokio::select! {
            biased;
            r = wr.write(&bytes[off..]) => match r {
                Ok(n) if n > 0 => {
                    shared.borrow_mut().sent.extend_from_slice(&bytes[off..off + n]);
                    off += n;
                }
                _ => return false,
            },
            _ = ended => return false,
        }
    }
    true
}

fn finish(ctx: &ClientCtx, record: SessionRecord) {
    ctx.trace.push(
        record.end,
        format!("c{}", record.client),
        format!(
            "{} {:?} sent={} recv={} answered={}/{}{}",
            record.id,
            record.outcome,
            record.sent.len(),
            record.recv.len(),
            record.answered,
            record.requests,
            if record.reset { " reset" } else { "" }
        ),
    );
    ctx.sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(record);
}

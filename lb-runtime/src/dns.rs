//! Asking DNS what a pool's `discover` asks (hickory-resolver): the A and AAAA records of a
//! name, or its SRV records with each target's addresses. No cache, so every interval
//! asks the server again whatever the answers' TTLs. What an answer means is the pool's
//! decision ([`lb_sans_io::discovery`]).

use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{ResolveError, ResolveErrorKind, Resolver, TokioResolver};
use lb_sans_io::config::DiscoverTarget;
use lb_sans_io::{DnsAnswer, DnsError, DnsQuery, SrvRecord};
use std::net::IpAddr;
use std::time::Duration;

/// Resolves `query`, within its timeout.
pub async fn resolve(query: DnsQuery) -> Result<DnsAnswer, DnsError> {
    match tokio::time::timeout(query.timeout, lookup(&query)).await {
        Ok(r) => r,
        Err(_) => Err(DnsError::Timeout),
    }
}

fn resolver(query: &DnsQuery) -> Result<TokioResolver, DnsError> {
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.timeout = query.timeout.min(Duration::from_secs(2));
    opts.attempts = 2;
    // Every A and AAAA record (the default asks for AAAA only when there is no A).
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    let builder = match query.resolver {
        Some(server) => {
            let mut config = ResolverConfig::new();
            config.add_name_server(NameServerConfig::new(server, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(server, Protocol::Tcp));
            Resolver::builder_with_config(config, TokioConnectionProvider::default())
        }
        None => Resolver::builder_tokio().map_err(|e| {
            DnsError::Other(format!(
                "cannot read the system's resolver configuration: {e}"
            ))
        })?,
    };
    Ok(builder.with_options(opts).build())
}

async fn lookup(query: &DnsQuery) -> Result<DnsAnswer, DnsError> {
    let resolver = resolver(query)?;
    match &query.target {
        DiscoverTarget::Dns { name, .. } => Ok(DnsAnswer::Addrs(addrs(&resolver, name).await?)),
        DiscoverTarget::Srv { name } => {
            let srv = match resolver.srv_lookup(name.as_str()).await {
                Ok(srv) => srv,
                Err(e) if empty(&e) => return Ok(DnsAnswer::Srv(Vec::new())),
                Err(e) => return Err(error(&e)),
            };
            let mut records = Vec::new();
            for r in srv.iter() {
                let target = r.target().to_utf8();
                records.push(SrvRecord {
                    priority: r.priority(),
                    weight: r.weight(),
                    port: r.port(),
                    addrs: addrs(&resolver, &target).await?,
                    target,
                });
            }
            Ok(DnsAnswer::Srv(records))
        }
    }
}

/// The A and AAAA addresses of `name` (none when it has none).
async fn addrs(resolver: &TokioResolver, name: &str) -> Result<Vec<IpAddr>, DnsError> {
    match resolver.lookup_ip(name).await {
        Ok(ips) => Ok(ips.iter().collect()),
        Err(e) if empty(&e) => Ok(Vec::new()),
        Err(e) => Err(error(&e)),
    }
}

/// The name exists but has no records of the type asked.
fn empty(e: &ResolveError) -> bool {
    e.is_no_records_found() && !e.is_nx_domain()
}

fn error(e: &ResolveError) -> DnsError {
    if e.is_nx_domain() {
        return DnsError::NoSuchName;
    }
    if let ResolveErrorKind::Proto(p) = e.kind() {
        match p.kind() {
            ProtoErrorKind::Timeout => return DnsError::Timeout,
            ProtoErrorKind::NoRecordsFound {
                response_code: ResponseCode::ServFail | ResponseCode::Refused,
                ..
            } => return DnsError::ServerFailure,
            _ => {}
        }
    }
    DnsError::Other(e.to_string())
}

//! Loading the config for the binary: the file (or the built-in default), validation, and
//! resolution of backend host names. Errors say which file and which field.

use lb_sans_io::config::BackendAddress;
use lb_sans_io::{Config, ConfigError};
use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// The built-in config (`lb-runtime/config.json`, which the repo's top-level `config.json`
/// links to), compiled in: used when `./config.json` does not exist.
pub const BUILT_IN_CONFIG: &str = include_str!("../config.json");

/// Where a config came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// A file.
    File(PathBuf),
    /// The compiled-in default.
    BuiltIn,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(p) => write!(f, "{}", p.display()),
            ConfigSource::BuiltIn => f.write_str("built-in config"),
        }
    }
}

/// A validated config with every backend address resolved.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The config.
    pub config: Config,
    /// `addrs[p][i]` is where backend `i` of `config.pools[p]` is.
    pub addrs: Vec<Vec<SocketAddr>>,
    /// Where it came from.
    pub source: ConfigSource,
}

/// Why a config could not be loaded. Each message names the file, and the field where one
/// is at fault.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The file is not a valid config.
    Invalid {
        /// Where the config came from.
        source: ConfigSource,
        /// What is wrong.
        error: ConfigError,
    },
    /// Reading failed for another reason (the reading task died).
    Other(String),
    /// A backend's host name did not resolve.
    Resolve {
        /// Where the config came from.
        source: ConfigSource,
        /// Where the backend's address is written (`backends[1].address`).
        field: String,
        /// The address as written.
        address: String,
        /// Why.
        error: String,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Read { path, error } => {
                write!(
                    f,
                    "{}: cannot read config: {}",
                    path.display(),
                    io_message(error)
                )
            }
            LoadError::Invalid { source, error } => write!(f, "{source}: {error}"),
            LoadError::Other(why) => write!(f, "cannot read config: {why}"),
            LoadError::Resolve {
                source,
                field,
                address,
                error,
            } => write!(
                f,
                "{source}: {field}: cannot resolve \"{address}\": {error}"
            ),
        }
    }
}

impl std::error::Error for LoadError {}

/// A short, lower-case description of an I/O error, without the OS error number.
pub fn io_message(e: &io::Error) -> String {
    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
        return "too many open files (raise the open-file limit: `ulimit -n`, or \
                LimitNOFILE= in a systemd unit; each proxied connection takes two)"
            .into();
    }
    match e.kind() {
        io::ErrorKind::AddrInUse => "address already in use".into(),
        io::ErrorKind::AddrNotAvailable => "address not available on this machine".into(),
        io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)".into()
        }
        io::ErrorKind::NotFound => "no such file".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_lowercase(),
                None => s,
            }
        }
    }
}

/// Loads `explicit` if given (it must exist); otherwise `./config.json` if it exists;
/// otherwise the built-in default.
pub fn load(explicit: Option<&Path>) -> Result<Loaded, LoadError> {
    let default = Path::new("config.json");
    let (text, source) = match explicit {
        Some(path) => (read(path)?, ConfigSource::File(path.to_path_buf())),
        None if default.exists() => (read(default)?, ConfigSource::File(default.to_path_buf())),
        None => (BUILT_IN_CONFIG.to_string(), ConfigSource::BuiltIn),
    };
    from_text(&text, source)
}

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|error| LoadError::Read {
        path: path.to_path_buf(),
        error,
    })
}

/// Validates `text` and resolves its backend addresses.
pub fn from_text(text: &str, source: ConfigSource) -> Result<Loaded, LoadError> {
    let config = Config::from_json(text).map_err(|error| LoadError::Invalid {
        source: source.clone(),
        error,
    })?;
    let mut addrs = Vec::with_capacity(config.pools.len());
    for pool in &config.pools {
        let mut pool_addrs = Vec::with_capacity(pool.backends.len());
        for (index, b) in pool.backends.iter().enumerate() {
            let addr = match &b.address {
                BackendAddress::Socket(a) => *a,
                BackendAddress::Host { host, port } => (host.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(|e| e.to_string())
                    .and_then(|mut it| it.next().ok_or_else(|| "no address found".to_string()))
                    .map_err(|error| LoadError::Resolve {
                        source: source.clone(),
                        field: config.pool_path(&pool.name, &format!("backends[{index}].address")),
                        address: b.address.to_string(),
                        error,
                    })?,
            };
            pool_addrs.push(addr);
        }
        addrs.push(pool_addrs);
    }
    Ok(Loaded {
        config,
        addrs,
        source,
    })
}

impl Loaded {
    /// `loadbalancer PORT`: the first listener listens on `port` (its address stays).
    pub fn override_port(&mut self, port: u16) {
        if let Some(l) = self.config.listeners.first_mut() {
            l.listen.set_port(port);
        }
    }

    /// Every backend: its pool's config, its config and its address.
    pub fn backends(
        &self,
    ) -> impl Iterator<
        Item = (
            &lb_sans_io::config::PoolConfig,
            &lb_sans_io::config::BackendConfig,
            SocketAddr,
        ),
    > {
        self.config
            .pools
            .iter()
            .zip(&self.addrs)
            .flat_map(|(p, addrs)| p.backends.iter().zip(addrs).map(move |(b, a)| (p, b, *a)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_config_is_valid_loopback_and_round_trips() {
        let loaded = from_text(BUILT_IN_CONFIG, ConfigSource::BuiltIn).unwrap();
        let c = &loaded.config;
        assert!(c.listeners[0].listen.ip().is_loopback());
        assert!(c.admin.is_some_and(|a| a.ip().is_loopback()));
        assert_eq!(c.pools[0].backends.len(), 3);
        assert_eq!(Config::from_json(&c.to_json()).unwrap(), *c);
    }

    #[test]
    fn the_repos_config_json_is_the_built_in_one() {
        let top = concat!(env!("CARGO_MANIFEST_DIR"), "/../config.json");
        let text = std::fs::read_to_string(top).expect("the repo's config.json");
        assert_eq!(text, BUILT_IN_CONFIG);
    }
}

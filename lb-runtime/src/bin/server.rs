//! `server PORT [--name NAME] [--echo] [--bind ADDR] [--proxy-protocol]`: the demo backend
//! (the seed's `server.py`), also installed as `lb-demo-server`; see `lb_runtime::demo::cli`.

fn main() -> std::process::ExitCode {
    lb_runtime::demo::cli::main("server")
}

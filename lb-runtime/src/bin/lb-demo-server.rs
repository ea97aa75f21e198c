//! `lb-demo-server PORT [--name NAME] [--echo] [--bind ADDR] [--proxy-protocol]`: the demo
//! backend under a name that cannot clash with other programs (`server` is the same
//! program); see `lb_runtime::demo::cli`.

fn main() -> std::process::ExitCode {
    lb_runtime::demo::cli::main("lb-demo-server")
}

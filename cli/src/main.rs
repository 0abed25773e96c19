//! The `tgtctl` binary: parses the command line and runs [`tgtctl::run`], whose result is
//! the exit code (0 ok, 1 the API refused, 2 usage, 3 the server cannot be reached).

fn main() {
    let cli = <tgtctl::Cli as clap::Parser>::parse();
    std::process::exit(tgtctl::run(cli));
}

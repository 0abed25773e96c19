//! `tgtctl`: the operator's command line over the control plane's REST API
//! (`/api/v1`), in the shape admins know from kubectl and targetcli: `tgtctl RESOURCE
//! VERB`. Human tables by default, `-o json|yaml` for scripts, and exit codes scripts can
//! rely on: 0 ok, 1 the API refused (the problem detail is printed), 2 usage, 3 the server
//! cannot be reached. `tgtctl quickstart` starts the two daemons with a demo target.

pub mod access;
pub mod alua;
pub mod apply;
pub mod client;
pub mod quickstart;
pub mod render;
pub mod resources;
pub mod status;

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

use client::Client;
use render::Format;

/// Why a command failed; each kind has its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The API answered with an error (exit 1).
    #[error("{message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The problem detail, ready to print.
        message: String,
    },
    /// The arguments or an input file cannot be used (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The control plane cannot be reached (exit 3).
    #[error("{0}")]
    Unreachable(String),
    /// Anything else (exit 1).
    #[error("{0:#}")]
    Other(anyhow::Error),
}

impl CliError {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Api { .. } | CliError::Other(_) => 1,
            CliError::Usage(_) => 2,
            CliError::Unreachable(_) => 3,
        }
    }
}

/// Short for a command's result.
pub type Result<T, E = CliError> = std::result::Result<T, E>;

const ROOT_EXAMPLES: &str = "\
Examples:
  tgtctl quickstart                         start both daemons with a demo target
  tgtctl status                             is the data plane connected and in sync?
  tgtctl storage create --id 1 --path /var/lib/tgt/disk1.img --size 10G
  tgtctl portal create --id 0 --address 0.0.0.0:3260
  tgtctl target create iqn.2026-01.com.example:disk1 --portal 0 --lun 0=1
  tgtctl target acl set iqn.2026-01.com.example:disk1 --initiator iqn.1993-08.org.debian:01:host1
  tgtctl target auth set iqn.2026-01.com.example:disk1 --username host1 --secret-file host1.secret
  tgtctl config get > tgt.json && tgtctl apply -f tgt.json --dry-run
  tgtctl target list -o json

Exit codes: 0 ok, 1 the API refused (the problem is printed), 2 usage error, 3 cannot reach the control plane.";

/// Command-line client of the tgt iSCSI target's control plane.
#[derive(Parser, Debug)]
#[command(name = "tgtctl", version, about, after_help = ROOT_EXAMPLES)]
pub struct Cli {
    /// Control plane URL.
    #[arg(
        long,
        global = true,
        env = "TGTCTL_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// File holding the control plane's bearer token (when it has one); the token itself
    /// is never an argument, where `ps` would show it. TGTCTL_TOKEN in the environment is
    /// used when this is not given.
    #[arg(long, global = true, env = "TGTCTL_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// CA certificate(s) (PEM) to trust for an https:// --server, such as the control
    /// plane's self-signed certificate; without it the system's roots are used.
    #[arg(long, global = true, env = "TGTCTL_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The resources and verbs.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Targets: iSCSI names with their portal groups, LUN maps, CHAP and ACL.
    #[command(
        subcommand,
        after_help = "Examples:\n  tgtctl target list\n  tgtctl target create iqn.2026-01.com.example:disk1 --portal 0 --lun 0=1\n  tgtctl target delete iqn.2026-01.com.example:disk1"
    )]
    Target(resources::TargetCmd),
    /// Discovery sessions (SendTargets): their CHAP.
    #[command(
        subcommand,
        after_help = "Examples:\n  tgtctl discovery get\n  tgtctl discovery auth set --username disc --secret-file discovery.secret\n  tgtctl discovery auth clear"
    )]
    Discovery(access::DiscoveryCmd),
    /// LUNs: which storage each LUN of a target maps to.
    #[command(
        subcommand,
        after_help = "Examples:\n  tgtctl lun list\n  tgtctl lun create iqn.2026-01.com.example:disk1 1 --storage 2\n  tgtctl lun delete iqn.2026-01.com.example:disk1 1"
    )]
    Lun(resources::LunCmd),
    /// Storages: backing files and block devices, by deviceID.
    #[command(
        subcommand,
        after_help = "Examples:\n  tgtctl storage list\n  tgtctl storage create --id 1 --path /var/lib/tgt/disk1.img --size 10G\n  tgtctl storage delete 1"
    )]
    Storage(resources::StorageCmd),
    /// Portals: the addresses the data plane listens on.
    #[command(
        subcommand,
        after_help = "Examples:\n  tgtctl portal list\n  tgtctl portal create --id 0 --address 0.0.0.0:3260\n  tgtctl portal delete 0"
    )]
    Portal(resources::PortalCmd),
    /// ALUA: this gateway's target port group, its peers, and each storage's access states.
    #[command(
        subcommand,
        after_help = "Examples:\n  tgtctl alua set --group 1 --peer 2\n  tgtctl alua states 1\n  tgtctl alua set-state 1 standby"
    )]
    Alua(alua::AluaCmd),
    /// Process-wide performance settings.
    #[command(
        subcommand,
        after_help = "Examples:\n  tgtctl perf get\n  tgtctl perf set workerThreads=2 enableIoUring=true\n  tgtctl perf set --unset cpuList"
    )]
    Perf(resources::PerfCmd),
    /// Logged-in iSCSI sessions.
    #[command(
        subcommand,
        after_help = "Examples:\n  tgtctl session list\n  tgtctl session close 3"
    )]
    Session(resources::SessionCmd),
    /// Whether the data plane is connected and runs the desired config; portals and LUNs.
    #[command(after_help = "Examples:\n  tgtctl status\n  tgtctl status -o json")]
    Status,
    /// The whole desired config.
    #[command(
        subcommand,
        after_help = "Examples:\n  tgtctl config get > tgt.json\n  tgtctl apply -f tgt.json --dry-run"
    )]
    Config(apply::ConfigCmd),
    /// Replaces the whole config with a file, showing what changes (atomic, honours the ETag).
    #[command(
        after_help = "Examples:\n  tgtctl apply -f tgt.json --dry-run   show what would change\n  tgtctl apply -f tgt.json             apply it\n  tgtctl config get | jq '.storages[0].readOnly = true' | tgtctl apply -f -"
    )]
    Apply(apply::ApplyArgs),
    /// A summary of the key counters from /metrics.
    #[command(after_help = "Examples:\n  tgtctl metrics\n  tgtctl metrics -o json")]
    Metrics,
    /// Prints a shell completion script.
    #[command(
        after_help = "Examples:\n  tgtctl completions bash > /etc/bash_completion.d/tgtctl\n  tgtctl completions zsh > \"${fpath[1]}/_tgtctl\"\n  tgtctl completions fish > ~/.config/fish/completions/tgtctl.fish"
    )]
    Completions(CompletionsArgs),
    /// Starts tgt-dataplane and tgt-controlplane with a demo target; Ctrl-C stops both.
    #[command(
        after_help = "Examples:\n  cargo build --release && target/release/tgtctl quickstart\n  tgtctl quickstart --state-dir /tmp/tgt-demo --portal '*:3260'"
    )]
    Quickstart(quickstart::QuickstartArgs),
}

/// `tgtctl completions`.
#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Runs one command and returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    match dispatch(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    let out = cli.output;
    let client = || {
        let token = match &cli.token_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| {
                        CliError::Usage(format!("cannot read token file {}: {e}", p.display()))
                    })?
                    .trim()
                    .to_string(),
            ),
            None => std::env::var("TGTCTL_TOKEN").ok(),
        };
        Client::new(&cli.server, token, cli.ca_file.as_deref())
    };
    match cli.command {
        Command::Target(c) => resources::target(&client()?, out, c),
        Command::Lun(c) => resources::lun(&client()?, out, c),
        Command::Discovery(c) => access::discovery(&client()?, out, c),
        Command::Storage(c) => resources::storage(&client()?, out, c),
        Command::Portal(c) => resources::portal(&client()?, out, c),
        Command::Perf(c) => resources::perf(&client()?, out, c),
        Command::Alua(c) => alua::alua(&client()?, out, c),
        Command::Session(c) => resources::session(&client()?, out, c),
        Command::Status => status::status(&client()?, out),
        Command::Config(c) => apply::config(&client()?, out, c),
        Command::Apply(a) => apply::apply(&client()?, out, &a),
        Command::Metrics => status::metrics(&client()?, out),
        Command::Completions(a) => {
            // Generated into memory first: clap_complete panics on a write error.
            let mut script = Vec::new();
            clap_complete::generate(a.shell, &mut Cli::command(), "tgtctl", &mut script);
            render::write_stdout(&script);
            Ok(())
        }
        Command::Quickstart(a) => quickstart::run(&a),
    }
}

/// Reads a file argument, `-` meaning standard input.
pub fn read_input(path: &PathBuf) -> Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| CliError::Usage(format!("cannot read standard input: {e}")))?;
        Ok(s)
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_has_examples() {
        fn walk(c: &clap::Command, path: &str) {
            let here = format!("{path} {}", c.get_name());
            if c.get_name() != "help" {
                let help = c
                    .get_after_help()
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                assert!(help.contains("Examples:"), "{here} has no examples");
            }
            for s in c.get_subcommands() {
                walk(s, &here);
            }
        }
        walk(&Cli::command(), "");
    }
}

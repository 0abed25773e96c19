//! `tgtctl alua ...`: this gateway's target port group and peers, and the asymmetric
//! access state (SPC-4 5.15) of each group for a storage's logical units, over
//! `/api/v1/alua` and `/api/v1/storages/{device_id}/alua`.

use clap::Subcommand;
use reqwest::Method;
use tgt_proto::api::{AluaGroupState, AluaStateChange};
use tgt_proto::{Alua, AluaPeerGroup, AluaState};

use crate::client::Client;
use crate::render::{document_fields, emit, table, yes_no, Format};
use crate::{CliError, Result};

/// `tgtctl alua ...`
#[derive(Subcommand, Debug)]
pub enum AluaCmd {
    /// Shows this gateway's target port group, relative target port and peer groups.
    #[command(after_help = "Examples:\n  tgtctl alua get\n  tgtctl alua get -o json")]
    Get,
    /// Sets this gateway's target port group and its peers (replaces the alua section).
    #[command(
        after_help = "Examples:\n  tgtctl alua set --group 1 --peer 2        gateway A of a pair\n  tgtctl alua set --group 2 --peer 1        gateway B of the same pair\n  tgtctl alua set --group 1 --relative-port 11 --peer 2:12"
    )]
    Set {
        /// This gateway's target port group (1..=65535).
        #[arg(long)]
        group: u16,
        /// This gateway's relative target port (1..=65535); defaults to the group.
        #[arg(long)]
        relative_port: Option<u16>,
        /// A peer gateway's group, as GROUP or GROUP:RELATIVE_PORT; repeat for each peer.
        #[arg(long, value_name = "GROUP[:PORT]")]
        peer: Vec<String>,
    },
    /// Lists the access state of every target port group for one storage's LUs.
    #[command(after_help = "Examples:\n  tgtctl alua states 1\n  tgtctl alua states 1 -o json")]
    States {
        /// The storage's deviceID.
        device_id: u64,
    },
    /// Sets the access state of one target port group for one storage's LUs, live: every
    /// initiator gets ASYMMETRIC ACCESS STATE CHANGED.
    #[command(
        after_help = "Examples:\n  tgtctl alua set-state 1 standby                this gateway's group\n  tgtctl alua set-state 1 active-optimized --group 2\n\nStates: active-optimized, active-non-optimized, standby, unavailable, transitioning."
    )]
    SetState {
        /// The storage's deviceID.
        device_id: u64,
        /// The new state.
        state: String,
        /// The target port group; defaults to this gateway's.
        #[arg(long)]
        group: Option<u16>,
    },
}

fn parse_peer(s: &str) -> Result<AluaPeerGroup> {
    let bad = || CliError::Usage(format!("--peer {s:?}: expected GROUP or GROUP:PORT"));
    let (g, r) = match s.split_once(':') {
        Some((g, r)) => (g, Some(r.parse().map_err(|_| bad())?)),
        None => (s, None),
    };
    Ok(AluaPeerGroup {
        target_port_group: g.parse().map_err(|_| bad())?,
        relative_target_port: r,
    })
}

fn states_table(v: &[AluaGroupState]) -> String {
    let rows: Vec<Vec<String>> = v
        .iter()
        .map(|g| {
            vec![
                g.target_port_group.to_string(),
                yes_no(g.local),
                g.state.to_string(),
            ]
        })
        .collect();
    table(&["GROUP", "THIS GATEWAY", "STATE"], &rows)
}

/// Runs an `alua` command.
pub fn alua(c: &Client, out: Format, cmd: AluaCmd) -> Result<()> {
    match cmd {
        AluaCmd::Get => {
            let v: Alua = c.get("/api/v1/alua")?.body;
            emit(out, &v, || document_fields(&v));
        }
        AluaCmd::Set {
            group,
            relative_port,
            peer,
        } => {
            let body = Alua {
                target_port_group: group,
                relative_target_port: relative_port,
                peer_groups: peer.iter().map(|p| parse_peer(p)).collect::<Result<_>>()?,
            };
            let v: Alua = c.call(Method::PUT, "/api/v1/alua", Some(&body), &[])?.body;
            emit(out, &v, || {
                format!("alua settings updated\n{}", document_fields(&v))
            });
        }
        AluaCmd::States { device_id } => {
            let v: Vec<AluaGroupState> = c.get(&format!("/api/v1/storages/{device_id}/alua"))?.body;
            emit(out, &v, || states_table(&v));
        }
        AluaCmd::SetState {
            device_id,
            state,
            group,
        } => {
            let state: AluaState = state.parse().map_err(CliError::Usage)?;
            let path = format!("/api/v1/storages/{device_id}/alua");
            let cur = c.get::<Vec<AluaGroupState>>(&path)?;
            let group = match group {
                Some(g) => g,
                None => cur
                    .body
                    .iter()
                    .find(|g| g.local)
                    .map(|g| g.target_port_group)
                    .unwrap_or(1),
            };
            let etag = cur.etag.unwrap_or_else(|| "*".into());
            let v: Vec<AluaGroupState> = c
                .call(
                    Method::PUT,
                    &format!("{path}/{group}"),
                    Some(&AluaStateChange { state }),
                    &[("If-Match", etag.as_str())],
                )?
                .body;
            emit(out, &v, || {
                format!(
                    "storage {device_id}: target port group {group} is {state}\n{}",
                    states_table(&v)
                )
            });
        }
    }
    Ok(())
}

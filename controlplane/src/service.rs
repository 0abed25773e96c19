//! The service layer: owns the desired config, validates changes with `tgt-proto`,
//! pushes them to the data plane, persists them, and keeps the data plane in step.
//!
//! A change is accepted in this order, under one lock so changes are serialised:
//! validate (422 on failure) → push to the data plane with the next generation if it is
//! reachable (a refusal is returned and nothing is stored) → persist atomically. When the
//! data plane is not reachable the change is stored and pushed by [`Service::sync_loop`]
//! once it is. The loop polls the data plane's status; when the data plane restarted (its
//! generation is behind ours) it re-pushes, backing off while the data plane is away.

use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use tgt_proto::api::{ConfigDiff, DryRun, StatusView};
use tgt_proto::socket::{Refusal, Request, Response, SessionInfo, Stats, Status};
use tgt_proto::Config;
use tracing::{info, warn};

use crate::dataplane::DataplaneClient;
use crate::error::ApiError;
use crate::store::{Desired, Store};
use crate::write_only;

/// How often the data plane's status is polled while it is connected.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Longest wait between reconnection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Link {
    connected: bool,
    status: Option<Status>,
    last_error: Option<String>,
}

/// The control plane's state and operations; handlers call nothing else.
pub struct Service {
    store: Store,
    client: DataplaneClient,
    desired: tokio::sync::Mutex<Desired>,
    link: Mutex<Link>,
    wake: tokio::sync::Notify,
}

fn refusal_error(r: Refusal) -> ApiError {
    ApiError::Refused(r)
}

impl Service {
    /// A service over a loaded store and a data plane client.
    pub fn new(store: Store, desired: Desired, client: DataplaneClient) -> Self {
        Self {
            store,
            client,
            desired: tokio::sync::Mutex::new(desired),
            link: Mutex::new(Link::default()),
            wake: tokio::sync::Notify::new(),
        }
    }

    fn link(&self) -> std::sync::MutexGuard<'_, Link> {
        self.link
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The desired config and its generation.
    pub async fn desired(&self) -> Desired {
        self.desired.lock().await.clone()
    }

    /// What `PUT /config` would do with `config`, without doing it: the same precondition
    /// (`check` gets the generation and returns 412), the same secrets kept
    /// ([`write_only::keep_config`]) and the same validation (422 with every field at
    /// fault) as the real request, so a dry run of an invalid config fails exactly as
    /// applying it would. A valid one answers with the diff.
    pub async fn dry_run(
        &self,
        mut config: Config,
        check: impl FnOnce(u64) -> Result<(), ApiError>,
    ) -> Result<DryRun, ApiError> {
        let desired = self.desired.lock().await;
        check(desired.generation)?;
        write_only::keep_config(&mut config, &desired.config);
        let diff = ConfigDiff::between(&desired.config, &config);
        config.validate().map_err(|e| ApiError::Invalid(e.errors))?;
        Ok(DryRun {
            valid: true,
            errors: Vec::new(),
            diff,
        })
    }

    /// Applies an edit to a copy of the desired config and commits the result. `edit` gets
    /// the config and its generation, checks preconditions (returning 404, 409 or 412)
    /// and returns a value for the caller.
    pub async fn update<T>(
        &self,
        edit: impl FnOnce(&mut Config, u64) -> Result<T, ApiError>,
    ) -> Result<(T, Desired), ApiError> {
        let mut desired = self.desired.lock().await;
        let mut config = desired.config.clone();
        let out = edit(&mut config, desired.generation)?;
        if config == desired.config {
            return Ok((out, desired.clone()));
        }
        let valid = config
            .clone()
            .validate()
            .map_err(|e| ApiError::Invalid(e.errors))?;
        let mut generation = desired.generation + 1;
        match self.push(generation, valid.as_config().clone()).await {
            Ok(()) => {}
            Err(PushError::Refused(Refusal::StaleGeneration { current, .. })) => {
                // Someone else pushed to the data plane: move past its generation once.
                generation = current + 1;
                self.push(generation, valid.as_config().clone())
                    .await
                    .map_err(|e| match e {
                        PushError::Refused(r) => refusal_error(r),
                        PushError::Unreachable(e) => ApiError::Unavailable(e),
                    })?;
            }
            Err(PushError::Refused(r)) => return Err(refusal_error(r)),
            Err(PushError::Unreachable(e)) => {
                info!(generation, error = %e, "data plane unreachable: change stored, pushed when it is back");
            }
        }
        let next = Desired { generation, config };
        let store = self.store.clone();
        let to_save = next.clone();
        tokio::task::spawn_blocking(move || store.save(&to_save))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(|e| ApiError::Internal(error_chain(&e)))?;
        let changes = crate::audit::changes(&desired.config, &next.config);
        *desired = next.clone();
        info!(
            who = %crate::audit::actor(),
            generation,
            changes = %changes.join("; "),
            "config changed"
        );
        self.wake.notify_one();
        Ok((out, next))
    }

    async fn push(&self, generation: u64, config: Config) -> Result<(), PushError> {
        match self
            .client
            .call(&Request::ApplyConfig { generation, config })
            .await
        {
            Ok(Response::Applied { .. }) => Ok(()),
            Ok(Response::Refused { reason }) => Err(PushError::Refused(reason)),
            Ok(other) => Err(PushError::Unreachable(format!(
                "unexpected answer {other:?}"
            ))),
            Err(e) => Err(PushError::Unreachable(error_chain(&e))),
        }
    }

    /// Sends a live-state request; 503 when the data plane is not reachable.
    async fn ask(&self, req: Request) -> Result<Response, ApiError> {
        self.client
            .call(&req)
            .await
            .map_err(|e| ApiError::Unavailable(error_chain(&e)))
    }

    /// What the control plane knows of the data plane, refreshed now.
    pub async fn status(&self) -> StatusView {
        let (desired_generation, open_targets) = {
            let d = self.desired.lock().await;
            (d.generation, open_targets(&d.config))
        };
        let live = match self.client.call(&Request::GetStatus).await {
            Ok(Response::Status(s)) => Some(s),
            _ => None,
        };
        let link = self.link();
        let applied = live.as_ref().map(|s| s.generation);
        StatusView {
            dataplane_connected: live.is_some(),
            desired_generation,
            applied_generation: applied,
            in_sync: applied == Some(desired_generation),
            last_error: if applied == Some(desired_generation) {
                None
            } else {
                link.last_error.clone()
            },
            dataplane: live,
            open_targets,
        }
    }

    /// Ready when the data plane is connected and runs the desired generation.
    pub async fn ready(&self) -> bool {
        let s = self.status().await;
        s.dataplane_connected && s.in_sync
    }

    /// The data plane's logged-in sessions.
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>, ApiError> {
        match self.ask(Request::ListSessions).await? {
            Response::Sessions { sessions } => Ok(sessions),
            other => Err(unexpected(&other)),
        }
    }

    /// Force-closes a session.
    pub async fn close_session(&self, tsih: u16) -> Result<(), ApiError> {
        match self.ask(Request::CloseSession { tsih }).await? {
            Response::SessionClosed { .. } => Ok(()),
            Response::Refused { reason } => Err(refusal_error(reason)),
            other => Err(unexpected(&other)),
        }
    }

    /// The data plane's counters and status, for `/metrics`; `None` when unreachable.
    pub async fn live_stats(&self) -> Option<(Status, Stats)> {
        let status = match self.client.call(&Request::GetStatus).await {
            Ok(Response::Status(s)) => s,
            _ => return None,
        };
        match self.client.call(&Request::GetStats).await {
            Ok(Response::Stats(s)) => Some((status, s)),
            _ => None,
        }
    }

    /// Keeps the data plane running the desired config: polls its status, re-pushes after
    /// a restart, backs off while it is away. Logs each change of state once.
    pub async fn sync_loop(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let wait = match self.sync_once().await {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    POLL_INTERVAL
                }
                Err(()) => {
                    let w = backoff;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    w
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    async fn sync_once(&self) -> Result<(), ()> {
        let status = match self.client.call(&Request::GetStatus).await {
            Ok(Response::Status(s)) => s,
            Ok(other) => {
                self.note_error(format!("unexpected answer {other:?}"));
                return Err(());
            }
            Err(e) => {
                let was = std::mem::replace(&mut self.link().connected, false);
                if was {
                    warn!(socket = %self.client.path().display(), error = %error_chain(&e), "data plane connection lost; retrying with backoff");
                } else if self.link().last_error.is_none() {
                    info!(socket = %self.client.path().display(), "waiting for the data plane; retrying with backoff");
                }
                self.link().last_error = Some(error_chain(&e));
                return Err(());
            }
        };
        if !std::mem::replace(&mut self.link().connected, true) {
            info!(generation = status.generation, "data plane connected");
        }
        let mut desired = self.desired.lock().await;
        if desired.generation == 0 || status.generation == desired.generation {
            let mut link = self.link();
            link.status = Some(status);
            link.last_error = None;
            return Ok(());
        }
        if status.generation > desired.generation {
            // The data plane runs a config we did not push (its own --config file, or a
            // lost state directory): ours wins, under a generation past its own.
            desired.generation = status.generation + 1;
        }
        let generation = desired.generation;
        match self.push(generation, desired.config.clone()).await {
            Ok(()) => {
                info!(generation, "desired config pushed to the data plane");
                self.link().last_error = None;
                let store = self.store.clone();
                let to_save = desired.clone();
                drop(desired);
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.save(&to_save)).await
                {
                    warn!(error = %error_chain(&e), "cannot store the desired generation");
                }
                Ok(())
            }
            Err(PushError::Refused(r)) => {
                self.note_error(format!(
                    "the data plane refused generation {generation}: {r}"
                ));
                Err(())
            }
            Err(PushError::Unreachable(e)) => {
                self.note_error(e);
                Err(())
            }
        }
    }

    fn note_error(&self, message: String) {
        let mut link = self.link();
        if link.last_error.as_deref() != Some(message.as_str()) {
            warn!(error = %message, "data plane not in sync");
        }
        link.last_error = Some(message);
    }
}

/// The targets of `config` that neither an ACL nor CHAP protects, by name.
pub fn open_targets(config: &Config) -> Vec<String> {
    // The desired config passed validation when it was stored (or loaded).
    match config.clone().validate() {
        Ok(valid) => valid
            .targets()
            .filter(|t| t.access().is_open())
            .map(|t| t.name().to_string())
            .collect(),
        Err(_) => Vec::new(),
    }
}

enum PushError {
    Refused(Refusal),
    Unreachable(String),
}

fn unexpected(r: &Response) -> ApiError {
    ApiError::Internal(format!("unexpected answer from the data plane: {r:?}"))
}

/// An error and its sources on one line, for logs and problem details.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

//! PgBouncer around a switchover: before the primary is asked to step
//! down, every node that runs a PgBouncer follower PAUSEs its pools (each
//! node holds its own admin credentials; this node asks them over their
//! HTTP APIs); once the new primary runs and each paused PgBouncer points
//! at it, they RESUME. Clients wait instead of failing. A node that cannot
//! be reached, or whose PAUSE fails, is logged and skipped: the switchover
//! proceeds. Each node also RESUMEs by itself at its pause deadline and
//! when it re-points, so a switchover that dies half-way leaves no pool
//! paused.

use std::time::Duration;

use futures::future::join_all;
use raftgres_storage::NodeId;

use super::Ops;
use crate::http::client;
use crate::pgbouncer::ProxyStatus;

/// How long a node's PAUSE may take over HTTP (the node bounds its own
/// PAUSE with `pgbouncer.pause_wait_ms`).
const PAUSE_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a node gets to answer whether it runs a PgBouncer follower.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the other requests may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long, after the new primary is elected, this node waits for each
/// paused PgBouncer to point at it before resuming it regardless.
const REPOINT_WAIT: Duration = Duration::from_secs(15);

/// A node whose PgBouncer this switchover paused.
#[derive(Clone, Debug)]
pub struct Paused {
    pub node: NodeId,
    pub name: String,
    pub url: String,
}

impl Ops {
    /// Every Raft member's API (voters and learners): id, name, base URL.
    fn api_urls(&self) -> Vec<(NodeId, String, String)> {
        let state = self.state();
        self.raft_members()
            .into_iter()
            .filter_map(|(id, (info, _))| {
                let url = state.member(id).map(|m| m.api_url.clone()).filter(|u| !u.is_empty()).or_else(|| {
                    let a = info.api_addr.clone();
                    (!a.is_empty()).then(|| if a.starts_with("http") { a } else { format!("http://{a}") })
                })?;
                Some((id, info.name.clone(), url.trim_end_matches('/').to_string()))
            })
            .collect()
    }

    fn token(&self) -> Option<String> {
        self.handle.transport().token.as_ref().map(|t| t.secret().to_string())
    }

    /// PAUSEs every node's PgBouncer, in parallel; returns those paused.
    pub(super) async fn pause_pgbouncers(&self) -> Vec<Paused> {
        let token = self.token();
        let calls = self.api_urls().into_iter().map(|(node, name, url)| {
            let token = token.clone();
            async move {
                // A quick look first: a node cut off from this one costs
                // the switchover this probe's timeout, not the PAUSE's.
                match client::request("GET", &format!("{url}/pgbouncer"), None, &[], None, PROBE_TIMEOUT).await {
                    Ok(reply) if reply.status == 200 => {}
                    Ok(_) => return None,
                    Err(e) => {
                        tracing::warn!(node, "failed to reach {name} to pause its PgBouncer ({e}); skipped");
                        return None;
                    }
                }
                let r = client::request(
                    "POST",
                    &format!("{url}/pgbouncer/pause"),
                    token.as_deref(),
                    &[],
                    None,
                    PAUSE_REQUEST_TIMEOUT,
                )
                .await;
                match r {
                    Ok(reply) if reply.status == 200 => {
                        tracing::info!(
                            node,
                            name,
                            "{name}'s PgBouncer paused for the switchover: {}",
                            reply.body.trim()
                        );
                        Some(Paused { node, name, url })
                    }
                    Ok(reply) if reply.status == 404 => None,
                    Ok(reply) => {
                        tracing::warn!(
                            node,
                            "failed to pause {name}'s PgBouncer ({}: {}); the switchover proceeds without it",
                            reply.status,
                            reply.body.trim()
                        );
                        None
                    }
                    Err(e) => {
                        tracing::warn!(node, "failed to reach {name} to pause its PgBouncer ({e}); skipped");
                        None
                    }
                }
            }
        });
        join_all(calls).await.into_iter().flatten().collect()
    }

    /// RESUMEs the PgBouncers `paused`: with `epoch` (the new primary's),
    /// first waits (boundedly) until each points at a primary of that
    /// epoch or later, so that no client reaches the old one.
    pub(super) async fn resume_pgbouncers(&self, paused: &[Paused], epoch: Option<u64>) {
        let token = self.token();
        let calls = paused.iter().map(|p| {
            let token = token.clone();
            async move {
                if let Some(epoch) = epoch {
                    let deadline = tokio::time::Instant::now() + REPOINT_WAIT;
                    loop {
                        let status = client::request("GET", &format!("{}/pgbouncer", p.url), None, &[], None, REQUEST_TIMEOUT)
                            .await
                            .ok()
                            .and_then(|r| serde_json::from_str::<ProxyStatus>(&r.body).ok());
                        match status {
                            Some(s) if s.target.as_ref().is_some_and(|t| t.epoch >= epoch) => break,
                            _ if tokio::time::Instant::now() >= deadline => {
                                tracing::warn!(
                                    node = p.node,
                                    "{}'s PgBouncer did not point at the epoch {epoch} primary within {REPOINT_WAIT:?}; \
                                     resuming it anyway",
                                    p.name
                                );
                                break;
                            }
                            _ => tokio::time::sleep(Duration::from_millis(20)).await,
                        }
                    }
                }
                let r = client::request(
                    "POST",
                    &format!("{}/pgbouncer/resume", p.url),
                    token.as_deref(),
                    &[],
                    None,
                    REQUEST_TIMEOUT,
                )
                .await;
                match r {
                    Ok(reply) if reply.status == 200 => tracing::info!(node = p.node, "{}'s PgBouncer resumed", p.name),
                    Ok(reply) => tracing::warn!(
                        node = p.node,
                        "failed to resume {}'s PgBouncer ({}: {}); it resumes at its pause deadline",
                        p.name,
                        reply.status,
                        reply.body.trim()
                    ),
                    Err(e) => tracing::warn!(
                        node = p.node,
                        "failed to resume {}'s PgBouncer ({e}); it resumes at its pause deadline",
                        p.name
                    ),
                }
            }
        });
        join_all(calls).await;
    }
}

//! Starting a node: bind the listener, start the actors, accept connections, read the console,
//! stop on `quit` or a signal.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use futures::SinkExt;
use tokio::net::{TcpListener, TcpStream};

use crate::actors::{
    ClusterActor, DataWatcher, GetMembers, LocalModel, MemberConnected, ModelActor, ModelSlot,
    Notices, Shutdown, Supervision, TrainingSource,
};
use crate::config::Settings;
use crate::console::{self, ConsoleOptions};
use crate::error::{Error, Result};
use crate::net::{self, Greeting, Link, Secret, Tls};
use crate::protocol::{Message, NodeInfo, Role};

/// How long a node that was told to stop may take to say goodbye before it stops anyway.
const LEAVE_GRACE: Duration = Duration::from_secs(3);

/// Runs a node until it is told to stop; returns the exit code. Blocks the calling thread.
pub fn run(settings: Settings, console_opts: ConsoleOptions) -> Result<i32> {
    std::fs::create_dir_all(&settings.node.state_dir).map_err(|e| Error::Config {
        file: "node.state_dir".into(),
        reason: format!("cannot create {}: {e}", settings.node.state_dir.display()),
    })?;
    let system = actix_rt::System::new();
    let notices = Notices {
        json: console_opts.json,
    };
    let http = settings.http.clone();
    let tls = settings.tls.as_ref().map(|t| t.files());
    let id = settings.node.id.clone();
    let cluster = system.block_on(async {
        let cluster = start(settings, notices).await?;
        crate::http::start(&http, tls.as_ref(), cluster.clone(), id).map_err(|e| {
            Error::Config {
                file: "http.listen".into(),
                reason: e.to_string(),
            }
        })?;
        Ok::<_, Error>(cluster)
    })?;
    console::spawn(cluster, console_opts);
    Ok(system.run_with_code()?)
}

/// Binds the listener and starts the actors on the current actix system; returns the cluster
/// actor, the node's entry point.
pub async fn start(settings: Settings, notices: Notices) -> Result<Addr<ClusterActor>> {
    let listener = TcpListener::bind(settings.node.listen)
        .await
        .map_err(|e| Error::Other(format!("cannot listen on {}: {e}", settings.node.listen)))?;
    let bound = listener.local_addr()?;
    // Peers dial what this node advertises; with no `advertise`, the address it is bound to
    // (config validation refuses an unspecified listen address without one).
    let addr = settings
        .node
        .advertise
        .clone()
        .unwrap_or_else(|| bound.to_string());
    let me = NodeInfo {
        id: settings.node.id.clone(),
        addr,
        incarnation: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    };
    let greeting = Greeting {
        cluster: settings.cluster.name.clone(),
        secret: Secret::new(settings.cluster.secret.clone()),
        max_frame_bytes: settings.cluster.max_frame_bytes,
        timeout: settings.cluster.handshake_timeout(),
        tls: match &settings.tls {
            Some(t) => Some(Tls::load(&t.files()).map_err(|e| Error::Config {
                file: "[tls]".into(),
                reason: e.to_string(),
            })?),
            None => None,
        },
    };
    let c = &settings.cluster;
    // A connection in its handshake may become a client: it never gets more room than clients.
    let max_handshakes = c.max_handshakes.min(c.max_connections);
    let pools = Pools {
        handshakes: Arc::new(tokio::sync::Semaphore::new(max_handshakes)),
        max_handshakes,
        clients: Arc::new(tokio::sync::Semaphore::new(c.max_connections)),
        max_clients: c.max_connections,
        client_idle: Duration::from_millis(c.client_idle_ms),
    };
    let supervision = Supervision::default();
    let (local, watcher) = start_model(&settings, &supervision, notices);
    let settings = Arc::new(settings);
    let cluster = {
        let (me, greeting) = (me.clone(), greeting.clone());
        let actor = ClusterActor::new(me, bound, settings, greeting, local, watcher, supervision);
        Supervisor::start(move |_| actor)
    };
    actix_rt::spawn(accept_loop(listener, me, greeting, cluster.clone(), pools));
    actix_rt::spawn(stop_on_signal(cluster.clone()));
    Ok(cluster)
}

/// Starts the supervised model actor, which loads the persisted model before anything asks,
/// and, for a node with a shard, the supervised data watcher.
fn start_model(
    settings: &Settings,
    supervision: &Supervision,
    notices: Notices,
) -> (LocalModel, Option<Addr<DataWatcher>>) {
    let source = settings.data.as_ref().map(|d| TrainingSource {
        node: settings.node.id.clone(),
        shard: d.shard.clone(),
        spec: d.spec(),
        valid_fraction: d.valid_fraction,
        seed: d.seed,
        model: settings.model.clone(),
        drift_bins: settings.drift.enabled.then_some(settings.drift.bins),
    });
    let slot = ModelSlot::default();
    let actor = ModelActor::new(
        source.clone(),
        settings.node.state_dir.clone(),
        Duration::from_millis(settings.testing.save_pause_ms),
        slot.clone(),
        settings.node.train_on_join,
        supervision.clone(),
    );
    let actor = Supervisor::start(move |_| actor);
    let watcher = source.filter(|_| settings.drift.enabled).map(|source| {
        let watcher = DataWatcher::new(
            Arc::new(source),
            settings.drift.clone(),
            slot.clone(),
            actor.clone(),
            notices,
            supervision.clone(),
        );
        Supervisor::start(move |_| watcher)
    });
    let local = LocalModel {
        node: settings.node.id.clone(),
        actor,
        slot,
        max_rows: settings.cluster.max_rows_per_request,
    };
    (local, watcher)
}

/// The limits of inbound connections, each its own pool: connections still in their handshake
/// (unauthenticated, so bounded tightly and dropped at the handshake deadline), and client
/// connections (dropped after `cluster.client_idle_ms` of silence). Members are in neither: once
/// authenticated they live in their peer actors, bounded by `cluster.max_members`, so no number of
/// clients can keep a member out.
#[derive(Clone)]
struct Pools {
    handshakes: Arc<tokio::sync::Semaphore>,
    clients: Arc<tokio::sync::Semaphore>,
    max_handshakes: usize,
    max_clients: usize,
    client_idle: Duration,
}

async fn accept_loop(
    listener: TcpListener,
    me: NodeInfo,
    greeting: Greeting,
    cluster: Addr<ClusterActor>,
    pools: Pools,
) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = pools.handshakes.clone().try_acquire_owned() else {
            tracing::warn!(
                %from,
                "refusing connection: {} connections already open in their handshake",
                pools.max_handshakes
            );
            continue;
        };
        let (me, greeting, cluster, pools) =
            (me.clone(), greeting.clone(), cluster.clone(), pools.clone());
        actix_rt::spawn(async move {
            if let Err(e) = serve_connection(stream, slot, &me, &greeting, cluster, &pools).await {
                tracing::warn!(%from, "{e}");
            }
        });
    }
}

/// Handshakes an inbound connection and hands it to its owner: a member's to the cluster (which
/// gives it to that member's peer actor), a client's to a client link served here.
async fn serve_connection(
    stream: TcpStream,
    handshake_slot: tokio::sync::OwnedSemaphorePermit,
    me: &NodeInfo,
    greeting: &Greeting,
    cluster: Addr<ClusterActor>,
    pools: &Pools,
) -> Result<()> {
    let net::Accepted {
        mut conn,
        role,
        tag,
        access,
    } = net::accept(stream, me, greeting).await?;
    drop(handshake_slot);
    let client_slot = match role {
        Role::Client => match pools.clients.clone().try_acquire_owned() {
            Ok(slot) => Some(slot),
            Err(_) => {
                let reason = format!(
                    "this node serves at most {} clients at once (cluster.max_connections)",
                    pools.max_clients
                );
                let _ = conn
                    .send(Message::Refused {
                        reason: reason.clone(),
                    })
                    .await;
                return Err(Error::Rejected {
                    addr: conn.get_ref().peer_addr()?.to_string(),
                    reason,
                });
            }
        },
        Role::Member(_) => None,
    };
    let members = cluster
        .send(GetMembers)
        .await
        .map_err(|e| Error::Other(e.to_string()))?;
    conn.send(Message::Welcome { members }).await?;
    match role {
        Role::Member(node) => {
            let initiator = node.id.clone();
            cluster.do_send(MemberConnected {
                conn,
                node,
                initiator,
                tag,
            });
        }
        Role::Client => {
            let _slot = client_slot;
            let from = conn.get_ref().peer_addr()?;
            tracing::info!(%from, "client connected");
            let name = format!("client@{from}");
            let link = Link::spawn(
                conn,
                name,
                "client".into(),
                tag,
                access,
                cluster.recipient(),
                // A client's model requests are served by the cluster actor (`serve_link`).
                None,
            );
            serve_client(&link, pools.client_idle).await;
        }
    }
    Ok(())
}

/// Keeps a client link until it closes, or until the client has been silent for `idle` with no
/// answer pending (a client waiting for a long training is not idle).
async fn serve_client(link: &Link, idle: Duration) {
    let check = (idle / 4).max(Duration::from_millis(10));
    loop {
        tokio::select! {
            _ = link.closed() => return,
            _ = tokio::time::sleep(check) => {
                if link.silence() >= idle && link.is_idle() {
                    tracing::info!(client = %link.peer(), "closing an idle client connection");
                    link.close(&format!("idle for {} ms", idle.as_millis()));
                    return;
                }
            }
        }
    }
}

async fn stop_on_signal(cluster: Addr<ClusterActor>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    cluster.do_send(Shutdown);
    // Leaving takes a few hundred milliseconds; a node whose cluster actor cannot do it still
    // stops.
    tokio::time::sleep(LEAVE_GRACE).await;
    tracing::warn!("the node did not leave in time; stopping anyway");
    System::current().stop();
}

//! Sessions come and go: inbound ones accepted on the node's port, each with the epoch
//! current when it arrives, and one dialer per party with a higher manifest index than
//! ours, reconnecting with doubling backoff (100 ms to 5 s) and following epoch changes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::node::NodeContext;
use crate::peer::Event;

/// Accept inbound sessions on `listener` and keep the outbound ones, until `stop`.
pub fn spawn(
    ctx: Arc<NodeContext>,
    listener: TcpListener,
    events: mpsc::Sender<Event>,
    stop: watch::Receiver<bool>,
) {
    {
        let ctx = ctx.clone();
        let ev = events.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, addr) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (ctx, ev, stop) = (ctx.clone(), ev.clone(), stop.clone());
                tokio::spawn(async move {
                    let epoch = ctx.epoch();
                    let acceptor = TlsAcceptor::from(epoch.server_config.clone());
                    match crate::peer::session::accept(&ctx, &epoch, &acceptor, tcp).await {
                        Ok(est) => crate::peer::session::run(ctx, epoch, est, ev, stop).await,
                        Err(e) => {
                            tracing::warn!(from = %addr, error = %e, "inbound session refused")
                        }
                    }
                });
            }
        });
    }
    tokio::spawn(dial_supervisor(ctx, events, stop));
}

/// Keep one dialer per party with a higher index than ours in the current epoch.
async fn dial_supervisor(
    ctx: Arc<NodeContext>,
    events: mpsc::Sender<Event>,
    mut stop: watch::Receiver<bool>,
) {
    let mut epochs = ctx.watch_epochs();
    let mut dialers: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        let epoch = ctx.epoch();
        let wanted: BTreeSet<String> = epoch
            .manifest
            .parties
            .iter()
            .skip(epoch.me + 1)
            .map(|p| p.name.clone())
            .collect();
        dialers.retain(|name, h| {
            let keep = wanted.contains(name) && !h.is_finished();
            if !keep {
                h.abort();
            }
            keep
        });
        for name in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = dialers.entry(name) {
                let name = slot.key().clone();
                slot.insert(tokio::spawn(dialer(
                    ctx.clone(),
                    name,
                    events.clone(),
                    stop.clone(),
                )));
            }
        }
        drop(epoch);
        tokio::select! {
            r = epochs.changed() => if r.is_err() { break },
            _ = crate::util::stopped(&mut stop) => break,
        }
    }
    for h in dialers.values() {
        h.abort();
    }
}

async fn dialer(
    ctx: Arc<NodeContext>,
    name: String,
    events: mpsc::Sender<Event>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return;
        }
        let epoch = ctx.epoch();
        let Some(peer) = epoch.manifest.index_of(&name) else {
            return;
        };
        match crate::peer::session::dial(&ctx, &epoch, peer).await {
            Ok(est) => {
                backoff = Duration::from_millis(100);
                crate::peer::session::run(ctx.clone(), epoch, est, events.clone(), stop.clone())
                    .await;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "peer session not established");
                let _ = events
                    .send(Event::PeerError {
                        party: name.clone(),
                        error: e.to_string(),
                    })
                    .await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = crate::util::stopped(&mut stop) => return,
        }
    }
}

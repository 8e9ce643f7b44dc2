//! One ordered client stream to one peer: items queued for the peer are pumped into a gRPC
//! client-streaming call; when the call breaks, the queue's stale items are dropped (counted),
//! the owner is told, and the pump reconnects with backoff when there is traffic again.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::client::{peer_client_connected, PeerClient, PeerOptions};
use crate::metrics as m;

/// Opens the call on a client with the stream of items to send.
pub(crate) type Open<M> = Box<
    dyn Fn(
            PeerClient,
            ReceiverStream<M>,
        ) -> Pin<Box<dyn Future<Output = Result<(), tonic::Status>> + Send>>
        + Send
        + Sync,
>;

/// What a pump reports.
pub(crate) struct Hooks<M> {
    /// An item went into the stream.
    pub sent: Box<dyn Fn(&M) + Send + Sync>,
    /// An item could not be sent (connection broke while sending it).
    pub lost: Box<dyn Fn(&M) + Send + Sync>,
    /// The stream broke.
    pub broken: Box<dyn Fn() + Send + Sync>,
}

/// Runs until the queue's sender is dropped.
pub(crate) async fn pump<M: Send + 'static>(
    peer: u64,
    address: watch::Receiver<String>,
    mut queue: mpsc::Receiver<M>,
    opts: PeerOptions,
    open: Open<M>,
    hooks: Hooks<M>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        // Connect only when there is something to say.
        let Some(first) = queue.recv().await else {
            return;
        };
        let addr = address.borrow().clone();
        // Connect before sending anything: what cannot be sent is reported lost (and may be
        // re-routed), instead of vanishing into a stream that was never open.
        let client = match peer_client_connected(&addr, &opts).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(peer, address = %addr, error = %e, "cannot reach peer node");
                metrics::counter!(m::PEER_CONNECT_FAILURES).increment(1);
                (hooks.lost)(&first);
                (hooks.broken)();
                while let Ok(item) = queue.try_recv() {
                    (hooks.lost)(&item);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let (tx, rx) = mpsc::channel::<M>(256);
        let mut call = tokio::spawn(open(client, ReceiverStream::new(rx)));
        let mut next = Some(first);
        let mut delivered = false;
        loop {
            if let Some(item) = next.take() {
                // A reserved slot guarantees the item goes into the stream once reported sent.
                match tx.reserve().await {
                    Ok(permit) => {
                        (hooks.sent)(&item);
                        permit.send(item);
                        delivered = true;
                    }
                    Err(_) => {
                        (hooks.lost)(&item);
                        break;
                    }
                }
                continue;
            }
            tokio::select! {
                item = queue.recv() => match item {
                    Some(item) => next = Some(item),
                    None => return,
                },
                res = &mut call => {
                    if let Ok(Err(status)) = res {
                        tracing::debug!(peer, address = %addr, %status, "stream to peer ended");
                    }
                    break;
                }
            }
        }
        call.abort();
        metrics::counter!(m::PEER_CONNECT_FAILURES).increment(1);
        (hooks.broken)();
        if delivered {
            backoff = Duration::from_millis(50);
        }
        // Stale items are worthless after a break (Raft resends; routed stanzas are reported).
        while let Ok(item) = queue.try_recv() {
            (hooks.lost)(&item);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

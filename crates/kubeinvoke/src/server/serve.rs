//! Accepting connections and serving them: TCP, TLS (unless `--http`), then HTTP/1.1 or HTTP/2
//! on hyper, with a graceful stop.
//!
//! Why not `axum-server`: it added per-request work we do not need (a shutdown handle inserted
//! into every request's extensions, a watcher polled with every connection wake-up), which showed
//! in the result-read profile; hyper-util's own pieces do the same job here.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::headers::FrontDoor;

/// A client that opens a connection and never finishes its TLS handshake lets go of it after this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After the stop, connections still busy get this long to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// A failed `accept` (out of file descriptors, say) is retried after this pause, not in a busy loop.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Serves requests through `front_door` on `listener` until `stop` resolves; then accepts
/// nothing more and waits up to [`DRAIN_TIMEOUT`] for open connections to finish what they are
/// answering.
pub(super) async fn serve(
    listener: std::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    front_door: FrontDoor,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    let acceptor = tls.map(TlsAcceptor::from);
    let connections = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // An answer goes out when written, not when the previous one is acknowledged.
        let _ = tcp.set_nodelay(true);
        let watcher = connections.watcher();
        let (acceptor, front_door) = (acceptor.clone(), front_door.clone());
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let service = TowerToHyperService::new(tower::service_fn(move |request: axum::http::Request<_>| {
                let answer = front_door.clone().answer(request.map(Body::new));
                async move { Ok::<_, std::convert::Infallible>(answer.await) }
            }));
            // Errors are the client's (a reset, a bad handshake): nothing to answer, nothing to log.
            let _ = match acceptor {
                Some(acceptor) => match handshake(&acceptor, tcp).await {
                    Some(tls) => watcher.watch(builder.serve_connection(TokioIo::new(tls), service)).await,
                    None => return,
                },
                None => watcher.watch(builder.serve_connection(TokioIo::new(tcp), service)).await,
            };
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.shutdown()).await.is_err() {
        tracing::warn!("connections still open {DRAIN_TIMEOUT:?} after the stop; closing them");
    }
    Ok(())
}

async fn handshake(acceptor: &TlsAcceptor, tcp: TcpStream) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await.ok()?.ok()
}

//! The baseline: hyper + rustls with kubeinvoke's own certificate, answering every request with
//! the bytes of a real result, without routing, authentication or storage. The ceiling a
//! result read could reach on this machine with this TLS stack.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, clap::Args)]
pub struct BaselineArgs {
    /// Certificate chain (PEM).
    #[arg(long)]
    pub cert: PathBuf,
    /// Private key (PEM).
    #[arg(long)]
    pub key: PathBuf,
    /// The response body.
    #[arg(long)]
    pub body: PathBuf,
    #[arg(long, default_value = "application/json")]
    pub content_type: String,
}

/// Serves until killed; prints `listening on https://127.0.0.1:<port>` first.
pub fn run(args: BaselineArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: BaselineArgs) -> anyhow::Result<()> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(&args.cert).context("reading --cert")?.collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&args.key).context("reading --key")?;
    let mut config = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let body = Bytes::from(std::fs::read(&args.body)?);
    let content_type = hyper::header::HeaderValue::from_str(&args.content_type)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on https://127.0.0.1:{}", listener.local_addr()?.port());
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let (acceptor, body, content_type) = (acceptor.clone(), body.clone(), content_type.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            let service = service_fn(move |_request| {
                let mut response = hyper::Response::new(Full::new(body.clone()));
                response.headers_mut().insert(hyper::header::CONTENT_TYPE, content_type.clone());
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
        });
    }
}

//! The activity log's cost and event delivery's rate, in the same run: command throughput with
//! the log written and with it off (`--activity-log false`), and CloudEvents delivered per second
//! to a local receiver (three per command: accepted, started, finished).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::bench::Bench;
use crate::commands::server_rate;
use crate::target::SUB;

pub struct ActivityCost {
    pub commands: usize,
    pub with_log_per_sec: f64,
    pub without_log_per_sec: f64,
    pub events: usize,
    pub events_per_sec: f64,
    pub commands_per_sec_while_delivering: f64,
}

pub async fn run(bench: &Bench) -> anyhow::Result<ActivityCost> {
    let commands = if bench.quick { 200 } else { 1000 };
    let args = ["--max-running", "4", "--queue-capacity", "5000"];
    let with_log = bench.start("activity-on", &args).await?;
    let with_log_per_sec = server_rate(&[&with_log], commands).await?;
    drop(with_log);
    let mut off = args.to_vec();
    off.extend(["--activity-log", "false"]);
    let without = bench.start("activity-off", &off).await?;
    let without_log_per_sec = server_rate(&[&without], commands).await?;
    drop(without);

    // Deliveries: a plain-http receiver on loopback that answers the handshake and counts.
    let received = Arc::new(AtomicUsize::new(0));
    let port = receiver(received.clone()).await?;
    let mut delivering = args.to_vec();
    delivering.push("--event-allow-http-loopback");
    let server = bench.start("activity-events", &delivering).await?;
    server.create_cluster("bench", "rate").await?;
    let subscription = format!(
        "/subscriptions/{SUB}/resourceGroups/bench/providers/Microsoft.EventGrid/eventSubscriptions/bench?api-version=2022-06-15"
    );
    let body = json!({"properties": {"destination": {"endpointType": "WebHook", "properties": {"endpointUrl": format!("http://127.0.0.1:{port}/hook")}},
                                     "eventDeliverySchema": "CloudEventSchemaV1_0"}});
    server.put(&subscription, body).await?;
    let started = Instant::now();
    let commands_per_sec_while_delivering = server_rate(&[&server], commands).await?;
    let events = commands * 3;
    let deadline = Instant::now() + Duration::from_secs(600);
    while received.load(Ordering::Relaxed) < events {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {events} events arrived",
            received.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events_per_sec = events as f64 / started.elapsed().as_secs_f64();
    Ok(ActivityCost {
        commands,
        with_log_per_sec,
        without_log_per_sec,
        events,
        events_per_sec,
        commands_per_sec_while_delivering,
    })
}

/// A minimal HTTP/1.1 receiver: `OPTIONS` gets the handshake answer, `POST` is counted.
async fn receiver(received: Arc<AtomicUsize>) -> anyhow::Result<u16> {
    use http_body_util::{BodyExt, Full};
    use hyper::{Method, Response};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the receiver")?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let received = received.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let received = received.clone();
                    async move {
                        let origin = request.headers().get("webhook-request-origin").cloned();
                        let is_post = request.method() == Method::POST;
                        let _ = request.into_body().collect().await;
                        if is_post {
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                        let mut response = Response::new(Full::new(bytes::Bytes::new()));
                        if let Some(origin) = origin.filter(|_| !is_post) {
                            response.headers_mut().insert("webhook-allowed-origin", origin);
                        }
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    Ok(port)
}

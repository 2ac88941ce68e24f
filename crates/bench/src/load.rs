//! Load generation with `wrk` (Debian's), and latency summaries for the harness's own loops.

use std::time::Duration;

use anyhow::{Context, bail};

/// What one `wrk` run measured, and the command line that produced it.
#[derive(Debug, Clone, Default)]
pub struct WrkResult {
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Responses outside 2xx/3xx.
    pub non_2xx: u64,
    /// Connect, read, write and timeout errors.
    pub socket_errors: u64,
    pub command: String,
}

impl WrkResult {
    /// Runs of the same load taken in turns with others: the mean rate, the median p50, the
    /// worst p99, all errors; the command with the number of runs.
    pub fn combined(runs: &[WrkResult]) -> WrkResult {
        let Some(first) = runs.first() else { return WrkResult::default() };
        let mut p50s: Vec<f64> = runs.iter().map(|r| r.p50_ms).collect();
        p50s.sort_by(f64::total_cmp);
        WrkResult {
            requests_per_sec: runs.iter().map(|r| r.requests_per_sec).sum::<f64>() / runs.len() as f64,
            p50_ms: p50s[p50s.len() / 2],
            p99_ms: runs.iter().map(|r| r.p99_ms).fold(0.0, f64::max),
            non_2xx: runs.iter().map(|r| r.non_2xx).sum(),
            socket_errors: runs.iter().map(|r| r.socket_errors).sum(),
            command: match runs.len() {
                1 => first.command.clone(),
                n => format!("{n} × {}", first.command),
            },
        }
    }
}

/// One `wrk` run: `connections` keep-alive connections for `duration`, optionally authenticated,
/// optionally with a Lua script (e.g. random ids).
pub async fn wrk(
    url: &str,
    token: Option<&str>,
    connections: usize,
    duration: Duration,
    script: Option<&std::path::Path>,
) -> anyhow::Result<WrkResult> {
    let threads = connections.clamp(1, 2);
    let mut args = vec![
        format!("-t{threads}"),
        format!("-c{connections}"),
        format!("-d{}s", duration.as_secs().max(1)),
        "--latency".to_string(),
        "--timeout".to_string(),
        "10s".to_string(),
    ];
    let mut shown = args.clone();
    if let Some(token) = token {
        args.extend(["-H".to_string(), format!("Authorization: Bearer {token}")]);
        shown.extend(["-H".to_string(), "'Authorization: Bearer $TOKEN'".to_string()]);
    }
    if let Some(script) = script {
        args.extend(["-s".to_string(), script.display().to_string()]);
        shown.extend(["-s".to_string(), script.file_name().unwrap_or_default().to_string_lossy().into_owned()]);
    }
    args.push(url.to_string());
    shown.push(redact_host(url));
    let output =
        tokio::process::Command::new("wrk").args(&args).output().await.context("running wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&output.stderr));
    }
    let mut result = parse(&text).with_context(|| format!("parsing wrk output:\n{text}"))?;
    result.command = format!("wrk {}", shown.join(" "));
    Ok(result)
}

/// `https://127.0.0.1:41234/x` → `https://127.0.0.1:PORT/x`: ports change every run.
fn redact_host(url: &str) -> String {
    match url.split_once("://").and_then(|(scheme, rest)| Some((scheme, rest.split_once('/')?))) {
        Some((scheme, (host, path))) => {
            let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
            format!("{scheme}://{host}:PORT/{path}")
        }
        None => url.to_string(),
    }
}

fn parse(text: &str) -> anyhow::Result<WrkResult> {
    let mut result = WrkResult::default();
    let mut in_distribution = false;
    for line in text.lines().map(str::trim) {
        if let Some(rate) = line.strip_prefix("Requests/sec:") {
            result.requests_per_sec = rate.trim().parse()?;
        } else if line.starts_with("Latency Distribution") {
            in_distribution = true;
        } else if in_distribution && let Some((percent, value)) = line.split_once(char::is_whitespace) {
            match percent {
                "50%" => result.p50_ms = duration_ms(value.trim())?,
                "99%" => {
                    result.p99_ms = duration_ms(value.trim())?;
                    in_distribution = false;
                }
                _ => {}
            }
        } else if let Some(count) = line.strip_prefix("Non-2xx or 3xx responses:") {
            result.non_2xx = count.trim().parse()?;
        } else if let Some(errors) = line.strip_prefix("Socket errors:") {
            result.socket_errors =
                errors.split(',').filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok()).sum();
        }
    }
    if result.requests_per_sec == 0.0 {
        bail!("no Requests/sec line");
    }
    Ok(result)
}

/// wrk's `1.23ms`, `456.00us`, `1.02s`, `2.00m` in milliseconds.
fn duration_ms(value: &str) -> anyhow::Result<f64> {
    let split = value.find(|c: char| c.is_ascii_alphabetic()).context("no unit")?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse()?;
    Ok(match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        "m" => number * 60_000.0,
        other => bail!("unknown unit {other:?}"),
    })
}

/// Percentiles of latencies the harness measured itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub samples: u64,
}

pub fn summarize(samples: &[Duration]) -> Latency {
    // Microseconds, from 1 µs to 10 minutes.
    let mut histogram =
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds");
    for sample in samples {
        histogram.saturating_record((sample.as_micros() as u64).max(1));
    }
    Latency {
        p50_ms: histogram.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: histogram.value_at_quantile(0.99) as f64 / 1000.0,
        samples: histogram.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let text = "Running 1s test @ https://127.0.0.1:1/x
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.01ms    1.20ms  20.00ms   80.00%
  Latency Distribution
     50%    2.50ms
     75%    3.00ms
     90%    4.00ms
     99%  812.00us
  1000 requests in 1.00s, 1.00MB read
  Socket errors: connect 0, read 2, write 1, timeout 0
  Non-2xx or 3xx responses: 7
Requests/sec:  21234.56
Transfer/sec:      1.00MB
";
        let r = parse(text).unwrap();
        assert_eq!(r.requests_per_sec, 21234.56);
        assert_eq!(r.p50_ms, 2.5);
        assert_eq!(r.p99_ms, 0.812);
        assert_eq!(r.non_2xx, 7);
        assert_eq!(r.socket_errors, 3);
        let latency = summarize(&[Duration::from_millis(2), Duration::from_millis(3), Duration::from_millis(40)]);
        assert!((latency.p50_ms - 3.0).abs() < 0.01, "{latency:?}");
        assert!((latency.p99_ms - 40.0).abs() < 0.1, "{latency:?}");
        assert_eq!(redact_host("https://127.0.0.1:41234/a/b?c=d"), "https://127.0.0.1:PORT/a/b?c=d");
    }
}

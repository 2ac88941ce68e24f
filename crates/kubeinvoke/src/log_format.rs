//! How a log line is written: the shape of `tracing-subscriber`'s own text and flattened JSON
//! lines, written with less work.
//!
//! Why our own: every request leaves a line, and `tracing-subscriber`'s formatter (a timestamp
//! through its own calendar code, every string field through `Debug` with escaping, terminal
//! styling even when off) took a tenth of a result read's CPU. Here plain strings are copied
//! as they are when nothing in them needs escaping, numbers go through `itoa`, and the rest
//! falls back to the same `Debug` or JSON escaping as before. There are no spans to print: the
//! server emits none.
//!
//! Text: `2026-11-30T19:38:14.155369Z  INFO target: message name=value name="string"`.
//! JSON: `{"timestamp":…,"level":"INFO","message":…,"name":value,…,"target":…}`.

use std::cell::RefCell;
use std::fmt::{self, Debug, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter for the server's log, as text or as one JSON object per line.
#[derive(Debug, Clone, Copy)]
pub struct LineFormat {
    pub json: bool,
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let out: &mut dyn Write = &mut writer;
        let meta = event.metadata();
        if self.json {
            out.write_str("{\"timestamp\":\"")?;
            write_timestamp(out)?;
            out.write_str("\",\"level\":\"")?;
            out.write_str(meta.level().as_str())?;
            out.write_char('"')?;
            let mut fields = JsonFields(Fields::new(out));
            event.record(&mut fields);
            fields.0.result?;
            out.write_str(",\"target\":")?;
            write_json_str(out, meta.target())?;
            out.write_str("}\n")
        } else {
            write_timestamp(out)?;
            out.write_char(' ')?;
            out.write_str(padded(meta.level()))?;
            out.write_char(' ')?;
            out.write_str(meta.target())?;
            out.write_char(':')?;
            let mut fields = TextFields(Fields::new(out));
            event.record(&mut fields);
            fields.0.result?;
            out.write_char('\n')
        }
    }
}

/// Now, as `2026-11-30T19:38:14.155369Z` (RFC 3339, UTC, microseconds).
fn write_timestamp(out: &mut dyn Write) -> fmt::Result {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    write_timestamp_at(out, since_epoch)
}

/// The calendar part (up to the second) is formatted once per second per thread: a line per
/// request made the calendar arithmetic and `fmt` of each timestamp a visible cost.
fn write_timestamp_at(out: &mut dyn Write, since_epoch: Duration) -> fmt::Result {
    thread_local! {
        /// The second last formatted, and its text up to the seconds (no fraction, no `Z`).
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    SECOND.with_borrow_mut(|(second, text)| {
        if *second != since_epoch.as_secs() {
            *second = since_epoch.as_secs();
            text.clear();
            let whole = UNIX_EPOCH + Duration::from_secs(*second);
            write!(text, "{}", humantime::format_rfc3339_seconds(whole))?;
            text.pop(); // its `Z`: the fraction comes first
        }
        out.write_str(text)
    })?;
    let mut digits = itoa::Buffer::new();
    let micros = digits.format(since_epoch.subsec_micros());
    out.write_char('.')?;
    out.write_str(&"000000"[micros.len()..])?;
    out.write_str(micros)?;
    out.write_char('Z')
}

fn padded(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => " WARN",
        Level::INFO => " INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

/// A field's name as written: raw identifiers lose their `r#`.
fn name(field: &Field) -> &str {
    field.name().strip_prefix("r#").unwrap_or(field.name())
}

/// Where an event's fields are written; the first failed write skips the rest.
struct Fields<'a> {
    out: &'a mut dyn Write,
    result: fmt::Result,
}

impl<'a> Fields<'a> {
    fn new(out: &'a mut dyn Write) -> Self {
        Fields { out, result: Ok(()) }
    }

    fn write(&mut self, write: impl FnOnce(&mut dyn Write) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = write(self.out);
        }
    }
}

/// Fields as ` name=value`, the message without its name.
struct TextFields<'a>(Fields<'a>);

impl TextFields<'_> {
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut dyn Write) -> fmt::Result) {
        self.0.write(|out| {
            out.write_char(' ')?;
            out.write_str(name(field))?;
            out.write_char('=')?;
            value(out)
        });
    }
}

impl Visit for TextFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            return self.record_debug(field, &format_args!("{value}"));
        }
        self.field(field, |out| write_debug_str(out, value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |out| out.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |out| out.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        if field.name() == "message" {
            self.0.write(|out| write!(out, " {value:?}"));
        } else {
            self.field(field, |out| write!(out, "{value:?}"));
        }
    }
}

/// Fields as `,"name":value`.
struct JsonFields<'a>(Fields<'a>);

impl JsonFields<'_> {
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut dyn Write) -> fmt::Result) {
        self.0.write(|out| {
            out.write_char(',')?;
            write_json_str(out, name(field))?;
            out.write_char(':')?;
            value(out)
        });
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |out| write_json_str(out, value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |out| out.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |out| out.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |out| out.write_str(if value { "true" } else { "false" }));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        match serde_json::Number::from_f64(value) {
            Some(number) => self.field(field, |out| write!(out, "{number}")),
            None => self.field(field, |out| write_json_str(out, &value.to_string())),
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.field(field, |out| write_json_str(out, &value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.field(field, |out| write_json_str(out, &format!("{value:?}")));
    }
}

/// A string as `Debug` writes it (quoted, escaped), without its per-character work when plain.
fn write_debug_str(out: &mut dyn Write, value: &str) -> fmt::Result {
    // Without short-circuits the check runs over whole vectors of bytes at once.
    if value.bytes().fold(true, |plain, b| plain & (0x20..0x7f).contains(&b) & (b != b'"') & (b != b'\\')) {
        out.write_char('"')?;
        out.write_str(value)?;
        out.write_char('"')
    } else {
        write!(out, "{value:?}")
    }
}

/// A JSON string literal.
fn write_json_str(out: &mut dyn Write, value: &str) -> fmt::Result {
    if value.bytes().fold(true, |plain, b| plain & (b >= 0x20) & (b != b'"') & (b != b'\\')) {
        out.write_char('"')?;
        out.write_str(value)?;
        out.write_char('"')
    } else {
        out.write_str(&serde_json::to_string(value).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(json: bool, emit: impl FnOnce()) -> String {
        let lines = Lines::default();
        let sink = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(LineFormat { json })
            .with_writer(move || sink.clone())
            .with_max_level(Level::TRACE)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        String::from_utf8(lines.0.lock().unwrap().clone()).unwrap()
    }

    fn request_line() {
        let method = axum::http::Method::GET;
        let correlation_id = "c-1";
        tracing::info!(%method, route = "/subscriptions", path = "/sub\"s\n", status = 200u16, elapsed_ms = 3u64, delta = -2i64, correlation_id, "request");
    }

    #[test]
    fn text_lines_have_the_shape_of_tracing_subscribers_full_format() {
        let line = logged(false, request_line);
        let (timestamp, rest) = line.split_once(' ').unwrap();
        assert!(humantime::parse_rfc3339(timestamp).is_ok(), "{timestamp}");
        assert_eq!(timestamp.len(), "2026-11-30T19:38:14.155369Z".len());
        assert_eq!(
            rest,
            " INFO kubeinvoke::log_format::tests: request method=GET route=\"/subscriptions\" path=\"/sub\\\"s\\n\" \
             status=200 elapsed_ms=3 delta=-2 correlation_id=\"c-1\"\n"
        );
    }

    #[test]
    fn timestamps_are_humantimes_rfc3339_with_microseconds_across_seconds() {
        let instants = [0, 999_999, 1_000_000, 1_764_560_294_000_001, 1_764_560_294_999_999, 1_764_560_295_000_000]
            .map(Duration::from_micros);
        // Twice over, so the second pass takes every instant's second from the cache.
        for since_epoch in instants.iter().chain(&instants) {
            let mut ours = String::new();
            write_timestamp_at(&mut ours, *since_epoch).unwrap();
            assert_eq!(ours, humantime::format_rfc3339_micros(UNIX_EPOCH + *since_epoch).to_string());
        }
    }

    #[test]
    fn json_lines_are_flat_objects_with_typed_values() {
        let line = logged(true, request_line);
        assert!(line.ends_with("}\n") && line.lines().count() == 1, "{line}");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(humantime::parse_rfc3339(value["timestamp"].as_str().unwrap()).is_ok());
        assert_eq!(value["level"], "INFO");
        assert_eq!(value["message"], "request");
        assert_eq!(value["method"], "GET");
        assert_eq!(value["path"], "/sub\"s\n");
        assert_eq!(value["status"], 200);
        assert_eq!(value["delta"], -2);
        assert_eq!(value["correlation_id"], "c-1");
        assert_eq!(value["target"], "kubeinvoke::log_format::tests");
    }

    #[test]
    fn errors_debug_values_and_booleans_are_written_in_both_formats() {
        let emit = || {
            let error = std::io::Error::other("disk full");
            tracing::warn!(error = &error as &dyn std::error::Error, list = ?vec![1, 2], done = true, "stopped: {}", "why");
        };
        assert!(
            logged(false, emit)
                .ends_with(" WARN kubeinvoke::log_format::tests: stopped: why error=disk full list=[1, 2] done=true\n")
        );
        let value: serde_json::Value = serde_json::from_str(&logged(true, emit)).unwrap();
        assert_eq!(value["message"], "stopped: why");
        assert_eq!(value["error"], "disk full");
        assert_eq!(value["list"], "[1, 2]");
        assert_eq!(value["done"], true);
        assert_eq!(value["level"], "WARN");
    }
}

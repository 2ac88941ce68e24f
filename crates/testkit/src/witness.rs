//! The outside witness: a listener no sandbox can reach around, told when each command starts and
//! ends, so a test sees what really ran and how many at once.

/// A TCP listener outside every sandbox: commands report `start` and `end` to it (bash's
/// `/dev/tcp`), in the order their connections were made, so it sees how many ran at once.
pub struct Witness {
    pub port: u16,
    pub events: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Witness {
    pub fn start() -> Witness {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = events.clone();
        std::thread::spawn(move || {
            // One connection at a time, in accept order: the order the commands connected in.
            for stream in listener.incoming().flatten() {
                let mut line = String::new();
                let _ = std::io::Read::read_to_string(&mut std::io::Read::take(stream, 256), &mut line);
                seen.lock().unwrap().push(line.trim().to_string());
            }
        });
        Witness { port, events }
    }

    /// A command that reports its start, works for `seconds`, reports its end.
    pub fn command(&self, seconds: f64) -> String {
        format!("echo start >/dev/tcp/127.0.0.1/{p}; sleep {seconds}; echo end >/dev/tcp/127.0.0.1/{p}", p = self.port)
    }

    pub fn count(&self, what: &str) -> usize {
        self.events.lock().unwrap().iter().filter(|e| *e == what).count()
    }

    /// The most commands between their start and end at any moment.
    pub fn most_at_once(&self) -> usize {
        let mut running: i64 = 0;
        let mut most = 0;
        for event in self.events.lock().unwrap().iter() {
            running += if event == "start" { 1 } else { -1 };
            most = most.max(running);
        }
        most as usize
    }
}

/// A file outside every sandbox that commands append timed marks to (`start`, a `beat` every
/// 200 ms, `end`, each with its token and `$EPOCHREALTIME`), so a test sees what ran, how often,
/// and until when — even of a command whose replica was cut off from everything else.
pub struct FileWitness {
    _dir: tempfile::TempDir,
    pub path: std::path::PathBuf,
}

/// What the witness saw of one token.
#[derive(Debug, Default, Clone)]
pub struct Marks {
    pub starts: usize,
    pub ends: usize,
    /// The last mark's time, in Unix milliseconds.
    pub last_ms: i64,
}

impl FileWitness {
    /// A file every command may append to (the directory 0777, the file 0666).
    pub fn create() -> FileWitness {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let path = dir.path().join("ran");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        FileWitness { _dir: dir, path }
    }

    /// A bash line that marks `token`'s start, beats every 200 ms for `seconds`, marks its end.
    pub fn command(&self, token: &str, seconds: f64) -> String {
        let beats = (seconds / 0.2).round() as u64;
        format!(
            "w={w}; echo \"start {token} $EPOCHREALTIME\" >> $w; for i in $(seq {beats}); do sleep 0.2; \
             echo \"beat {token} $EPOCHREALTIME\" >> $w; done; echo \"end {token} $EPOCHREALTIME\" >> $w",
            w = self.path.display()
        )
    }

    /// Every token's marks so far.
    pub fn marks(&self) -> std::collections::HashMap<String, Marks> {
        let mut all: std::collections::HashMap<String, Marks> = std::collections::HashMap::new();
        for line in std::fs::read_to_string(&self.path).unwrap_or_default().lines() {
            let mut fields = line.split_whitespace();
            let (Some(kind), Some(token), Some(at)) = (fields.next(), fields.next(), fields.next()) else { continue };
            let Ok(seconds) = at.parse::<f64>() else { continue };
            let marks = all.entry(token.to_string()).or_default();
            marks.starts += usize::from(kind == "start");
            marks.ends += usize::from(kind == "end");
            marks.last_ms = marks.last_ms.max((seconds * 1000.0) as i64);
        }
        all
    }
}

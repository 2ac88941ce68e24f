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

//! A pool of unprivileged user ids, one per running command, so commands cannot signal,
//! trace or read one another, and `RLIMIT_NPROC` counts each command's processes alone.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

pub struct UidPool {
    free: Mutex<Vec<u32>>,
    returned: Notify,
}

/// A uid held by one run; given back when dropped.
pub struct UidLease {
    pool: Arc<UidPool>,
    pub uid: u32,
}

impl UidPool {
    pub fn new(first: u32, count: usize) -> Arc<Self> {
        let free = (0..count as u32).rev().map(|i| first + i).collect();
        Arc::new(UidPool { free: Mutex::new(free), returned: Notify::new() })
    }

    pub async fn acquire(self: &Arc<Self>) -> UidLease {
        loop {
            let notified = self.returned.notified();
            if let Some(uid) = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop() {
                return UidLease { pool: self.clone(), uid };
            }
            notified.await;
        }
    }
}

impl Drop for UidLease {
    fn drop(&mut self) {
        self.pool.free.lock().unwrap_or_else(|p| p.into_inner()).push(self.uid);
        self.pool.returned.notify_one();
    }
}

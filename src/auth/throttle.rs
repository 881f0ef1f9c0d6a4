//! Login throttling: a soft exponential back-off per account and per client address, never a
//! lockout. After `free` failures each further attempt must wait 2, 4, 8 ... seconds (at most
//! 15 minutes) after the last failure; attempts refused while waiting do not count. A success
//! clears the account's count. Failures older than 15 minutes are forgotten. In memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
const MAX_WAIT_SECS: u64 = 15 * 60;
const MAX_ENTRIES: usize = 100_000;

#[derive(Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
}

pub struct LoginThrottle {
    per_account_free: u32,
    per_address_free: u32,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle::new(5, 30)
    }
}

fn account_key(username: &str) -> String {
    format!("u\0{}", username.trim().to_lowercase())
}

fn address_key(addr: &str) -> String {
    format!("a\0{addr}")
}

impl LoginThrottle {
    pub fn new(per_account_free: u32, per_address_free: u32) -> LoginThrottle {
        LoginThrottle {
            per_account_free,
            per_address_free,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn wait(entry: Option<&Entry>, free: u32, now: Instant) -> Option<u64> {
        let e = entry?;
        if now.duration_since(e.last) > FORGET_AFTER || e.failures < free {
            return None;
        }
        let exp = (e.failures - free + 1).min(20);
        let wait = Duration::from_secs((1u64 << exp).min(MAX_WAIT_SECS));
        let elapsed = now.duration_since(e.last);
        (elapsed < wait).then(|| (wait - elapsed).as_secs().max(1))
    }

    /// `Err(seconds)` when the account or the address must wait.
    pub fn check(&self, username: &str, addr: &str) -> Result<(), u64> {
        let now = Instant::now();
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let a = Self::wait(map.get(&account_key(username)), self.per_account_free, now);
        let b = Self::wait(map.get(&address_key(addr)), self.per_address_free, now);
        match a.max(b) {
            Some(s) => Err(s),
            None => Ok(()),
        }
    }

    pub fn failure(&self, username: &str, addr: &str) {
        let now = Instant::now();
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > MAX_ENTRIES {
            map.retain(|_, e| now.duration_since(e.last) <= FORGET_AFTER);
        }
        for key in [account_key(username), address_key(addr)] {
            let e = map.entry(key).or_insert(Entry {
                failures: 0,
                last: now,
            });
            if now.duration_since(e.last) > FORGET_AFTER {
                e.failures = 0;
            }
            e.failures = e.failures.saturating_add(1);
            e.last = now;
        }
    }

    pub fn success(&self, username: &str) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&account_key(username));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_after_the_free_failures_per_account_only() {
        let t = LoginThrottle::new(5, 30);
        for _ in 0..5 {
            assert!(t.check("alice", "1.2.3.4").is_ok());
            t.failure("alice", "1.2.3.4");
        }
        let wait = t.check("ALICE", "9.9.9.9").unwrap_err();
        assert!((1..=2).contains(&wait), "{wait}");
        assert!(t.check("bob", "1.2.3.4").is_ok());
        t.success("alice");
        assert!(t.check("alice", "1.2.3.4").is_ok());
    }
}

//! Login throttling: a soft exponential back-off per account and per client address, never a
//! lockout. After `free` failures each further attempt must wait 2, 4, 8 ... seconds (at most
//! 15 minutes) after the last failure; attempts refused while waiting do not count. A success
//! clears the account's count. Failures older than 15 minutes are forgotten. In memory.
//!
//! An attempt let through counts against its account until it ends (the `Attempt` guard), so
//! attempts sent in parallel cannot pass the back-off: at most `free` passwords of an account
//! are checked before the first wait, and one per window after it. `Retry-After` is rounded
//! up, so a client that waits what it was told is let through.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
const MAX_WAIT_SECS: u64 = 15 * 60;
const MAX_ENTRIES: usize = 100_000;

#[derive(Clone, Copy)]
struct Entry {
    failures: u32,
    /// Attempts let through and not yet ended (accounts only).
    pending: u32,
    last: Instant,
}

/// An attempt `check` let through: until dropped it counts against the account.
pub struct Attempt<'a> {
    throttle: &'a LoginThrottle,
    key: String,
}

impl std::fmt::Debug for Attempt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Attempt")
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut map = self
            .throttle
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get_mut(&self.key) {
            e.pending = e.pending.saturating_sub(1);
            if e.pending == 0 && e.failures == 0 {
                map.remove(&self.key);
            }
        }
    }
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
        let elapsed = now.duration_since(e.last);
        let failures = if elapsed > FORGET_AFTER {
            0
        } else {
            e.failures
        };
        if failures.saturating_add(e.pending) < free {
            return None;
        }
        if failures >= free {
            let exp = (failures - free + 1).min(20);
            let wait = Duration::from_secs((1u64 << exp).min(MAX_WAIT_SECS));
            if elapsed < wait {
                let left = (wait - elapsed).as_millis().div_ceil(1000);
                return Some((left as u64).max(1));
            }
        }
        // The free attempts, or this window's one, are already being checked.
        (e.pending > 0).then_some(1)
    }

    /// `Err(seconds)` when the account or the address must wait; otherwise the attempt, which
    /// counts against the account until it is dropped (after `failure` or `success`).
    pub fn check(&self, username: &str, addr: &str) -> Result<Attempt<'_>, u64> {
        let now = Instant::now();
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let key = account_key(username);
        let a = Self::wait(map.get(&key), self.per_account_free, now);
        let b = Self::wait(map.get(&address_key(addr)), self.per_address_free, now);
        if let Some(s) = a.max(b) {
            return Err(s);
        }
        map.entry(key.clone())
            .or_insert(Entry {
                failures: 0,
                pending: 0,
                last: now,
            })
            .pending += 1;
        Ok(Attempt {
            throttle: self,
            key,
        })
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
                pending: 0,
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
        if let Some(e) = map.get_mut(&account_key(username)) {
            e.failures = 0;
        }
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

    #[test]
    fn parallel_attempts_do_not_pass_the_back_off() {
        let t = LoginThrottle::new(5, 30);
        let held: Vec<Attempt> = (0..5)
            .map(|_| t.check("alice", "1.2.3.4").unwrap())
            .collect();
        assert_eq!(t.check("alice", "1.2.3.4").unwrap_err(), 1);
        assert!(t.check("bob", "1.2.3.4").is_ok());
        for a in held {
            t.failure("alice", "1.2.3.4");
            drop(a);
        }
        let wait = t.check("alice", "1.2.3.4").unwrap_err();
        assert_eq!(wait, 2, "rounded up");
        // a success lets the next attempt through at once
        let a = t.check("carol", "5.6.7.8").unwrap();
        t.success("carol");
        drop(a);
        assert!(t.check("carol", "5.6.7.8").is_ok());
    }
}

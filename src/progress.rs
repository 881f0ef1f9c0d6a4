//! Progress bars for the commands that can take more than a second (`migrate`, `orgunit
//! import`, `backup`, `restore`). They draw on stderr only when it is a terminal, so scripts,
//! pipes and logs see nothing but the commands' own output.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    fn with(len: Option<u64>, template: &str) -> Progress {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(len, target);
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        if len.is_none() {
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        Progress { bar }
    }

    /// A bar counting `len` items named `unit` (e.g. "org units").
    pub fn items(len: u64, unit: &str) -> Progress {
        Self::with(
            Some(len),
            &format!("{{msg:>12}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{elapsed}})"),
        )
    }

    /// A bar of bytes out of an expected `len`.
    pub fn bytes(len: u64, msg: &'static str) -> Progress {
        let p = Self::with(
            Some(len),
            "{msg:>12} [{bar:40}] {bytes}/{total_bytes} ({elapsed})",
        );
        p.bar.set_message(msg);
        p
    }

    /// A spinner for work of unknown size; with the bytes written so far when `bytes`
    /// (pg_dump's file, followed with [`Progress::follow_file`]).
    pub fn spinner(msg: &'static str, bytes: bool) -> Progress {
        let template = if bytes {
            "{spinner} {msg} {bytes} ({elapsed})"
        } else {
            "{spinner} {msg} ({elapsed})"
        };
        let p = Self::with(None, template);
        p.bar.set_message(msg);
        p
    }

    pub fn set_length(&self, len: u64) {
        self.bar.set_length(len);
    }

    pub fn set_position(&self, pos: u64) {
        self.bar.set_position(pos);
    }

    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    pub fn set_message(&self, msg: impl Into<std::borrow::Cow<'static, str>>) {
        self.bar.set_message(msg);
    }

    /// Follows the size of a file another process or statement is writing (VACUUM INTO,
    /// pg_dump) until the returned guard is dropped.
    pub fn follow_file(&self, path: PathBuf) -> FileWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let bar = self.bar.clone();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                if let Ok(m) = std::fs::metadata(&path) {
                    bar.set_position(m.len());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        FileWatch {
            stop,
            thread: Some(thread),
        }
    }

    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}

/// Stops following a file when dropped.
pub struct FileWatch {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FileWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

//! Backup and restore (TESTING.md): `fieldsync backup` while a device pushes, `fieldsync
//! restore` into a fresh database, a fresh server on it: every op acknowledged before the
//! backup is there, and the device's resend of later ops gives duplicates or applies, once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::both;
use crate::crash::{check_store, Sent, VirtualDevice};
use crate::harness::*;

both!(backup_while_pushing_then_restore, |b| {
    let env = Env::new(b);
    let server = Arc::new(env.start());
    env.add_worker("backup_w", &[V1]);
    let dev = VirtualDevice::new(server.register_device("backup_w"), 77, env.dir.path());
    let stop = Arc::new(AtomicBool::new(false));
    let acked_now = Arc::new(AtomicUsize::new(0));
    let pusher = {
        let (server, stop, acked_now) = (server.clone(), stop.clone(), acked_now.clone());
        let mut d = dev;
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let batch = d.next_batch(true, 20);
                if let Sent::Refused | Sent::NoAnswer = d.send(&server, &batch) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                acked_now.store(d.acked.len(), Ordering::SeqCst);
            }
            d
        })
    };
    std::thread::sleep(Duration::from_millis(700));
    let file = env.dir.path().join("fieldsync.backup");
    let acked_before = acked_now.load(Ordering::SeqCst);
    let t = Instant::now();
    let out = env
        .command()
        .arg("backup")
        .arg("--out")
        .arg(&file)
        .output()
        .unwrap();
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "backup failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let d = pusher.join().unwrap();
    assert!(d.errors.is_empty(), "{:?}", d.errors);
    let during = acked_now.load(Ordering::SeqCst) - acked_before;
    eprintln!(
        "backup on {b:?}: {} bytes in {:.2} s; {acked_before} ops acknowledged before it, {during} during and after",
        std::fs::metadata(&file).unwrap().len(),
        took.as_secs_f64()
    );
    // The source store is intact.
    let v = check_store(&env, std::slice::from_ref(&d));
    assert!(v.is_empty(), "{}", v.join("\n"));

    // Restore into a fresh database; same data dir, so the signing key (not in the database)
    // still verifies the device's token.
    let mut fresh = Env::empty(b);
    fresh.data_dir = env.data_dir.clone();
    let out = fresh
        .command()
        .arg("restore")
        .arg("--from")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restore failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A second restore onto the now non-empty database is refused.
    let again = fresh
        .command()
        .arg("restore")
        .arg("--from")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!again.status.success(), "restore over data was accepted");

    let mut d2 = d.as_of(acked_before, fresh.dir.path());
    let v = check_store(&fresh, std::slice::from_ref(&d2));
    assert!(v.is_empty(), "after restore:\n{}", v.join("\n"));
    let server2 = fresh.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !d2.all_acked() && Instant::now() < deadline {
        let batch = d2.next_batch(false, 200);
        if let Sent::Refused | Sent::NoAnswer = d2.send(&server2, &batch) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(d2.all_acked(), "resend after restore: {:?}", d2.errors);
    assert!(d2.errors.is_empty(), "{:?}", d2.errors);
    drop(server2);
    let v = check_store(&fresh, &[d2]);
    assert!(v.is_empty(), "after resend:\n{}", v.join("\n"));
});

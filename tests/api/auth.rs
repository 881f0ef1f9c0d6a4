//! Accounts, devices, tokens: bad tokens, refresh rotation, lost devices, password storage,
//! login throttling, the audit log. Fixtures here are shared with `access`.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::both;
use crate::common::*;
use fieldsync::auth::keys::Keyring;
use fieldsync::auth::roles::Role;
use fieldsync::auth::users;
use fieldsync::db::schema::{audit_log, users as users_t};
use fieldsync::orgunit::{self, NewOrgUnit};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A new live session (refresh-token family) of `sub`, on device `did`: a crafted access token
/// names one in `sid`, as the server's own tokens do.
fn family(app: &TestApp, sub: &str, did: Option<&str>) -> String {
    fieldsync::auth::tokens::start_family(&mut app.conn(), &app.settings.auth, sub, did)
        .unwrap()
        .id
}

fn claims(app: &TestApp, sub: &str) -> Value {
    let n = now();
    json!({
        "sub": sub, "role": "admin", "iss": app.settings.auth.issuer, "aud": app.settings.auth.audience,
        "exp": n + 600, "nbf": n, "iat": n, "jti": "x", "use": "access",
        "sid": family(app, sub, None)
    })
}

fn sign(app: &TestApp, claims: &Value) -> String {
    let ring = Keyring::load(&app.settings).unwrap();
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = Some(ring.kid().to_string());
    encode(&h, claims, ring.encoding_key()).unwrap()
}

fn public_key_bytes(app: &TestApp) -> Vec<u8> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    let pem = std::fs::read_to_string(app.settings.data_dir.join("signing_key.pem")).unwrap();
    ed25519_dalek::SigningKey::from_pkcs8_pem(&pem)
        .unwrap()
        .verifying_key()
        .to_bytes()
        .to_vec()
}

both!(bad_tokens_are_refused, |b| {
    let app = spawn_app(b);
    let admin = add_user(&app, "root", Role::Admin, None, &[]);
    let me = |t: &str| app.get("/api/v1/me", Some(t));

    // The crafting works: a well-formed token is accepted.
    let good = sign(&app, &claims(&app, &admin));
    assert_eq!(me(&good).status, 200, "{:?}", me(&good).body);

    let mut cases: Vec<(&str, String)> = Vec::new();
    // alg none
    let head = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims(&app, &admin).to_string());
    cases.push(("alg none", format!("{head}.{body}.")));
    // HS256 signed with the public key
    let ring = Keyring::load(&app.settings).unwrap();
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some(ring.kid().to_string());
    let hs = encode(
        &h,
        &claims(&app, &admin),
        &EncodingKey::from_secret(&public_key_bytes(&app)),
    )
    .unwrap();
    cases.push(("HS256 with the public key", hs));
    let pem = std::fs::read(app.settings.data_dir.join("signing_key.pem")).unwrap();
    let hs2 = encode(&h, &claims(&app, &admin), &EncodingKey::from_secret(&pem)).unwrap();
    cases.push(("HS256 with the PEM", hs2));
    let n = now();
    let mut c = claims(&app, &admin);
    c["exp"] = json!(n - 3600);
    c["nbf"] = json!(n - 7200);
    c["iat"] = json!(n - 7200);
    cases.push(("expired", sign(&app, &c)));
    let mut c = claims(&app, &admin);
    c["nbf"] = json!(n + 3600);
    cases.push(("future nbf", sign(&app, &c)));
    let mut c = claims(&app, &admin);
    c["exp"] = json!((n + 600).to_string());
    cases.push(("exp as string", sign(&app, &c)));
    let mut c = claims(&app, &admin);
    c["nbf"] = json!(n.to_string());
    cases.push(("nbf as string", sign(&app, &c)));
    let mut c = claims(&app, &admin);
    c["aud"] = json!("someone-else");
    cases.push(("wrong aud", sign(&app, &c)));
    let mut c = claims(&app, &admin);
    c["iss"] = json!("evil");
    cases.push(("wrong iss", sign(&app, &c)));
    let mut c = claims(&app, &admin);
    c.as_object_mut().unwrap().remove("nbf");
    cases.push(("no nbf", sign(&app, &c)));
    let mut c = claims(&app, &admin);
    c.as_object_mut().unwrap().remove("sub");
    cases.push(("no sub", sign(&app, &c)));
    let mut c = claims(&app, &admin);
    c["use"] = json!("refresh");
    cases.push(("use refresh", sign(&app, &c)));
    let mut c = claims(&app, &admin);
    c["sub"] = json!("no-such-user");
    cases.push(("unknown user", sign(&app, &c)));
    let mut c = claims(&app, &admin);
    c["role"] = json!("worker");
    cases.push(("role differs from the account", sign(&app, &c)));
    // tampered signature
    let mut t = good.clone();
    t.pop();
    t.push(if good.ends_with('A') { 'B' } else { 'A' });
    cases.push(("tampered", t));
    // a refresh token used as an access token
    let s = session(&app, "root");
    cases.push(("refresh token as access", s.refresh.clone()));
    cases.push((
        "huge",
        format!("{}.{}.{}", "a".repeat(3000), "b".repeat(3000), "c"),
    ));
    cases.push(("garbage", "not-a-token".into()));
    for (what, token) in &cases {
        let r = me(token);
        assert_eq!(r.status, 401, "{what}: {:?}", r.body);
        assert_eq!(
            r.header("content-type"),
            Some("application/problem+json"),
            "{what}"
        );
    }
    let mut c = claims(&app, &admin);
    c["exp"] = json!(n - 3600);
    assert_eq!(me(&sign(&app, &c)).body["code"], "token_expired");
    // no header, and a non-bearer scheme
    assert_eq!(app.get("/api/v1/me", None).status, 401);
    let r = app.raw(
        "GET",
        "/api/v1/me",
        &[("Authorization", &format!("Basic {good}"))],
        b"",
    );
    assert_eq!(r.status, 401);

    // a revoked device's token: 403
    seed_tree(&app);
    add_user(&app, "w1", Role::Worker, None, &[village(0, 0, 0)]);
    let w = session(&app, "w1");
    assert_eq!(me(&w.access).status, 200);
    let r = app.post(
        &format!("/api/v1/devices/{}/revoke", w.device_id.as_ref().unwrap()),
        Some(&s.access),
        &json!({}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = me(&w.access);
    assert_eq!(r.status, 403);
    assert_eq!(r.body["code"], "device_revoked");
});

both!(login_answers_tokens_and_me, |b| {
    let from = micros();
    let app = spawn_app(b);
    seed_tree(&app);
    let wid = add_user(
        &app,
        "w1",
        Role::Worker,
        None,
        &[village(0, 0, 0), village(0, 0, 1)],
    );
    add_user(
        &app,
        "ts",
        Role::TownshipSupervisor,
        Some(&township(0, 0)),
        &[],
    );
    let r = login(&app, "w1", None);
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["expires_in"], 900);
    assert_eq!(r.body["user"]["id"], wid.as_str());
    assert_eq!(r.body["user"]["role"], "worker");
    // a worker's token without a device: only register a device and read /me
    let t = access(&r);
    let me = app.get("/api/v1/me", Some(&t));
    assert_eq!(me.status, 200);
    assert_eq!(
        me.body["scope"],
        json!([village(0, 0, 0), village(0, 0, 1)])
    );
    assert!(me.body["device_id"].is_null());
    let r = app.post("/api/v1/sync/pull", Some(&t), &json!({}));
    assert_eq!(r.status, 403, "{:?}", r.body);
    // register a device; its tokens carry the device; a login with it works
    let s = session(&app, "w1");
    let dev = s.device_id.clone().unwrap();
    assert_eq!(
        app.get("/api/v1/me", Some(&s.access)).body["device_id"],
        dev.as_str()
    );
    let r = login(&app, "w1", Some(&dev));
    assert_eq!(r.status, 200);
    // someone else's device or an unknown one: refused
    let r = login(&app, "ts", Some(&dev));
    assert_eq!(r.status, 403);
    let r = login(&app, "w1", Some("no-such-device"));
    assert_eq!(r.status, 403);
    // wrong password, unknown user: the same answer
    let r = app.post(
        "/api/v1/auth/login",
        None,
        &json!({ "username": "w1", "password": "wrong-password" }),
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.body["code"], "invalid_credentials");
    let r = app.post(
        "/api/v1/auth/login",
        None,
        &json!({ "username": "nobody", "password": "wrong-password" }),
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.body["code"], "invalid_credentials");
    // a supervisor's scope is their township
    let s = session(&app, "ts");
    assert_eq!(
        app.get("/api/v1/me", Some(&s.access)).body["scope"],
        json!([township(0, 0)])
    );
    // logout ends the session's refresh token
    let r = app.post(
        "/api/v1/auth/logout",
        None,
        &json!({ "refresh_token": s.refresh }),
    );
    assert_eq!(r.status, 204);
    let r = app.post(
        "/api/v1/auth/refresh",
        None,
        &json!({ "refresh_token": s.refresh }),
    );
    assert_eq!(r.status, 401);
    check_audit_rows(&app, from, micros());
});

fn refresh(app: &TestApp, token: &str) -> Resp {
    app.post(
        "/api/v1/auth/refresh",
        None,
        &json!({ "refresh_token": token }),
    )
}

both!(refresh_rotation_grace_and_replay, |b| {
    let from = micros();
    let app = spawn_app_with(b, |s| s.auth.refresh_grace_secs = 2);
    seed_tree(&app);
    add_user(&app, "w1", Role::Worker, None, &[village(0, 0, 0)]);
    let s = session(&app, "w1");
    let mut chain = vec![s.refresh.clone()];
    for _ in 0..3 {
        let r = refresh(&app, chain.last().unwrap());
        assert_eq!(r.status, 200, "{:?}", r.body);
        let next = refresh_of(&r);
        assert!(!chain.contains(&next));
        // the new access token carries the device and works
        let me = app.get("/api/v1/me", Some(&access(&r)));
        assert_eq!(me.body["device_id"], s.device_id.as_deref().unwrap());
        chain.push(next);
    }
    // a retry of the last rotation inside the grace window gets the same successor
    let r = refresh(&app, &chain[2]);
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(refresh_of(&r), chain[3]);
    // after the grace window, a replay revokes the whole family
    std::thread::sleep(Duration::from_millis(2600));
    let r = refresh(&app, &chain[1]);
    assert_eq!(r.status, 401);
    let r = refresh(&app, &chain[3]);
    assert_eq!(r.status, 401, "the latest token dies with its family");
    let rows: Vec<(String, Option<String>)> = audit_log::table
        .filter(audit_log::action.eq("refresh_reuse"))
        .select((audit_log::action, audit_log::actor_user))
        .load(&mut app.conn())
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1.as_deref(), Some(s.user_id.as_str()));
    // the access token of another session is unaffected; a new login works
    assert_eq!(login(&app, "w1", s.device_id.as_deref()).status, 200);
    check_audit_rows(&app, from, micros());
});

both!(two_refreshes_at_once, |b| {
    let app = spawn_app(b);
    add_user(&app, "root", Role::Admin, None, &[]);
    for _ in 0..5 {
        let s = session(&app, "root");
        let results: Vec<Resp> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..2)
                .map(|_| sc.spawn(|| refresh(&app, &s.refresh)))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ok: Vec<String> = results
            .iter()
            .filter(|r| r.status == 200)
            .map(refresh_of)
            .collect();
        for r in &results {
            assert!(
                r.status == 200 || r.status == 401,
                "{} {:?}",
                r.status,
                r.body
            );
        }
        assert!(!ok.is_empty());
        assert!(ok.iter().all(|t| t == &ok[0]), "two live successors");
        // the one successor works
        assert_eq!(refresh(&app, &ok[0]).status, 200);
    }
});

both!(lost_device_is_revoked, |b| {
    let from = micros();
    let app = spawn_app(b);
    seed_tree(&app);
    add_user(&app, "root", Role::Admin, None, &[]);
    add_user(&app, "w1", Role::Worker, None, &[village(0, 0, 0)]);
    let admin = session(&app, "root");
    let a = session(&app, "w1");
    let b2 = session(&app, "w1");
    assert_ne!(a.device_id, b2.device_id);
    let r = app.post(
        &format!("/api/v1/devices/{}/revoke", a.device_id.as_ref().unwrap()),
        Some(&admin.access),
        &json!({}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "revoked");
    let r = app.get("/api/v1/me", Some(&a.access));
    assert_eq!(r.status, 403);
    let r = refresh(&app, &a.refresh);
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.body["code"], "device_revoked");
    assert_eq!(login(&app, "w1", a.device_id.as_deref()).status, 403);
    // the other device is unaffected
    assert_eq!(app.get("/api/v1/me", Some(&b2.access)).status, 200);
    assert_eq!(refresh(&app, &b2.refresh).status, 200);
    // the revocation is audited
    let n: i64 = audit_log::table
        .filter(audit_log::action.eq("device_revoked"))
        .count()
        .get_result(&mut app.conn())
        .unwrap();
    assert_eq!(n, 1);
    let list = app.get("/api/v1/devices", Some(&admin.access));
    assert_eq!(list.body.as_array().unwrap().len(), 2);
    check_audit_rows(&app, from, micros());
});

both!(passwords_are_argon2id_and_never_stored_plain, |b| {
    let app = spawn_app(b);
    seed_tree(&app);
    add_user(&app, "root", Role::Admin, None, &[]);
    let admin = session(&app, "root");
    let canary = "Canary-Passw0rd-7731";
    let r = app.post(
        "/api/v1/users",
        Some(&admin.access),
        &json!({ "username": "w9", "display_name": "W9", "password": canary, "role": "worker", "villages": [village(0, 0, 0)] }),
    );
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert!(r.body.get("password_hash").is_none());
    // too short
    let r = app.post(
        "/api/v1/users",
        Some(&admin.access),
        &json!({ "username": "w10", "display_name": "W", "password": "short", "role": "worker", "villages": [village(0, 0, 0)] }),
    );
    assert_eq!(r.status, 422);
    let r = app.post(
        "/api/v1/auth/login",
        None,
        &json!({ "username": "w9", "password": canary }),
    );
    assert_eq!(r.status, 200);
    let hashes: Vec<String> = users_t::table
        .select(users_t::password_hash)
        .load(&mut app.conn())
        .unwrap();
    assert_eq!(hashes.len(), 2);
    for h in &hashes {
        let parsed = argon2::PasswordHash::new(h).unwrap();
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        let p = argon2::Params::try_from(&parsed).unwrap();
        assert!(p.m_cost() >= 19456 && p.t_cost() >= 2, "{h}");
        assert!(!h.contains(canary));
    }
    // the canary is nowhere in the users table or the audit log
    let rows: Vec<(String, String, String)> = users_t::table
        .select((
            users_t::username,
            users_t::display_name,
            users_t::password_hash,
        ))
        .load(&mut app.conn())
        .unwrap();
    assert!(!format!("{rows:?}").contains(canary));
    let audit: Vec<Option<String>> = audit_log::table
        .select(audit_log::detail)
        .load(&mut app.conn())
        .unwrap();
    assert!(!format!("{audit:?}").contains(canary));
});

both!(login_throttling_is_per_account, |b| {
    let from = micros();
    let app = spawn_app(b);
    add_user(&app, "alice", Role::Admin, None, &[]);
    add_user(&app, "bob", Role::Admin, None, &[]);
    let mut limited = None;
    for _ in 0..12 {
        let r = app.post(
            "/api/v1/auth/login",
            None,
            &json!({ "username": "alice", "password": "wrong-password" }),
        );
        assert!(r.status == 401 || r.status == 429, "{:?}", r.body);
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("throttled after repeated failures");
    let wait: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(wait >= 1);
    assert_eq!(r.body["code"], "rate_limited");
    // even the right password waits
    assert_eq!(login(&app, "alice", None).status, 429);
    // another account from the same address logs in
    assert_eq!(login(&app, "bob", None).status, 200);
    let failed: i64 = audit_log::table
        .filter(audit_log::action.eq("login_failed"))
        .count()
        .get_result(&mut app.conn())
        .unwrap();
    assert!(failed >= 5);
    check_audit_rows(&app, from, micros());
});

// Per-address throttling behind a reverse proxy: from a trusted proxy the client address is
// taken from X-Forwarded-For, so one client's failures do not throttle everyone behind the
// proxy; from anyone else the header is ignored, so it cannot be forged to dodge the throttle.
both!(login_throttling_per_address_behind_a_proxy, |b| {
    let fail_until_429 = |app: &TestApp, xff: &dyn Fn(usize) -> String| -> usize {
        for i in 0..60 {
            let body = json!({ "username": format!("nobody{i}"), "password": "wrong-password" });
            let r = app.raw(
                "POST",
                "/api/v1/auth/login",
                &[
                    ("content-type", "application/json"),
                    ("x-forwarded-for", &xff(i)),
                ],
                body.to_string().as_bytes(),
            );
            if r.status == 429 {
                return i;
            }
            assert_eq!(r.status, 401, "{:?}", r.body);
        }
        panic!("never throttled");
    };
    let login_from = |app: &TestApp, xff: &str| {
        app.raw(
            "POST",
            "/api/v1/auth/login",
            &[
                ("content-type", "application/json"),
                ("x-forwarded-for", xff),
            ],
            json!({ "username": "carol", "password": PW })
                .to_string()
                .as_bytes(),
        )
        .status
    };
    let app = spawn_app_with(b, |s| {
        s.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    });
    add_user(&app, "carol", Role::Admin, None, &[]);
    let n = fail_until_429(&app, &|_| "198.51.100.7".to_string());
    assert!(n >= 30, "throttled after {n} failures");
    assert_eq!(
        login_from(&app, "198.51.100.7"),
        429,
        "the failing client waits"
    );
    assert_eq!(
        login_from(&app, "198.51.100.8, 127.0.0.1"),
        200,
        "others do not"
    );
    drop(app);

    // No trusted proxy: a forged header changes nothing, the peer address is throttled.
    let app = spawn_app(b);
    add_user(&app, "carol", Role::Admin, None, &[]);
    let n = fail_until_429(&app, &|i| format!("203.0.113.{i}"));
    assert!(n >= 30, "throttled after {n} failures");
    assert_eq!(login_from(&app, "192.0.2.99"), 429);
});

both!(audit_query_and_append_only, |b| {
    let app = spawn_app(b);
    seed_tree(&app);
    let root = add_user(&app, "root", Role::Admin, None, &[]);
    let ts = add_user(
        &app,
        "ts",
        Role::TownshipSupervisor,
        Some(&township(0, 0)),
        &[],
    );
    let admin = session(&app, "root");
    let before = chrono::Utc::now().timestamp_micros();
    std::thread::sleep(Duration::from_millis(5));
    let sup = session(&app, "ts");
    let _ = sup;
    let after = chrono::Utc::now().timestamp_micros() + 1;
    // person reads recorded through the function the supervisor API calls
    {
        let p = fieldsync::auth::Principal {
            user_id: ts.clone(),
            username: "ts".into(),
            role: Role::TownshipSupervisor,
            device_id: None,
            request_id: "req-1".into(),
        };
        let ids = vec![
            "0190aaaa-0000-7000-8000-000000000001".to_string(),
            "0190aaaa-0000-7000-8000-000000000002".to_string(),
        ];
        fieldsync::auth::audit::record_person_reads(&mut app.conn(), &p, &ids).unwrap();
    }
    let r = app.get(&format!("/api/v1/audit?user={ts}"), Some(&admin.access));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let rows = r.body.as_array().unwrap();
    assert!(rows.iter().all(|x| x["actor_user"] == ts.as_str()));
    assert!(rows.iter().any(|x| x["action"] == "login_ok"));
    let r = app.get(
        &format!("/api/v1/audit?user={root}&from={before}&to={after}"),
        Some(&admin.access),
    );
    assert_eq!(
        r.body.as_array().unwrap().len(),
        0,
        "root logged in before `from`: {:?}",
        r.body
    );
    let r = app.get(
        &format!("/api/v1/audit?from={before}&to={after}"),
        Some(&admin.access),
    );
    assert!(
        r.body
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["actor_user"] == ts.as_str()),
        "{:?}",
        r.body
    );
    let r = app.get(
        "/api/v1/audit?person=0190aaaa-0000-7000-8000-000000000002",
        Some(&admin.access),
    );
    let rows = r.body.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["action"], "person_read");
    assert_eq!(rows[0]["request_id"], "req-1");
    let r = app.get("/api/v1/audit?person=x%25", Some(&admin.access));
    assert_eq!(r.status, 400);
    // the database refuses to change or remove audit rows
    let mut c = app.conn();
    assert!(c
        .batch_execute("UPDATE audit_log SET action = 'x'")
        .is_err());
    assert!(c.batch_execute("DELETE FROM audit_log").is_err());
    let n: i64 = audit_log::table.count().get_result(&mut c).unwrap();
    assert!(n >= 3);
});

both!(signing_key_survives_restart, |b| {
    let app = spawn_app(b);
    add_user(&app, "root", Role::Admin, None, &[]);
    let s = session(&app, "root");
    // a second server on the same data dir and database verifies the first one's tokens
    let settings = app.settings.clone();
    let db = app.db.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let a = fieldsync::Application::build(settings, db).unwrap();
            let addr = a.addr();
            let srv = a.server();
            tx.send((addr, srv.handle())).unwrap();
            let _ = srv.await;
        })
    });
    let (addr, handle) = rx.recv().unwrap();
    let r = ureq::get(&format!("http://{addr}/api/v1/me"))
        .set("Authorization", &format!("Bearer {}", s.access))
        .call();
    assert_eq!(r.map(|r| r.status()).unwrap_or(0), 200);
    actix_web::rt::System::new().block_on(handle.stop(false));
    t.join().unwrap();
});

both!(retired_keys_still_verify, |b| {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let old = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let pem = old
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap()
        .to_string();
    let app = spawn_app_with(b, |s| {
        let dir = s.data_dir.join("retired_keys");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("2026-01.pem"), &pem).unwrap();
    });
    let admin = add_user(&app, "root", Role::Admin, None, &[]);
    let sign_with = |k: &ed25519_dalek::SigningKey| {
        let ring = Keyring::from_signing_key(k);
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(ring.kid().to_string());
        encode(&h, &claims(&app, &admin), ring.encoding_key()).unwrap()
    };
    assert_eq!(app.get("/api/v1/me", Some(&sign_with(&old))).status, 200);
    assert_eq!(
        app.get("/api/v1/me", Some(&sign_with(&stranger))).status,
        401
    );
    // a stranger's key under the current kid fails the signature check
    let ring = Keyring::load(&app.settings).unwrap();
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = Some(ring.kid().to_string());
    let forged = encode(
        &h,
        &claims(&app, &admin),
        Keyring::from_signing_key(&stranger).encoding_key(),
    )
    .unwrap();
    assert_eq!(app.get("/api/v1/me", Some(&forged)).status, 401);
});

both!(demo_accounts_are_created_once, |b| {
    let app = spawn_app(b);
    seed_tree(&app);
    let pw = users::ensure_demo_accounts(&mut app.conn())
        .unwrap()
        .expect("a password the first time");
    assert_eq!(pw.len(), 16);
    assert!(users::ensure_demo_accounts(&mut app.conn())
        .unwrap()
        .is_none());
    let list = users::list(&mut app.conn()).unwrap();
    let names: Vec<&str> = list.iter().map(|u| u.username.as_str()).collect();
    for n in ["admin", "county", "township"] {
        assert!(names.contains(&n), "{names:?}");
    }
    let workers = list.iter().filter(|u| u.role == Role::Worker).count();
    assert_eq!(workers, 3, "one worker per village of the demo township");
    let r = app.post(
        "/api/v1/auth/login",
        None,
        &json!({ "username": "admin", "password": pw }),
    );
    assert_eq!(r.status, 200);
    let r = app.post(
        "/api/v1/auth/login",
        None,
        &json!({ "username": "township", "password": pw }),
    );
    assert_eq!(r.body["user"]["org_unit"], township(0, 0).as_str());
});

// ---------------------------------------------------------------------------------------------
// Gaps of the security rows (TESTING.md): missing claims, refresh hashes at rest, data of a
// lost device, the login flood, unknown users, a configured signing key, villager groups, and
// the actor role and time of audit rows.

/// Every audit row written between `from` and `to` (µs) has its time inside the window, and a
/// row naming an actor names the role that account has.
pub fn check_audit_rows(app: &TestApp, from: i64, to: i64) -> usize {
    type Row = (i64, i64, Option<String>, Option<String>, String);
    let rows: Vec<Row> = audit_log::table
        .select((
            audit_log::id,
            audit_log::at,
            audit_log::actor_user,
            audit_log::actor_role,
            audit_log::action,
        ))
        .load(&mut app.conn())
        .unwrap();
    assert!(!rows.is_empty(), "no audit rows");
    let roles: Vec<(String, String)> = users_t::table
        .select((users_t::id, users_t::role))
        .load(&mut app.conn())
        .unwrap();
    for (id, at, user, role, action) in &rows {
        assert!(
            (from..=to).contains(at),
            "audit row {id} ({action}) at {at}, outside the test's window {from}..{to}"
        );
        if let Some(u) = user {
            let want = roles.iter().find(|r| &r.0 == u).map(|r| r.1.as_str());
            assert_eq!(
                role.as_deref(),
                want,
                "audit row {id} ({action}) names {u} without their role"
            );
        }
    }
    rows.len()
}

pub fn micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

both!(tokens_missing_a_claim_are_refused, |b| {
    let from = micros();
    let app = spawn_app(b);
    let admin = add_user(&app, "root", Role::Admin, None, &[]);
    let me = |t: &str| app.get("/api/v1/me", Some(t));
    assert_eq!(me(&sign(&app, &claims(&app, &admin))).status, 200);
    for claim in [
        "exp", "nbf", "aud", "iss", "iat", "jti", "use", "role", "sub", "sid",
    ] {
        let mut c = claims(&app, &admin);
        c.as_object_mut().unwrap().remove(claim);
        let r = me(&sign(&app, &c));
        assert_eq!(r.status, 401, "without {claim}: {:?}", r.body);
        assert_eq!(r.body["code"], "invalid_token", "without {claim}");
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    }
    // The device id: a worker's device token carries it; without it the token is only a
    // worker's sign-in token (register a phone, read /me), never the device's.
    seed_tree(&app);
    add_user(&app, "w1", Role::Worker, None, &[village(0, 0, 0)]);
    let w = session(&app, "w1");
    let mut c = claims(&app, &w.user_id);
    c["role"] = json!("worker");
    c["did"] = json!(w.device_id.as_deref().unwrap());
    c["sid"] = json!(family(&app, &w.user_id, w.device_id.as_deref()));
    let pull = |t: &str| app.post("/api/v1/sync/pull", Some(t), &json!({}));
    assert_eq!(
        pull(&sign(&app, &c)).status,
        200,
        "the crafted device token works"
    );
    let mut bad = c.clone();
    bad["did"] = json!(7);
    assert_eq!(pull(&sign(&app, &bad)).status, 401, "did as a number");
    bad["did"] = json!("no-such-device");
    let r = pull(&sign(&app, &bad));
    assert!(
        r.status == 401 || r.status == 403,
        "unknown did: {:?}",
        r.body
    );
    c.as_object_mut().unwrap().remove("did");
    c["sid"] = json!(family(&app, &w.user_id, None));
    let t = sign(&app, &c);
    let r = pull(&t);
    assert_eq!(r.status, 403, "without did: {:?}", r.body);
    let r = me(&t);
    assert_eq!(r.status, 200);
    assert!(r.body["device_id"].is_null(), "{:?}", r.body);
    check_audit_rows(&app, from, micros());
});

both!(refresh_tokens_are_stored_only_as_hashes, |b| {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE};
    use fieldsync::auth::tokens::{sha256_hex, RefreshRow};
    use fieldsync::db::schema::refresh_tokens;
    let from = micros();
    let app = spawn_app(b);
    seed_tree(&app);
    add_user(&app, "root", Role::Admin, None, &[]);
    add_user(&app, "w1", Role::Worker, None, &[village(0, 0, 0)]);
    let s = session(&app, "root");
    let w = session(&app, "w1");
    let r = refresh(&app, &s.refresh);
    assert_eq!(r.status, 200);
    let tokens = [s.refresh.clone(), w.refresh.clone(), refresh_of(&r)];
    let rows: Vec<RefreshRow> = refresh_tokens::table
        .select(RefreshRow::as_select())
        .load(&mut app.conn())
        .unwrap();
    assert!(rows.len() >= 4, "{rows:?}");
    let dump = format!("{rows:?}");
    for t in &tokens {
        let raw = URL_SAFE_NO_PAD.decode(t).unwrap();
        let encodings = [
            t.clone(),
            hex::encode(&raw),
            hex::encode_upper(&raw),
            STANDARD.encode(&raw),
            STANDARD_NO_PAD.encode(&raw),
            URL_SAFE.encode(&raw),
        ];
        for e in &encodings {
            assert!(
                !dump.contains(e.as_str()),
                "a refresh token in the table: {e}"
            );
        }
        assert!(
            rows.iter().any(|r| r.token_hash == sha256_hex(t)),
            "each token is found by its hash"
        );
    }
    for r in &rows {
        assert_eq!(r.token_hash.len(), 64);
        assert!(r.token_hash.bytes().all(|c| c.is_ascii_hexdigit()));
    }
    check_audit_rows(&app, from, micros());
});

both!(a_lost_device_keeps_what_it_pushed, |b| {
    use crate::common::{new_id, person, seed_units, worker, V1};
    use fieldsync::db::schema::device_ops;
    let from = micros();
    let app = spawn_app(b);
    seed_units(&app);
    let dev = worker(&app, "lost_w", &[V1]);
    add_user(
        &app,
        "lost_ts",
        Role::TownshipSupervisor,
        Some("130131102"),
        &[],
    );
    let ts = session(&app, "lost_ts").access;
    let ids: Vec<String> = (0..3).map(|_| new_id()).collect();
    let names = ["失机甲", "失机乙", "失机丙"];
    let ops: Vec<Value> = ids
        .iter()
        .zip(names)
        .map(|(id, n)| dev.op("person", id, "create", None, person(V1, n)))
        .collect();
    for r in dev.push_ok(&app, &ops) {
        assert_eq!(r["status"], "applied", "{r}");
    }
    let upd = dev.op(
        "person",
        &ids[0],
        "update",
        Some(1),
        json!({"marital_status": "divorced"}),
    );
    assert_eq!(dev.push_ok(&app, &[upd])[0]["status"], "applied");
    // the phone is lost: revoked by its supervisor
    let r = app.post(
        &format!("/api/v1/devices/{}/revoke", dev.device_id),
        Some(&ts),
        &json!({}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let late = dev.op("person", &new_id(), "create", None, person(V1, "失机丁"));
    assert_eq!(dev.push(&app, &[late]).status, 403);
    // what it pushed and had acknowledged stays, and the supervisor sees it
    for (id, n) in ids.iter().zip(names) {
        let r = app.get(&format!("/api/v1/supervise/person/{id}"), Some(&ts));
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["record"]["fields"]["name"], n);
        assert_eq!(r.body["record"]["deleted"], false);
    }
    let r = app.get(&format!("/api/v1/supervise/person/{}", ids[0]), Some(&ts));
    assert_eq!(r.body["record"]["version"], 2);
    assert_eq!(r.body["record"]["fields"]["marital_status"], "divorced");
    let list = app.get("/api/v1/supervise/person?limit=500", Some(&ts));
    assert_eq!(list.body["total"], 3, "{:?}", list.body);
    let acked: i64 = device_ops::table
        .filter(device_ops::device_id.eq(&dev.device_id))
        .count()
        .get_result(&mut app.conn())
        .unwrap();
    assert_eq!(acked, 4, "the device's ledger of applied ops stays");
    check_audit_rows(&app, from, micros());
});

/// A second server on a test app's settings and database, whose authentication state (the
/// password hasher's counters) the test can read.
struct Observed {
    base: String,
    auth: std::sync::Arc<fieldsync::auth::AuthState>,
    handle: Option<actix_web::dev::ServerHandle>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Observed {
    fn start(app: &TestApp) -> Observed {
        let settings = app.settings.clone();
        let db = app.db.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let a = fieldsync::Application::build(settings, db).unwrap();
                let (addr, auth) = (a.addr(), a.auth());
                let srv = a.server();
                tx.send((addr, auth, srv.handle())).unwrap();
                let _ = srv.await;
            })
        });
        let (addr, auth, handle) = rx.recv().unwrap();
        Observed {
            base: format!("http://{addr}"),
            auth,
            handle: Some(handle),
            thread: Some(thread),
        }
    }

    /// A login: status and Retry-After.
    fn login(&self, username: &str, password: &str) -> (u16, Option<u64>) {
        let r = ureq::post(&format!("{}/api/v1/auth/login", self.base))
            .send_json(json!({ "username": username, "password": password }));
        let resp = match r {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{e}"),
        };
        let wait = resp.header("retry-after").map(|v| v.parse().unwrap());
        (resp.status(), wait)
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            actix_web::rt::System::new().block_on(h.stop(false));
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// TESTING.md "login throttling": 200 wrong passwords for one account, 8 at a time, while
// another account signs in; the first is slowed with 429 and Retry-After (soft: after waiting
// it, the right password works), the second signs in, and at most 2 hashes ever run at once.
both!(
    login_flood_backs_off_one_account_with_two_hashes_at_most,
    |b| {
        let from = micros();
        let app = spawn_app(b);
        add_user(&app, "alice", Role::Admin, None, &[]);
        add_user(&app, "bob", Role::Admin, None, &[]);
        let srv = Observed::start(&app);
        let started = std::time::Instant::now();
        let (flood, bob): (Vec<(u16, Option<u64>)>, Vec<u16>) = std::thread::scope(|sc| {
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    sc.spawn(|| {
                        (0..25)
                            .map(|_| srv.login("alice", "wrong-password"))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let bob = sc.spawn(|| (0..3).map(|_| srv.login("bob", PW).0).collect::<Vec<_>>());
            let flood = threads
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect();
            (flood, bob.join().unwrap())
        });
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(flood.len(), 200);
        assert_eq!(
            bob,
            vec![200, 200, 200],
            "the other account signs in during the flood"
        );
        let checked = flood.iter().filter(|r| r.0 == 401).count();
        let refused: Vec<u64> = flood
            .iter()
            .filter(|r| r.0 == 429)
            .map(|r| r.1.expect("429 with Retry-After"))
            .collect();
        assert_eq!(checked + refused.len(), 200, "only 401 or 429: {flood:?}");
        assert!(!refused.is_empty() && refused.iter().all(|w| *w >= 1));
        // 5 free attempts, then one per back-off window (2, 4, 8 ... s) the flood lasted: running
        // 8 at once must not buy more guesses.
        let mut windows = 0;
        let (mut t, mut w) = (0.0, 2.0);
        while t + w <= secs {
            t += w;
            w *= 2.0;
            windows += 1;
        }
        assert!(
            checked <= 5 + windows + 1,
            "{checked} passwords checked in {secs:.1} s of flood"
        );
        let peak = srv.auth.hasher.peak();
        assert!((1..=2).contains(&peak), "{peak} hashes at once");
        // soft back-off: wait what the server says, then the right password works
        let (status, wait) = srv.login("alice", PW);
        if status == 429 {
            let wait = wait.expect("Retry-After");
            assert!(
                wait <= 60,
                "a back-off of {wait} s after {checked} failures"
            );
            std::thread::sleep(Duration::from_secs(wait));
            assert_eq!(srv.login("alice", PW).0, 200, "after waiting {wait} s");
        } else {
            assert_eq!(status, 200);
        }
        drop(srv);
        check_audit_rows(&app, from, micros());
    }
);

both!(unknown_users_cost_a_hash_too, |b| {
    let app = spawn_app(b);
    add_user(&app, "alice", Role::Admin, None, &[]);
    let srv = Observed::start(&app);
    let runs = || srv.auth.hasher.runs();
    let n = runs();
    assert_eq!(srv.login("nobody-here", "wrong-password").0, 401);
    assert_eq!(runs(), n + 1, "an unknown user's login runs the dummy hash");
    assert_eq!(srv.login("alice", "wrong-password").0, 401);
    assert_eq!(runs(), n + 2);
    assert_eq!(srv.login("alice", PW).0, 200);
    assert_eq!(runs(), n + 3);
});

both!(a_signing_key_from_settings_is_the_one_used, |b| {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use fieldsync::auth::keys::kid_of;
    let key = ed25519_dalek::SigningKey::from_bytes(&[11u8; 32]);
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap()
        .to_string();
    let app = spawn_app_with(b, |s| {
        s.auth.signing_key_pem = fieldsync::settings::Secret(pem.clone());
    });
    add_user(&app, "root", Role::Admin, None, &[]);
    let s = session(&app, "root");
    let parts: Vec<&str> = s.access.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], kid_of(&key.verifying_key()).as_str());
    let sig =
        ed25519_dalek::Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
    key.verifying_key()
        .verify_strict(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
        .expect("the token verifies with the configured key's public half");
    let other = ed25519_dalek::SigningKey::from_bytes(&[12u8; 32]);
    assert!(other
        .verifying_key()
        .verify_strict(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
        .is_err());
    assert!(
        !app.settings.data_dir.join("signing_key.pem").exists(),
        "no key generated when one is configured"
    );
    assert_eq!(app.get("/api/v1/me", Some(&s.access)).status, 200);
});

both!(a_group_worker_syncs_only_its_group, |b| {
    use crate::common::{new_id, person, worker};
    let from = micros();
    let app = spawn_app(b);
    seed_tree(&app);
    let v = village(0, 0, 0);
    let (g1, g2) = (format!("{v}01"), format!("{v}02"));
    orgunit::upsert(
        &mut app.conn(),
        &[
            NewOrgUnit {
                code: g1.clone(),
                name: "一组".into(),
                parent: Some(v.clone()),
            },
            NewOrgUnit {
                code: g2.clone(),
                name: "二组".into(),
                parent: Some(v.clone()),
            },
        ],
    )
    .unwrap();
    let mine = worker(&app, "grp1", &[&g1]);
    let theirs = worker(&app, "grp2", &[&g2]);
    let (a, x) = (new_id(), new_id());
    let r = mine.push_ok(
        &app,
        &[mine.op("person", &a, "create", None, person(&g1, "一组人"))],
    );
    assert_eq!(r[0]["status"], "applied", "{r:?}");
    let r = theirs.push_ok(
        &app,
        &[theirs.op("person", &x, "create", None, person(&g2, "二组人"))],
    );
    assert_eq!(r[0]["status"], "applied", "{r:?}");
    // another group of the same village, the village itself, moving a record there: refused
    let refused = mine.push_ok(
        &app,
        &[
            mine.op("person", &new_id(), "create", None, person(&g2, "越组")),
            mine.op("person", &new_id(), "create", None, person(&v, "村级")),
            mine.op("person", &a, "update", Some(1), json!({"org_unit": g2})),
            mine.op(
                "person",
                &x,
                "update",
                Some(1),
                json!({"marital_status": "divorced"}),
            ),
        ],
    );
    for r in &refused {
        assert_eq!(r["status"], "rejected", "{r}");
        assert!(
            r["code"]
                .as_str()
                .is_some_and(|c| c.contains("scope") || c == "not_found"),
            "{r}"
        );
    }
    assert_eq!(refused[0]["code"], "out_of_scope");
    // each pulls its own group only
    let (got, _) = mine.pull_all(&app, 0);
    assert!(got.contains_key(&a));
    assert!(!got.contains_key(&x), "another group's record pulled");
    assert!(
        got.values().all(|r| r["org_unit"] == g1.as_str()),
        "{got:?}"
    );
    let (got, _) = theirs.pull_all(&app, 0);
    assert!(got.contains_key(&x) && !got.contains_key(&a));
    // the record stayed in its group, unchanged by the other group's worker
    add_user(
        &app,
        "grp_ts",
        Role::TownshipSupervisor,
        Some(&township(0, 0)),
        &[],
    );
    let ts = session(&app, "grp_ts").access;
    let r = app.get(&format!("/api/v1/supervise/person/{x}"), Some(&ts));
    assert_eq!(r.body["record"]["version"], 1);
    let r = app.get(&format!("/api/v1/supervise/person/{a}"), Some(&ts));
    assert_eq!(r.body["record"]["org_unit"], g1.as_str());
    check_audit_rows(&app, from, micros());
});

// Issue 13 item 6: an access token ended with its session. Before, a signed-out session's
// access token kept working until it expired (15 minutes), and a revoked device's refresh
// answered 401 instead of 403 `device_revoked`.
both!(access_tokens_end_with_their_session, |b| {
    let app = spawn_app(b);
    seed_tree(&app);
    add_user(&app, "root", Role::Admin, None, &[]);
    add_user(&app, "w1", Role::Worker, None, &[village(0, 0, 0)]);
    let me = |t: &str| app.get("/api/v1/me", Some(t));

    // Logout: the session's access token stops at once; another session goes on.
    let s = session(&app, "root");
    let other = session(&app, "root");
    assert_eq!(me(&s.access).status, 200);
    let r = app.post(
        "/api/v1/auth/logout",
        None,
        &json!({ "refresh_token": s.refresh }),
    );
    assert_eq!(r.status, 204);
    let r = me(&s.access);
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert_eq!(r.body["code"], "session_ended");
    assert_eq!(me(&other.access).status, 200);

    // An access token from a refresh belongs to the same session and ends with it.
    let r = refresh(&app, &other.refresh);
    assert_eq!(r.status, 200, "{:?}", r.body);
    let (rotated_access, rotated_refresh) = (access(&r), refresh_of(&r));
    assert_eq!(me(&rotated_access).status, 200);
    let r = app.post(
        "/api/v1/auth/logout",
        None,
        &json!({ "refresh_token": rotated_refresh }),
    );
    assert_eq!(r.status, 204);
    assert_eq!(me(&rotated_access).status, 401);
    assert_eq!(
        me(&other.access).status,
        401,
        "the first token of the family too"
    );

    // A worker's device: after the revoke its access token is refused (403) and so is its
    // refresh, with the code the docs give; the worker's other device works on.
    let admin = session(&app, "root");
    let lost = session(&app, "w1");
    let kept = session(&app, "w1");
    let pull = |t: &str| app.post("/api/v1/sync/pull", Some(t), &json!({}));
    assert_eq!(pull(&lost.access).status, 200);
    let r = app.post(
        &format!(
            "/api/v1/devices/{}/revoke",
            lost.device_id.as_deref().unwrap()
        ),
        Some(&admin.access),
        &json!({}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = pull(&lost.access);
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.body["code"], "device_revoked");
    let r = refresh(&app, &lost.refresh);
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.body["code"], "device_revoked");
    assert_eq!(pull(&kept.access).status, 200);
    assert_eq!(refresh(&app, &kept.refresh).status, 200);
});

// Issue 15: an admin registers a phone for a field worker and the phone enrols with the
// one-time code; the worker's villages (their scope) are changed by the admin.
both!(
    an_admin_registers_a_device_for_a_worker_and_edits_villages,
    |b| {
        use crate::common::{new_id, person, Dev};
        let from = micros();
        let app = spawn_app(b);
        seed_tree(&app);
        add_user(&app, "root", Role::Admin, None, &[]);
        let (v0, v1) = (village(0, 0, 0), village(0, 0, 1));
        let wid = add_user(&app, "w1", Role::Worker, None, std::slice::from_ref(&v0));
        add_user(&app, "w2", Role::Worker, None, std::slice::from_ref(&v1));
        add_user(
            &app,
            "ts",
            Role::TownshipSupervisor,
            Some(&township(0, 0)),
            &[],
        );
        let admin = session(&app, "root").access;
        let ts = session(&app, "ts").access;
        let register = |token: &str, user: &str| {
            app.post(
                &format!("/api/v1/users/{user}/devices"),
                Some(token),
                &json!({"name": "县配发手机 017"}),
            )
        };
        // Admins only; a worker's account only; an unknown user is 404.
        assert_eq!(register(&ts, &wid).status, 403);
        let ts_id = users_t::table
            .filter(users_t::username.eq("ts"))
            .select(users_t::id)
            .first::<String>(&mut app.conn())
            .unwrap();
        assert_eq!(register(&admin, &ts_id).status, 422);
        assert_eq!(register(&admin, "nope").status, 404);
        let r = register(&admin, &wid);
        assert_eq!(r.status, 201, "{:?}", r.body);
        let code = r.body["enrolment_code"].as_str().unwrap().to_string();
        let device_id = r.body["device"]["id"].as_str().unwrap().to_string();
        assert_eq!(r.body["device"]["username"], "w1");
        assert!(r.body["expires_at"].as_i64().unwrap() > micros());
        // The code is stored only as its hash.
        #[derive(diesel::QueryableByName)]
        struct H {
            #[diesel(sql_type = diesel::sql_types::Text)]
            code_hash: String,
        }
        let stored: Vec<H> = diesel::sql_query("SELECT code_hash FROM device_enrolments")
            .load(&mut app.conn())
            .unwrap();
        assert_eq!(stored.len(), 1);
        assert_ne!(stored[0].code_hash, code);

        // The phone enrols without a password: tokens bound to the device, for the worker.
        let enrol = |c: &str| {
            app.post(
                "/api/v1/devices/enrol",
                None,
                &json!({"enrolment_code": c, "app_version": "2.1"}),
            )
        };
        assert_eq!(enrol("wrong").status, 401);
        let r = enrol(&code);
        assert_eq!(r.status, 201, "{:?}", r.body);
        assert_eq!(r.body["device_id"], device_id.as_str());
        assert_eq!(r.body["user"]["username"], "w1");
        let phone = Dev {
            token: r.body["access_token"].as_str().unwrap().to_string(),
            device_id: device_id.clone(),
            user_id: wid.clone(),
            next_seq: std::sync::atomic::AtomicI64::new(1),
        };
        let r = enrol(&code);
        assert_eq!(r.status, 401, "a code works once");
        assert_eq!(r.body["code"], "invalid_enrolment_code");

        // The phone syncs the worker's village; after the admin moves the worker to another
        // village, it may write there and pulls that village's records, no longer the first's.
        let mine = new_id();
        let r = phone.push_ok(
            &app,
            &[phone.op("person", &mine, "create", None, person(&v0, "甲"))],
        );
        assert_eq!(r[0]["status"], "applied", "{r:?}");
        let other = session(&app, "w2");
        let theirs = new_id();
        let r = app.post(
        "/api/v1/sync/push",
        Some(&other.access),
        &json!({"ops": [{"seq": 1, "op_id": new_id(), "entity": "person", "id": theirs, "kind": "create",
            "set": person(&v1, "乙"), "recorded_at": "2026-11-20T08:00:00Z"}]}),
    );
        assert_eq!(r.body["results"][0]["status"], "applied", "{:?}", r.body);
        let (got, _) = phone.pull_all(&app, 0);
        assert!(got.contains_key(&mine) && !got.contains_key(&theirs));
        let r = app.send(
            "PUT",
            &format!("/api/v1/users/{wid}/villages"),
            Some(&admin),
            &json!({"villages": [v1.clone()]}),
        );
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["villages"], json!([v1.clone()]));
        let (got, _) = phone.pull_all(&app, 0);
        assert!(got.contains_key(&theirs), "the new village is pulled");
        assert!(!got.contains_key(&mine), "the old village is not");
        let r = phone.push_ok(
            &app,
            &[phone.op("person", &new_id(), "create", None, person(&v0, "丙"))],
        );
        assert_eq!(r[0]["status"], "rejected", "{r:?}");

        // Revoked before it enrolled, a device's code no longer works.
        let r = register(&admin, &wid);
        let code2 = r.body["enrolment_code"].as_str().unwrap().to_string();
        let id2 = r.body["device"]["id"].as_str().unwrap().to_string();
        let r = app.post(
            &format!("/api/v1/devices/{id2}/revoke"),
            Some(&admin),
            &json!({}),
        );
        assert_eq!(r.status, 200);
        assert_eq!(enrol(&code2).status, 401);
        check_audit_rows(&app, from, micros());
    }
);

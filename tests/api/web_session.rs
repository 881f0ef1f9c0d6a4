//! The console's browser sessions (`/api/v1/auth/web/*`): the refresh token only in an
//! HttpOnly, SameSite=Strict cookie scoped to its path, the CSRF header and Origin checked.

use serde_json::json;

use crate::both;
use crate::common::seed_units;
use crate::common::*;
use fieldsync::auth::roles::Role;

const CSRF: (&str, &str) = ("X-Fieldsync-Csrf", "1");

fn web_login(app: &TestApp, headers: &[(&str, &str)]) -> Resp {
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    let body = json!({"username": "ts", "password": PW}).to_string();
    app.raw("POST", "/api/v1/auth/web/login", &h, body.as_bytes())
}

/// The `name=value` part of a Set-Cookie header.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim().to_string()
}

both!(web_session_cookie_refresh_logout_and_csrf, |b| {
    let app = spawn_app(b);
    seed_units(&app);
    supervisor(&app, "ts", Role::TownshipSupervisor, "130131102");

    // No CSRF header, or another site's Origin: refused before any password is checked.
    let r = web_login(&app, &[]);
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.body["code"], "csrf_check_failed");
    let r = web_login(&app, &[CSRF, ("Origin", "https://evil.example")]);
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert!(r.header("set-cookie").is_none());

    let own = app.base.clone();
    let r = web_login(&app, &[CSRF, ("Origin", &own)]);
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body.get("refresh_token").is_none(), "{:?}", r.body);
    assert_eq!(r.body["user"]["role"], "township_supervisor");
    let set = r.header("set-cookie").expect("a cookie").to_string();
    for flag in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/api/v1/auth/web",
        "Max-Age=2592000",
    ] {
        assert!(set.contains(flag), "{flag} in {set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP here: {set}");
    let access = r.body["access_token"].as_str().unwrap();
    assert_eq!(app.get("/api/v1/me", Some(access)).status, 200);
    let first = cookie_pair(&set);

    // Refresh from the cookie: a new access token and a rotated cookie.
    let r = app.raw(
        "POST",
        "/api/v1/auth/web/refresh",
        &[("Cookie", &first)],
        b"",
    );
    assert_eq!(r.status, 403, "the CSRF header is required: {:?}", r.body);
    let r = app.raw(
        "POST",
        "/api/v1/auth/web/refresh",
        &[CSRF, ("Cookie", &first)],
        b"",
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body.get("refresh_token").is_none());
    let second = cookie_pair(r.header("set-cookie").unwrap());
    assert_ne!(first, second, "rotated");
    let access = r.body["access_token"].as_str().unwrap();
    assert_eq!(app.get("/api/v1/me", Some(access)).status, 200);
    let r = app.raw("POST", "/api/v1/auth/web/refresh", &[CSRF], b"");
    assert_eq!(r.status, 401, "no cookie: {:?}", r.body);

    // Sign-out revokes the family and clears the cookie.
    let r = app.raw(
        "POST",
        "/api/v1/auth/web/logout",
        &[CSRF, ("Cookie", &second)],
        b"",
    );
    assert_eq!(r.status, 204);
    let cleared = r.header("set-cookie").unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert!(cleared.starts_with("fieldsync_refresh=;"), "{cleared}");
    let r = app.raw(
        "POST",
        "/api/v1/auth/web/refresh",
        &[CSRF, ("Cookie", &second)],
        b"",
    );
    assert_eq!(r.status, 401, "signed out: {:?}", r.body);
    let r = app.raw(
        "POST",
        "/api/v1/auth/web/logout",
        &[("Cookie", &second)],
        b"",
    );
    assert_eq!(r.status, 403, "logout needs the header too");
});

both!(web_session_secure_cookie_behind_tls, |b| {
    let app = spawn_app(b);
    seed_units(&app);
    supervisor(&app, "ts", Role::TownshipSupervisor, "130131102");
    let r = web_login(&app, &[CSRF, ("X-Forwarded-Proto", "https")]);
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.header("set-cookie").unwrap().contains("; Secure"));
});

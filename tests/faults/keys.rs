//! Signing-key rotation with the real binary: `fieldsync key rotate` between two runs of the
//! server; tokens signed before still work, new ones carry the new key id.

use serde_json::json;

use crate::harness::{Backend, Env, PASSWORD, V1};

/// The `kid` in a JWT's header.
fn kid(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let bytes = base64_url_decode(header);
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v["kid"].as_str().unwrap().to_string()
}

fn base64_url_decode(s: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = alphabet.iter().position(|a| *a == c).expect("base64url") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[test]
fn key_rotation_keeps_old_tokens_valid() {
    let env = Env::new(Backend::Sqlite);
    env.add_worker("rot_w", &[V1]);
    let server = env.start();
    let old = server.register_device("rot_w");
    let old_kid = kid(&old.token);
    drop(server);

    let out = env
        .command()
        .args(["key", "rotate"])
        .output()
        .expect("run key rotate");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&format!("retired key {old_kid}")), "{text}");
    assert!(env
        .data_dir
        .join("retired_keys")
        .join(format!("{old_kid}.pem"))
        .exists());

    let server = env.start();
    let me = server.try_get("/api/v1/me", Some(&old.token)).unwrap();
    assert_eq!(
        me.status, 200,
        "a token signed before the rotation: {}",
        me.text
    );
    let r = server.post(
        "/api/v1/auth/login",
        None,
        &json!({"username": "rot_w", "password": PASSWORD, "device_id": old.device_id}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let new_token = r.body["access_token"].as_str().unwrap();
    let new_kid = kid(new_token);
    assert_ne!(new_kid, old_kid);
    assert!(text.contains(&new_kid), "{text}");
    let me = server.try_get("/api/v1/me", Some(new_token)).unwrap();
    assert_eq!(me.status, 200);
    // A refresh token issued before the rotation still rotates.
    let refresh = r.body["refresh_token"].as_str().unwrap();
    let r = server.post(
        "/api/v1/auth/refresh",
        None,
        &json!({ "refresh_token": refresh }),
    );
    assert_eq!(r.status, 200, "{}", r.text);
}

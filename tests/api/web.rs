//! The browser side served by the binary: pages at `/` and `/field/`, their security headers,
//! revalidation, and the vendored libraries checked against their manifest.

use sha2::{Digest, Sha256};

use crate::both;
use crate::common::*;

both!(console_and_field_app_are_served_with_a_strict_policy, |b| {
    let app = spawn_app(b);
    for path in ["/", "/field/", "/console/app.js", "/vendor/idb/index.js"] {
        let r = app.get(path, None);
        assert_eq!(r.status, 200, "{path}");
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("script-src 'self';"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline';") || csp.contains("style-src-attr 'unsafe-inline'"));
        assert!(!csp.contains("script-src 'self' 'unsafe"), "{path}: {csp}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
    }
    let page = app.get("/", None);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let html = page.body.as_str().unwrap();
    assert!(html.contains("lang=\"zh-CN\""), "{html}");
    assert!(
        !html.contains("<script>") && !html.contains("<style"),
        "no inline script or style element: {html}"
    );
    let js = app.get("/vendor/echarts/echarts.esm.min.mjs", None);
    assert!(js
        .header("content-type")
        .unwrap()
        .starts_with("text/javascript"));
});

both!(
    assets_revalidate_with_etags_and_unknown_files_are_404,
    |b| {
        let app = spawn_app(b);
        let first = app.get("/console/app.js", None);
        let etag = first.header("etag").expect("an etag").to_string();
        let agent = ureq::agent();
        let again = agent
            .get(&format!("{}/console/app.js", app.base))
            .set("If-None-Match", &etag)
            .call()
            .expect("304 is not an error");
        assert_eq!(again.status(), 304);
        for path in [
            "/console/nope.js",
            "/vendor/vendor.sh",
            "/field/../Cargo.toml",
        ] {
            let r = app.get(path, None);
            assert_eq!(r.status, 404, "{path}: {:?}", r.body);
            assert_eq!(r.body["code"], "not_found", "{path}");
        }
        let r = ureq::AgentBuilder::new()
            .redirects(0)
            .build()
            .get(&format!("{}/field", app.base))
            .call()
            .expect("a redirect");
        assert_eq!(r.status(), 308);
        assert_eq!(r.header("location"), Some("/field/"));
    }
);

/// web/vendor/vendor.sh records each vendored file's sha256; the committed files must match,
/// and every served library must be in the manifest.
#[test]
fn vendored_libraries_match_their_manifest() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web/vendor");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("manifest.json")).unwrap()).unwrap();
    let mut listed = Vec::new();
    for pkg in manifest["packages"].as_array().unwrap() {
        for key in ["name", "version", "licence", "integrity"] {
            assert!(
                pkg[key].as_str().is_some_and(|s| !s.is_empty()),
                "{key}: {pkg}"
            );
        }
        for f in pkg["files"].as_array().unwrap() {
            let path = f["path"].as_str().unwrap();
            let bytes = std::fs::read(root.join(path)).unwrap();
            assert_eq!(
                hex::encode(Sha256::digest(&bytes)),
                f["sha256"].as_str().unwrap(),
                "{path} differs from web/vendor/manifest.json: rerun web/vendor/vendor.sh"
            );
            listed.push(path.to_string());
        }
    }
    for (path, _, _) in fieldsync::webapp::ASSETS {
        if let Some(rest) = path.strip_prefix("vendor/") {
            assert!(
                rest == "manifest.json" || listed.iter().any(|l| l == rest),
                "{path} is served but not in the manifest"
            );
        }
    }
}

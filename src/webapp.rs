//! The browser side, served by the binary itself: the supervisor console at `/`, the field app
//! at `/field/`, the JavaScript sync client at `/client/` and the vendored libraries at
//! `/vendor/`. The files live in `web/` and are embedded at build time (see build.rs), so a
//! deployment is one binary. Every answer carries a strict Content-Security-Policy: scripts
//! only from this origin, no inline script, no framing.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};

use crate::error::AppError;

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// Scripts, styles, fonts, images and connections only from this origin. Style *attributes*
/// are allowed (ECharts positions its tooltips with them); `<style>` elements and inline
/// scripts are not.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; style-src-attr 'unsafe-inline'; img-src 'self' data: blob:; \
    font-src 'self'; connect-src 'self'; worker-src 'self'; manifest-src 'self'; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The embedded file at `path` (relative to `web/`).
pub fn asset(path: &str) -> Option<(&'static [u8], &'static str)> {
    ASSETS
        .binary_search_by(|(p, _, _)| (*p).cmp(path))
        .ok()
        .map(|i| (ASSETS[i].1, ASSETS[i].2))
}

/// Maps a request path to a file of `web/`: `/` is the console, a path ending in `/` its
/// directory's `index.html`.
fn file_for(path: &str) -> String {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() {
        "console/index.html".to_string()
    } else if rel.ends_with('/') {
        format!("{rel}index.html")
    } else {
        rel.to_string()
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        _ => "text/plain; charset=utf-8",
    }
}

/// `GET /field` has no trailing slash: the app's relative links need one.
pub async fn field_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/field/"))
        .finish()
}

/// Answers one embedded file, with an ETag the browser revalidates (`no-cache`), so a new
/// binary's files are picked up at once while unchanged ones cost a 304.
pub async fn serve(req: HttpRequest) -> Result<HttpResponse, AppError> {
    let path = file_for(req.path());
    let (bytes, etag) = asset(&path).ok_or(AppError::NotFound)?;
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let mut res = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if fresh {
        return Ok(res.finish());
    }
    Ok(res
        .insert_header((header::CONTENT_TYPE, content_type(&path)))
        .body(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_files() {
        assert_eq!(file_for("/"), "console/index.html");
        assert_eq!(file_for("/field/"), "field/index.html");
        assert_eq!(file_for("/console/app.js"), "console/app.js");
    }

    #[test]
    fn assets_are_sorted_for_lookup() {
        assert!(ASSETS.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(asset("console/index.html").is_some());
        assert!(asset("field/index.html").is_some());
        assert!(asset("vendor/vendor.sh").is_none(), "tooling is not served");
    }
}

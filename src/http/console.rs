//! The operator console: one page, its script and its style, served by the admin listener from
//! the binary itself (no build step, nothing fetched from elsewhere).
//!
//! The assets carry no data and need no token. The page keeps the admin token in the tab's
//! `sessionStorage` and sends it as a bearer header to the same `/admin/*` routes the CLI uses;
//! no cookie is ever set, so another site cannot make the browser act with it (no CSRF). The
//! Content-Security-Policy allows only this origin's script, style and requests, and no inline
//! script, so text from the IdP that reaches the page is never run.

use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

/// Same-origin script, style, images and requests only; no inline code, no frames, no forms
/// posted anywhere, no `<base>` that could move relative URLs.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                       img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                       form-action 'none'; frame-ancestors 'none'";

/// `GET /console` (the page), `/console/console.js`, `/console/console.css`; `GET /` and
/// `/console/` send the browser to `/console`.
pub fn routes() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    // Relative URLs in the page (its script, `admin/…`) resolve against `/console`, so
    // `/console/` (which warp would match too) is sent there rather than served.
    let page = warp::path!("console")
        .and(warp::path::full())
        .map(|full: warp::path::FullPath| {
            if full.as_str().ends_with('/') {
                redirect_to_console()
            } else {
                asset(INDEX, "text/html; charset=utf-8")
            }
        });
    let script = warp::path!("console" / "console.js")
        .map(|| asset(SCRIPT, "text/javascript; charset=utf-8"));
    let style =
        warp::path!("console" / "console.css").map(|| asset(STYLE, "text/css; charset=utf-8"));
    let to_console = warp::path::end().map(redirect_to_console);
    warp::get().and(
        page.or(script)
            .unify()
            .or(style)
            .unify()
            .or(to_console)
            .unify(),
    )
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = Response::new(body.into());
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // A new release's page must not run against a cached older script.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn redirect_to_console() -> Response {
    let mut r = Response::new("".into());
    *r.status_mut() = StatusCode::SEE_OTHER;
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/console"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn assets_carry_the_policy_and_their_types() {
        for (path, ty) in [
            ("/console", "text/html"),
            ("/console/console.js", "text/javascript"),
            ("/console/console.css", "text/css"),
        ] {
            let r = warp::test::request().path(path).reply(&routes()).await;
            assert_eq!(r.status(), 200, "{path}");
            let h = r.headers();
            assert!(
                h[header::CONTENT_TYPE].to_str().unwrap().starts_with(ty),
                "{path}"
            );
            assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP, "{path}");
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
        for path in ["/", "/console/"] {
            let r = warp::test::request().path(path).reply(&routes()).await;
            assert_eq!(r.status(), 303, "{path}");
            assert_eq!(r.headers()[header::LOCATION], "/console");
        }
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere_and_runs_no_inline_code() {
        for text in [INDEX, SCRIPT, STYLE] {
            for off_host in ["http://", "https://", "//cdn", "@import", "url("] {
                assert!(!text.contains(off_host), "{off_host} in an asset");
            }
        }
        assert!(!INDEX.contains("<script>"), "inline script");
        assert!(!INDEX.contains("style="), "inline style");
        let handler = INDEX.match_indices(" on").any(|(i, _)| {
            let rest = &INDEX[i + 3..];
            let name_len = rest.chars().take_while(char::is_ascii_lowercase).count();
            name_len > 0 && rest[name_len..].starts_with('=')
        });
        assert!(!handler, "inline event handler");
        // Text from the IdP is set as text, never parsed as HTML; the token stays in the tab.
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!SCRIPT.contains(banned), "{banned} in the script");
        }
        assert!(!SCRIPT.contains("document.cookie") && !SCRIPT.contains("localStorage"));
    }
}

//! The web console as the apiserver serves it, over real HTTPS: its page and files with their security
//! headers (also on its errors), `HEAD` and revalidation, 404s in ACI's shape, `GET /console/v1/me`
//! for a tenant, an operator and no token, `POST /console/v1/manifests` (good, bad, oversized files,
//! and what another tenant sees afterwards), that no console source builds HTML from strings, and
//! that the API around it answers as before.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::errors::assert_error;
use crate::harness::{Api, Cluster, OTHER_SUB, SHARED, SUB, Shared, group_path};
use crate::wire::{self, BOTH, Proto};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One request without a token; status, headers, body.
async fn fetch(
    proto: Proto,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let s = SHARED.clone();
    let mut req = wire::client(&s.ca_pem, proto).request(method, format!("{}{path}", s.base));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.expect("an answer");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("a whole body").to_vec();
    (status, headers, body)
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
}

/// The headers every console answer carries, `cache` being its Cache-Control.
fn assert_console_headers(headers: &reqwest::header::HeaderMap, cache: &str, what: &str) {
    assert_eq!(header(headers, "content-security-policy"), CSP, "{what}");
    assert_eq!(header(headers, "x-frame-options"), "DENY", "{what}");
    assert_eq!(
        header(headers, "x-content-type-options"),
        "nosniff",
        "{what}"
    );
    assert_eq!(header(headers, "referrer-policy"), "no-referrer", "{what}");
    assert_eq!(header(headers, "cache-control"), cache, "{what}");
    assert!(headers.get("set-cookie").is_none(), "{what}: {headers:?}");
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

#[tokio::test]
async fn the_page_and_its_files_carry_the_security_headers() {
    for proto in BOTH {
        let (status, headers, body) = fetch(proto, Method::GET, "/", &[]).await;
        assert_eq!(status, StatusCode::OK, "{proto:?}");
        assert_console_headers(&headers, "no-cache", "GET /");
        assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
        let page = String::from_utf8(body).expect("UTF-8 page");
        assert!(
            page.contains(r#"<script type="module" src="/console/app.js"></script>"#),
            "{page}"
        );

        for (path, mime) in [
            ("/console/app.js", "javascript; charset=utf-8"),
            ("/console/pages/signin.js", "javascript; charset=utf-8"),
            ("/console/console.css", "text/css; charset=utf-8"),
            ("/console/vendor/xterm.js", "javascript; charset=utf-8"),
            ("/console/vendor/xterm.css", "text/css; charset=utf-8"),
            ("/console/vendor/addon-fit.js", "javascript; charset=utf-8"),
        ] {
            let (status, headers, body) = fetch(proto, Method::GET, path, &[]).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_console_headers(&headers, "no-cache", path);
            // Module scripts need a JavaScript type, and nosniff holds the browser to it.
            let ty = header(&headers, "content-type");
            assert!(ty.ends_with(mime), "{path}: {ty}");
            assert!(!body.is_empty(), "{path}");
            if path == "/console/vendor/xterm.js" {
                let text = String::from_utf8_lossy(&body);
                assert!(text.contains("Terminal"), "xterm.js is xterm.js");
            }
        }
    }
}

#[tokio::test]
async fn head_and_revalidation_answer_without_the_body() {
    let (_, got, body) = fetch(Proto::H1, Method::GET, "/console/vendor/xterm.js", &[]).await;
    let etag = header(&got, "etag").to_owned();
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");

    for proto in BOTH {
        for path in ["/", "/console/vendor/xterm.js"] {
            let (status, headers, head_body) = fetch(proto, Method::HEAD, path, &[]).await;
            assert_eq!(status, StatusCode::OK, "HEAD {path} {proto:?}");
            assert!(head_body.is_empty(), "HEAD {path}");
            assert_console_headers(&headers, "no-cache", path);
            assert!(header(&headers, "content-type").contains("charset=utf-8"));
        }
        let (status, headers, again) = fetch(
            proto,
            Method::GET,
            "/console/vendor/xterm.js",
            &[("if-none-match", &etag)],
        )
        .await;
        assert_eq!(status, StatusCode::NOT_MODIFIED, "{proto:?}");
        assert!(again.is_empty());
        assert_eq!(header(&headers, "etag"), etag);
        assert_console_headers(&headers, "no-cache", "304");
        // Another file's tag is not this one's.
        let (status, _, fresh) = fetch(
            proto,
            Method::GET,
            "/console/app.js",
            &[("if-none-match", &etag)],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(!fresh.is_empty());
    }
    assert!(
        body.len() > 100_000,
        "the whole of xterm.js: {}",
        body.len()
    );
}

#[tokio::test]
async fn unknown_console_paths_are_404_in_acis_shape_with_the_headers() {
    for proto in BOTH {
        for (path, target) in [
            ("/console/nope.js", "nope.js"),
            ("/console/pages/nope.js", "pages/nope.js"),
            ("/console/vendor/nope.js", "nope.js"),
            ("/console/..%2fCargo.toml", "../Cargo.toml"),
            ("/console/v1/nope", "v1/nope"),
            ("/console", "/console"),
        ] {
            let (status, headers, body) = fetch(proto, Method::GET, path, &[]).await;
            let what = format!("{path} {proto:?}");
            assert_error(
                status.as_u16(),
                &json_of(&body),
                404,
                "NotFound",
                target,
                &what,
            );
            let cache = if path.starts_with("/console/v1/") {
                "no-store"
            } else {
                "no-cache"
            };
            assert_console_headers(&headers, cache, &what);
            assert!(header(&headers, "content-type").starts_with("application/json"));
        }
        let (status, headers, body) = fetch(proto, Method::POST, "/", &[]).await;
        assert_error(
            status.as_u16(),
            &json_of(&body),
            405,
            "MethodNotAllowed",
            "POST",
            "POST /",
        );
        assert_console_headers(&headers, "no-cache", "POST /");
    }
}

#[tokio::test]
async fn me_says_who_the_token_is() {
    let s = SHARED.clone();
    let (status, headers, body) = Shared::tenant_api()
        .raw(Method::GET, "/console/v1/me", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"operator": false, "subscriptions": [SUB]}));
    assert_console_headers(&headers, "no-store", "me");

    let (status, body) = Shared::operator_api()
        .call(Method::GET, "/console/v1/me", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["operator"], true, "{body}");

    let (status, headers, body) = fetch(Proto::H2, Method::GET, "/console/v1/me", &[]).await;
    let body = json_of(&body);
    assert_error(
        status.as_u16(),
        &body,
        401,
        "AuthenticationFailed",
        "Authorization",
        "no token",
    );
    assert_console_headers(&headers, "no-store", "401");
    let (status, body) = Api::new(&s.base, &s.ca_pem, "berth_nope_nope")
        .call(Method::GET, "/console/v1/me", None)
        .await;
    assert_error(
        status.as_u16(),
        &body,
        401,
        "InvalidAuthenticationToken",
        "Authorization",
        "wrong token",
    );
}

const YAML: &str = "\
apiVersion: 2023-05-01
name: from-yaml
properties:
  osType: Linux
  containers:
  - name: web
    properties:
      image: registry.local/busybox:1
      ports: [{port: 80}]
      resources:
        requests: {cpu: 1, memoryInGB: 1.5}
tags: {team: console}
type: Microsoft.ContainerInstance/containerGroups
";

async fn manifest(api: &Api, request: Value) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    api.raw(
        Method::POST,
        "/console/v1/manifests",
        Some(serde_json::to_vec(&request).expect("json")),
    )
    .await
}

#[tokio::test]
async fn a_manifest_is_read_into_the_put_it_stands_for() {
    let cluster = Cluster::start().await;
    let _node = cluster.add_node("n1", 4.0, 8.0).await;
    let tenant = cluster.tenant(&[SUB]).await;
    let (status, headers, answer) =
        manifest(&tenant, json!({"text": YAML, "format": "yaml"})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_console_headers(&headers, "no-store", "manifests");
    assert_eq!(answer["name"], "from-yaml");
    assert_eq!(answer["apiVersion"], "2023-05-01");
    let body = &answer["body"];
    // The cluster's region stands in for the file's missing location; type and name are gone.
    assert_eq!(body["location"], "local", "{answer}");
    assert_eq!(body["tags"], json!({"team": "console"}));
    assert!(
        body.get("type").is_none() && body.get("name").is_none(),
        "{body}"
    );
    assert_eq!(
        body["properties"]["containers"][0]["properties"]["resources"]["requests"]["cpu"],
        1
    );

    // What it answers is a PUT the API takes, and the group is the tenant's.
    let rg = "rg-console";
    let path = group_path(SUB, rg, "from-yaml").replace(
        "api-version=2023-05-01",
        &format!(
            "api-version={}",
            answer["apiVersion"].as_str().expect("version")
        ),
    );
    let (status, created) = tenant.call(Method::PUT, &path, Some(body.clone())).await;
    assert!(status.is_success(), "{status} {created}");
    let (status, got) = tenant.get_group(SUB, rg, "from-yaml").await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["tags"]["team"], "console");

    // The same file in JSON, named by the caller.
    let json_text = r#"{"properties": {"containers": []}, "location": "elsewhere"}"#;
    let (status, _, answer) = manifest(
        &tenant,
        json!({"text": json_text, "format": "json", "name": "named"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        (&answer["name"], &answer["body"]["location"]),
        (&json!("named"), &json!("elsewhere"))
    );

    // Another tenant sees none of it: not the group, not its subscription; `me` names only its own.
    let other = cluster.tenant(&[OTHER_SUB]).await;
    let (status, body) = other.get_group(SUB, rg, "from-yaml").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = other
        .call(
            Method::GET,
            &format!(
                "/subscriptions/{OTHER_SUB}/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01"
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["value"], json!([]), "{body}");
    let (_, body) = other.call(Method::GET, "/console/v1/me", None).await;
    assert_eq!(
        body,
        json!({"operator": false, "subscriptions": [OTHER_SUB]})
    );
}

#[tokio::test]
async fn a_bad_manifest_names_the_field_at_fault() {
    let tenant = Shared::tenant_api();
    let cases = [
        (
            json!({"text": "name: a\nproperties: [\n", "format": "yaml"}),
            "text",
            "line",
        ),
        (
            json!({"text": "{\"name\": \"a\",}", "format": "json"}),
            "text",
            "line 1",
        ),
        (
            json!({"text": "- a\n- b\n", "format": "yaml"}),
            "text",
            "mapping",
        ),
        (
            json!({"text": "name: 7\n", "format": "yaml"}),
            "text",
            "`name`",
        ),
        (
            json!({"text": "properties: {}\n", "format": "yaml"}),
            "name",
            "no `name`",
        ),
        (
            json!({"text": YAML, "format": "yaml", "name": "other"}),
            "name",
            "differs",
        ),
    ];
    for (request, target, says) in cases {
        let (status, _, answer) = manifest(&tenant, request.clone()).await;
        assert_error(
            status.as_u16(),
            &answer,
            400,
            "InvalidManifest",
            target,
            &request.to_string(),
        );
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{request}: {message}");
    }
    // The request itself is checked as every JSON body is.
    let (status, _, answer) = manifest(&tenant, json!({"text": YAML, "format": "toml"})).await;
    assert_error(
        status.as_u16(),
        &answer,
        400,
        "InvalidRequestContent",
        "format",
        "toml",
    );
    let (status, _, answer) = manifest(&tenant, json!({"text": YAML})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, _, answer) =
        manifest(&tenant, json!({"text": YAML, "format": "yaml", "extra": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");

    // Over the body limit (1 MiB): 413 as on every route.
    let big = format!("name: big\nx: \"{}\"\n", "a".repeat(1 << 20));
    let (status, _, answer) = manifest(&tenant, json!({"text": big, "format": "yaml"})).await;
    assert_error(
        status.as_u16(),
        &answer,
        413,
        "RequestEntityTooLarge",
        "body",
        "big",
    );

    // Without a token, nothing is read.
    let s = SHARED.clone();
    let resp = wire::client(&s.ca_pem, Proto::H1)
        .post(format!("{}/console/v1/manifests", s.base))
        .header("content-type", "application/json")
        .body(json!({"text": YAML, "format": "yaml"}).to_string())
        .send()
        .await
        .expect("an answer");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

/// The API around the console answers as it did: JSON, without the console's headers, and its
/// unknown routes are still ACI's 404s.
#[tokio::test]
async fn api_routes_answer_as_before() {
    let (status, headers, body) = Shared::tenant_api()
        .raw(Method::GET, "/subscriptions?api-version=2022-12-01", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        headers.get("content-security-policy").is_none(),
        "{headers:?}"
    );
    assert!(body["value"].is_array(), "{body}");
    for path in ["/consoles", "/index.html", "/app.js", "/no/such/route"] {
        let (status, headers, body) = fetch(Proto::H1, Method::GET, path, &[]).await;
        assert_error(
            status.as_u16(),
            &json_of(&body),
            404,
            "NotFound",
            path,
            path,
        );
        assert!(headers.get("content-security-policy").is_none(), "{path}");
    }
    let (status, _, body) = fetch(
        Proto::H1,
        Method::GET,
        "/metadata/endpoints?api-version=2022-09-01",
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
}

// --- No HTML from strings in the console's sources --------------------------------------------

/// What a console source must not contain outside comments: ways to turn a string into markup or
/// code. (`dom.js` builds every element with `createElement` and text nodes.)
const FORBIDDEN: &[&str] = &[
    "innerHTML",
    "outerHTML",
    "insertAdjacentHTML",
    "document.write",
    "createContextualFragment",
    "srcdoc",
    "new Function",
];

/// JavaScript without its comments; strings, template literals and regular expressions kept.
fn without_comments(js: &str) -> String {
    let chars: Vec<char> = js.chars().collect();
    let mut out = String::with_capacity(js.len());
    let mut i = 0;
    // The last character of code that is not whitespace: a `/` after one of these starts a regex.
    let mut last = '\n';
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '/' if next == Some('/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '/' if next == Some('*') => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    i += 1;
                }
                i += 2;
                out.push(' ');
                continue;
            }
            '\'' | '"' | '`' => i = copy_quoted(&chars, i, c, &mut out),
            '/' if "(,=:[!&|?{};\n+-*%<>~^".contains(last) => {
                i = copy_quoted(&chars, i, '/', &mut out)
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
        if let Some(&prev) = out.as_bytes().last()
            && !prev.is_ascii_whitespace()
        {
            last = char::from(prev);
        }
    }
    out
}

/// Copies a literal that starts at `chars[start]` and ends at the next unescaped `quote` (a regex's
/// `/` inside `[...]` does not end it); returns the index after it.
fn copy_quoted(chars: &[char], start: usize, quote: char, out: &mut String) -> usize {
    out.push(quote);
    let mut i = start + 1;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        out.push(c);
        match c {
            '\\' => {
                if let Some(&escaped) = chars.get(i + 1) {
                    out.push(escaped);
                }
                i += 2;
                continue;
            }
            '[' if quote == '/' => in_class = true,
            ']' if quote == '/' => in_class = false,
            '\n' if quote == '/' => return i + 1,
            c if c == quote && !in_class => return i + 1,
            _ => {}
        }
        i += 1;
    }
    i
}

/// The forbidden uses in one JavaScript source.
fn forbidden_uses(js: &str) -> Vec<String> {
    let code = without_comments(js);
    let mut found: Vec<String> = FORBIDDEN
        .iter()
        .filter(|word| code.contains(**word))
        .map(|word| (*word).to_owned())
        .collect();
    // `eval(` as a call, not the end of a longer name (`retrieval(`).
    let bytes = code.as_bytes();
    for (at, _) in code.match_indices("eval") {
        let before = at.checked_sub(1).map(|b| bytes[b]);
        let after = code[at + 4..].trim_start().starts_with('(');
        if after && !before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$') {
            found.push("eval(".to_owned());
        }
    }
    found
}

/// Inline script or style and event-handler attributes in an HTML page, which the CSP would block.
fn inline_in_html(html: &str) -> Vec<String> {
    let mut text = html.to_ascii_lowercase();
    while let Some(start) = text.find("<!--") {
        let end = text[start..]
            .find("-->")
            .map_or(text.len(), |e| start + e + 3);
        text.replace_range(start..end, "");
    }
    let mut found = Vec::new();
    for tag in text.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap_or_default();
        if tag.starts_with("script") && !tag.contains(" src=") {
            found.push(format!("<{tag}> without src"));
        }
        if tag.starts_with("style") {
            found.push("<style>".to_owned());
        }
        for attr in tag.split_whitespace().skip(1) {
            let name = attr.split('=').next().unwrap_or_default();
            if name == "style" || (name.starts_with("on") && attr.contains('=')) {
                found.push(format!("<{tag}>: {name}="));
            }
        }
    }
    found
}

#[test]
fn the_checks_catch_what_they_look_for() {
    assert_eq!(forbidden_uses("el.innerHTML = x;"), ["innerHTML"]);
    assert_eq!(forbidden_uses("el['inner' + 'HTML']; eval (s)"), ["eval("]);
    assert_eq!(
        forbidden_uses("const f = new Function('a', b);"),
        ["new Function"]
    );
    assert!(
        forbidden_uses("// never innerHTML\n/* eval(x) */ retrieval(x); evaluate()").is_empty()
    );
    assert!(forbidden_uses("const u = 'https://x/'; el.textContent = u;").is_empty());
    assert_eq!(
        forbidden_uses("const u = 'https://x'; a.outerHTML"),
        ["outerHTML"]
    );
    assert_eq!(
        forbidden_uses("const r = /[/'\"]/g; document.write(r)"),
        ["document.write"]
    );
    assert_eq!(
        forbidden_uses("x = `a ${'//'} b`; y.innerHTML"),
        ["innerHTML"]
    );
    assert!(inline_in_html(r#"<script src="/a.js"></script><link href="/b.css">"#).is_empty());
    assert_eq!(inline_in_html("<script>alert(1)</script>").len(), 1);
    assert_eq!(inline_in_html(r#"<div style="x">"#).len(), 1);
    assert_eq!(inline_in_html(r#"<img onerror="x" src=y>"#).len(), 1);
    assert!(inline_in_html("<!-- <script>alert(1)</script> -->").is_empty());
}

#[test]
fn no_console_source_turns_strings_into_markup_or_code() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../console/src");
    let mut stack = vec![root.clone()];
    let mut checked = Vec::new();
    let mut problems = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("console/src is readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("UTF-8 source");
            let name = path
                .strip_prefix(&root)
                .unwrap_or(&path)
                .display()
                .to_string();
            let found = match path.extension().and_then(|e| e.to_str()) {
                Some("js" | "mjs") => forbidden_uses(&text),
                Some("html") => inline_in_html(&text),
                _ => continue,
            };
            problems.extend(found.into_iter().map(|f| format!("{name}: {f}")));
            checked.push(name);
        }
    }
    assert!(
        checked.iter().any(|n| n == "index.html") && checked.len() >= 10,
        "the console's sources were found: {checked:?}"
    );
    assert!(problems.is_empty(), "{problems:#?}");
}

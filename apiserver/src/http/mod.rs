//! The REST API: ACI's routes (groups, operations, locations) and Berth's `/admin/v1`.
//!
//! Every answer that is not a success is ACI's `{"error":{"code","message","target"}}`: malformed
//! bodies, unknown routes and wrong methods included.

mod admin;
mod admin_groups;
mod billing;
mod console;
mod containers;
mod extract;
mod group_errors;
mod groups;
pub(crate) mod limits;
mod media;
mod metadata;
mod monitor;
mod path;
mod provider;
mod resource_groups;
mod scrape;
mod signin;
mod subscriptions;
mod tokens;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{delete, get, head, post};

pub use extract::ArmJson;

use crate::AppState;
use crate::error::ApiError;

const CG: &str = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerInstance/containerGroups/{name}";
const PROVIDER: &str = "/subscriptions/{sub}/providers/Microsoft.ContainerInstance";
const RG: &str = "/subscriptions/{sub}/resourceGroups/{rg}";

/// The router, before path normalisation (see [`service`]).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/subscriptions", get(provider::list_subscriptions))
        .route("/tenants", get(subscriptions::tenants))
        .route("/subscriptions/{sub}", get(subscriptions::get))
        .route("/subscriptions/{sub}/providers", get(subscriptions::list_providers))
        .route("/subscriptions/{sub}/providers/{namespace}", get(subscriptions::provider))
        .route("/subscriptions/{sub}/providers/{namespace}/register", post(subscriptions::provider))
        .route("/subscriptions/{sub}/resourceGroups", get(resource_groups::list))
        .route(
            RG,
            head(resource_groups::exists)
                .get(resource_groups::get)
                .put(resource_groups::put)
                .patch(resource_groups::patch)
                .delete(resource_groups::delete),
        )
        .route(&format!("{RG}/resources"), get(resource_groups::resources))
        .route("/subscriptions/{sub}/operationResults/{operation}", get(resource_groups::operation_result))
        .route(&format!("{PROVIDER}/containerGroups"), get(groups::list_by_subscription))
        .route(
            "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerInstance/containerGroups",
            get(groups::list_by_resource_group),
        )
        .route(CG, get(groups::get).put(groups::put).patch(groups::patch).delete(groups::delete))
        .route(&format!("{CG}/restart"), post(groups::restart))
        .route(&format!("{CG}/stop"), post(groups::stop))
        .route(&format!("{CG}/start"), post(groups::start))
        .route(&format!("{CG}/outboundNetworkDependenciesEndpoints"), get(groups::outbound_dependencies))
        .route(&format!("{CG}/providers/Microsoft.Insights/metrics"), get(monitor::metrics))
        .route(&format!("{CG}/containers/{{container}}/logs"), get(containers::logs))
        .route(&format!("{CG}/containers/{{container}}/exec"), post(containers::exec))
        .route(&format!("{CG}/containers/{{container}}/attach"), post(containers::attach))
        .route("/exec/{session}", get(containers::exec_socket))
        .route("/attach/{session}", get(containers::attach_socket))
        .route(&format!("{PROVIDER}/locations/{{location}}/operations/{{operation}}"), get(provider::operation_status))
        .route(&format!("{PROVIDER}/locations/{{location}}/usages"), get(provider::usages))
        .route(&format!("{PROVIDER}/locations/{{location}}/capabilities"), get(provider::capabilities))
        .route(&format!("{PROVIDER}/locations/{{location}}/cachedImages"), get(provider::cached_images))
        .route("/providers/Microsoft.ContainerInstance/operations", get(provider::operations))
        .route("/admin/v1/tokens", post(tokens::create).get(tokens::list))
        .route("/admin/v1/tokens/{id}", delete(tokens::revoke))
        .route("/admin/v1/join-tokens", post(admin::create_join_token))
        .route("/admin/v1/nodes", get(admin::list_nodes))
        .route("/admin/v1/nodes/{node}", get(admin::get_node).delete(admin::delete_node))
        .route("/admin/v1/nodes/{node}/cordon", post(admin::cordon_node))
        .route("/admin/v1/nodes/{node}/uncordon", post(admin::uncordon_node))
        .route("/admin/v1/nodes/{node}/drain", post(admin::drain_node))
        .route("/admin/v1/dns-certificates", post(admin::create_dns_certificate))
        .route("/admin/v1/groups/{id}", get(admin_groups::get_group))
        .route("/admin/billing/usage", get(billing::admin_usage))
        .route("/admin/billing/prices", get(billing::prices))
        .route(&format!("{PROVIDER}/usage"), get(billing::tenant_usage))
        .route("/metrics", get(scrape::metrics))
        .route("/metadata/endpoints", get(metadata::endpoints))
        .route("//metadata/endpoints", get(metadata::endpoints))
        .route("/adfs/.well-known/openid-configuration", get(signin::openid_configuration))
        .route("/adfs/{tenant}/.well-known/openid-configuration", get(signin::tenant_openid_configuration))
        .route("/adfs/{tenant}/v2.0/.well-known/openid-configuration", get(signin::tenant_openid_configuration))
        .route("/adfs/oauth2/token", post(signin::token))
        .route("/adfs/{tenant}/oauth2/token", post(signin::tenant_token))
        .route("/adfs/{tenant}/oauth2/v2.0/token", post(signin::tenant_token))
        .route("/adfs/oauth2/authorize", get(signin::authorize))
        .route("/adfs/discovery/keys", get(signin::keys))
        .merge(console::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(limits::enforce))
        // The console's headers on whatever answers a console path, errors included.
        .layer(axum::middleware::from_fn(console::headers))
        .layer(axum::middleware::map_response(request_id))
        // Bodies are limited by `RawBody`, which answers in ACI's shape.
        .layer(axum::extract::DefaultBodyLimit::disable())
        // Outermost: what the others answer is timed too.
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::prometheus::requests::observe,
        ))
        .with_state(state)
}

/// The whole HTTP service: empty path segments are dropped and ARM path literals are matched without
/// case, as ARM does.
pub fn service(
    state: AppState,
) -> impl tower::Service<
    Request,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl Send + 'static,
> + Clone
+ Send
+ 'static {
    tower::ServiceBuilder::new()
        .map_request(normalize_path)
        .service(router(state))
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        "The requested path does not exist.",
    )
    .with_target(uri.path())
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("The HTTP method '{method}' is not supported on this path."),
    )
    .with_target(method.as_str())
}

/// An error answered outside the router (by the transport), with the same headers as any answer.
pub(crate) fn error_response(error: ApiError) -> Response {
    with_request_id(error.into_response())
}

async fn request_id(response: Response) -> Response {
    with_request_id(response)
}

fn with_request_id(mut response: Response) -> Response {
    let id = uuid::Uuid::new_v4().to_string();
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert("x-ms-request-id", value.clone());
        response
            .headers_mut()
            .insert("x-ms-correlation-request-id", value);
    }
    response
}

/// ARM's fixed path segments, by their lower-case form.
const LITERALS: &[&str] = &[
    "subscriptions",
    "tenants",
    "resources",
    "register",
    "operationResults",
    "resourceGroups",
    "providers",
    "Microsoft.ContainerInstance",
    "containerGroups",
    "locations",
    "operations",
    "usages",
    "usage",
    "capabilities",
    "cachedImages",
    "containers",
    "restart",
    "stop",
    "start",
    "logs",
    "exec",
    "attach",
    "outboundNetworkDependenciesEndpoints",
    "Microsoft.Insights",
    "metrics",
];

/// Rewrites the literal segments of an ARM path to their canonical case; names are left alone.
/// Literals sit at the positions ARM's grammar puts them: every even segment of
/// `/subscriptions/{s}/resourceGroups/{g}/providers/{ns}/{type}/{name}/…`, except the namespace.
pub fn canonical_path(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').collect();
    if segments.len() < 2
        || !["subscriptions", "providers", "tenants"]
            .iter()
            .any(|first| segments[1].eq_ignore_ascii_case(first))
    {
        return path.to_owned();
    }
    let canonical = |s: &str| {
        LITERALS
            .iter()
            .find(|l| l.eq_ignore_ascii_case(s))
            .map_or_else(|| s.to_owned(), |l| (*l).to_owned())
    };
    let mut out = Vec::with_capacity(segments.len());
    let mut expect_literal = true;
    let mut after_providers = false;
    for (i, seg) in segments.iter().enumerate() {
        if i == 0 {
            out.push(String::new());
            continue;
        }
        if after_providers {
            // The namespace, then the type: both literals.
            out.push(canonical(seg));
            after_providers = false;
            expect_literal = true;
            continue;
        }
        if expect_literal {
            let c = canonical(seg);
            after_providers = c == "providers";
            // Verbs (restart/stop/…) end the path; everything else is followed by a name.
            expect_literal = after_providers;
            out.push(c);
        } else {
            out.push((*seg).to_owned());
            expect_literal = true;
        }
    }
    out.join("/")
}

/// A path whose percent-decoded segments are not all UTF-8, with each such segment replaced by its
/// lossy decoding (U+FFFD for what is not UTF-8), encoded again; `None` if every segment is UTF-8.
/// So `/subscriptions/%FF/…` answers as the subscription `\u{FFFD}` does (400
/// `InvalidSubscriptionId`), rather than as a routing failure: no name Berth accepts contains U+FFFD.
fn repair_utf8(path: &str) -> Option<String> {
    let mut changed = false;
    let segments: Vec<String> = path
        .split('/')
        .map(|segment| {
            let decoded = percent_decode(segment);
            if std::str::from_utf8(&decoded).is_ok() {
                segment.to_owned()
            } else {
                changed = true;
                percent_encode(&String::from_utf8_lossy(&decoded))
            }
        })
        .collect();
    changed.then(|| segments.join("/"))
}

fn percent_decode(segment: &str) -> Vec<u8> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn normalize_path(mut request: Request) -> Request {
    // HTTP/2 carries the host in `:authority`; URLs we hand out are built from the Host header.
    if !request.headers().contains_key(axum::http::header::HOST)
        && let Some(value) = request
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        request
            .headers_mut()
            .insert(axum::http::header::HOST, value);
    }
    let path = request.uri().path();
    let collapsed = path::collapse_empty_segments(path);
    let repaired = repair_utf8(collapsed.as_deref().unwrap_or(path));
    let canonical = canonical_path(repaired.as_deref().or(collapsed.as_deref()).unwrap_or(path));
    if canonical != path {
        let mut parts = request.uri().clone().into_parts();
        let query = request
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        if let Ok(pq) = format!("{canonical}{query}").parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = axum::http::Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
    }
    request
}

#[cfg(test)]
mod tests {
    use super::{canonical_path, repair_utf8};

    #[test]
    fn segments_that_are_not_utf8_are_decoded_lossily() {
        assert_eq!(
            repair_utf8("/subscriptions/S/resourceGroups/r%C3%A9g"),
            None
        );
        assert_eq!(repair_utf8("/a%2Fb/%zz/%"), None);
        assert_eq!(
            repair_utf8("/subscriptions/%FF%FE/x/a%C3%28b").as_deref(),
            Some("/subscriptions/%EF%BF%BD%EF%BF%BD/x/a%EF%BF%BD%28b")
        );
        // Escaped slashes stay inside their segment.
        assert_eq!(
            repair_utf8("/a%2F%FF/b").as_deref(),
            Some("/a%2F%EF%BF%BD/b")
        );
    }

    #[test]
    fn literals_are_matched_without_case_names_are_kept() {
        assert_eq!(
            canonical_path(
                "/subscriptions/S/resourcegroups/MyRG/providers/microsoft.containerinstance/containergroups/Stop/STOP"
            ),
            "/subscriptions/S/resourceGroups/MyRG/providers/Microsoft.ContainerInstance/containerGroups/Stop/stop"
        );
        assert_eq!(
            canonical_path(
                "/subscriptions/S/providers/Microsoft.ContainerInstance/Locations/local/Operations/abc"
            ),
            "/subscriptions/S/providers/Microsoft.ContainerInstance/locations/local/operations/abc"
        );
        assert_eq!(
            canonical_path(
                "/subscriptions/S/resourceGroups/RG/providers/Microsoft.ContainerInstance/containerGroups/Web/providers/microsoft.insights/Metrics"
            ),
            "/subscriptions/S/resourceGroups/RG/providers/Microsoft.ContainerInstance/containerGroups/Web/providers/Microsoft.Insights/metrics"
        );
        assert_eq!(canonical_path("/admin/v1/nodes"), "/admin/v1/nodes");
    }
}

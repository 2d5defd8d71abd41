//! The generator of the hostile-input suite: valid groups of many shapes, and the mutations made to
//! them, their query strings, paths and headers. Everything comes from one seed and the case's index.

use reqwest::Method;
use serde_json::{Value, json};

use super::RG;
use crate::harness::{OTHER_SUB, SUB, group_body};

/// SplitMix64: small, fast, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Valid groups of many shapes: each reaches "no node could hold it" (409) unmutated.
pub(super) fn bases() -> Vec<(&'static str, Value)> {
    let web = group_body();
    let multi = json!({
        "location": "local",
        "tags": {"team": "web", "env": "test"},
        "properties": {
            "osType": "Linux",
            "restartPolicy": "OnFailure",
            "containers": [
                {"name": "web", "properties": {
                    "image": "registry.local/busybox:1",
                    "command": ["/bin/sh", "-c", "httpd -f"],
                    "ports": [{"port": 80, "protocol": "TCP"}],
                    "environmentVariables": [
                        {"name": "MODE", "value": "prod"},
                        {"name": "API_KEY", "secureValue": "s3cret"}
                    ],
                    "resources": {"requests": {"cpu": 1.0, "memoryInGB": 1.5}, "limits": {"cpu": 1.5, "memoryInGB": 2.0}}
                }},
                {"name": "sidecar", "properties": {
                    "image": "registry.local/busybox:1",
                    "resources": {"requests": {"cpu": 0.5, "memoryInGB": 0.5}}
                }}
            ],
            "ipAddress": {"type": "Public", "ports": [{"port": 80, "protocol": "TCP"}]}
        }
    });
    let volumes = json!({
        "location": "local",
        "properties": {
            "osType": "Linux",
            "containers": [{"name": "app", "properties": {
                "image": "registry.local/busybox:1",
                "resources": {"requests": {"cpu": 1.0, "memoryInGB": 1.0}},
                "volumeMounts": [
                    {"name": "cache", "mountPath": "/cache"},
                    {"name": "secrets", "mountPath": "/etc/secrets", "readOnly": true},
                    {"name": "source", "mountPath": "/src"},
                    {"name": "share", "mountPath": "/share"}
                ]
            }}],
            "volumes": [
                {"name": "cache", "emptyDir": {}},
                {"name": "secrets", "secret": {"token": "c2VjcmV0", "config.json": "e30="}},
                {"name": "source", "gitRepo": {"repository": "https://example.invalid/app.git", "directory": "app", "revision": "main"}},
                {"name": "share", "azureFile": {"shareName": "data", "storageAccountName": "acct", "storageAccountKey": "a2V5", "readOnly": false}}
            ]
        }
    });
    let dns_probes = json!({
        "location": "local",
        "properties": {
            "osType": "Linux",
            "containers": [{"name": "web", "properties": {
                "image": "registry.local/busybox:1",
                "ports": [{"port": 8080}],
                "resources": {"requests": {"cpu": 1.0, "memoryInGB": 1.0}},
                "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 10, "failureThreshold": 3},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "http"}, "initialDelaySeconds": 1}
            }}],
            "ipAddress": {"type": "Public", "dnsNameLabel": "hostile-web", "ports": [{"port": 8080, "protocol": "TCP"}]}
        }
    });
    let init = json!({
        "location": "local",
        "properties": {
            "osType": "Linux",
            "restartPolicy": "Never",
            "initContainers": [{"name": "setup", "properties": {
                "image": "registry.local/busybox:1",
                "command": ["echo", "ready"],
                "environmentVariables": [{"name": "TOKEN", "secureValue": "t0ken"}]
            }}],
            "containers": [{"name": "job", "properties": {
                "image": "registry.local/busybox:1",
                "resources": {"requests": {"cpu": 1.0, "memoryInGB": 1.0}}
            }}],
            "imageRegistryCredentials": [{"server": "registry.local", "username": "u", "password": "p"}]
        }
    });
    vec![
        ("web", web),
        ("multi", multi),
        ("volumes", volumes),
        ("dns-probes", dns_probes),
        ("init", init),
    ]
}

/// A step into a JSON tree.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn paths(value: &Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(at.clone());
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                at.push(Step::Key(k.clone()));
                paths(v, at, out);
                at.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                at.push(Step::Index(i));
                paths(v, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn node<'a>(value: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |v, step| match step {
        Step::Key(k) => v.get_mut(k.as_str()),
        Step::Index(i) => v.get_mut(*i),
    })
}

fn hostile_string(rng: &mut Rng) -> String {
    match rng.below(16) {
        0 => String::new(),
        1 => "a".repeat(rng.pick(&[64, 100, 1000, 70_000, 600_000]).to_owned()),
        2 => "\0".to_owned(),
        3 => format!("web\0{}", "x".repeat(rng.below(10))),
        4 => "\u{1}\u{7f}\u{1b}[31m\r\n\t".to_owned(),
        5 => "ÄÖü-名前-🚢-\u{202e}evil".to_owned(),
        6 => "\u{ffff}\u{fffd}\u{feff}".to_owned(),
        7 => "../../etc/passwd".to_owned(),
        8 => "/".to_owned(),
        9 => "C:\\Windows".to_owned(),
        10 => "'; DROP TABLE groups; --".to_owned(),
        11 => "${HOME}$(id)`id`".to_owned(),
        12 => " ".to_owned(),
        13 => "WEB".to_owned(),
        14 => "a:b=c,d".to_owned(),
        _ => "%00%ff%2e%2e".to_owned(),
    }
}

/// JSON text that `serde_json::Value` cannot hold (numbers out of range, deep nesting, lone
/// surrogates, duplicate keys), put in as raw text.
fn raw_fragment(rng: &mut Rng) -> String {
    match rng.below(14) {
        0 => "1e400".to_owned(),
        1 => "-1e400".to_owned(),
        2 => "NaN".to_owned(),
        3 => "Infinity".to_owned(),
        4 => "18446744073709551616".to_owned(),
        5 => "-9223372036854775809".to_owned(),
        6 => "01".to_owned(),
        7 => "-".to_owned(),
        8 => "\"\\ud800\"".to_owned(),
        9 => "\"\\u0000\"".to_owned(),
        10 => {
            let depth = *rng.pick(&[64, 127, 129, 1000, 20_000]);
            format!("{}{}", "[".repeat(depth), "]".repeat(depth))
        }
        11 => {
            let depth = *rng.pick(&[100, 200, 5000]);
            format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
        }
        12 => "{\"name\":\"a\",\"name\":\"b\"}".to_owned(),
        _ => "1.0000000000000000000000000000000000000001".to_owned(),
    }
}

fn hostile_value(rng: &mut Rng) -> Value {
    match rng.below(12) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(0),
        3 => json!(-1),
        4 => json!(rng.pick(&[1e308, -1e308, 4294967296.0, 0.0001, 1e-300, 9.999999999])),
        5 => json!(i64::MAX),
        6 => json!(u64::MAX),
        7 => json!(hostile_string(rng)),
        8 => json!([]),
        9 => json!({}),
        10 => json!([hostile_string(rng), 1, null]),
        _ => json!({"unknownField": hostile_string(rng)}),
    }
}

/// Mutates `value` in place; raw fragments go to `raws` behind marker strings. Returns what it did.
fn mutate(rng: &mut Rng, value: &mut Value, raws: &mut Vec<String>) -> String {
    let mut all = Vec::new();
    paths(value, &mut Vec::new(), &mut all);
    let path = rng.pick(&all).clone();
    let (last, parent) = match path.split_last() {
        Some((last, parent)) => (Some(last.clone()), parent.to_vec()),
        None => (None, Vec::new()),
    };
    let name = format!("{path:?}");
    match rng.below(9) {
        // Delete.
        0 => {
            if let (Some(step), Some(parent)) = (last, node(value, &parent)) {
                match (step, parent) {
                    (Step::Key(k), Value::Object(map)) => {
                        map.remove(&k);
                    }
                    (Step::Index(i), Value::Array(items)) if i < items.len() => {
                        items.remove(i);
                    }
                    _ => {}
                }
            }
            format!("delete {name}")
        }
        // Duplicate an array element (duplicate names, ports, volumes), or a key by case.
        1 => {
            if let (Some(step), Some(parent)) = (last, node(value, &parent)) {
                match (step, parent) {
                    (Step::Index(i), Value::Array(items)) => {
                        let copies = *rng.pick(&[1, 2, 70]);
                        let item = items[i].clone();
                        items.extend(std::iter::repeat_n(item, copies));
                    }
                    (Step::Key(k), Value::Object(map)) => {
                        let item = map.get(&k).cloned().unwrap_or(Value::Null);
                        map.insert(k.to_uppercase(), item);
                    }
                    _ => {}
                }
            }
            format!("duplicate {name}")
        }
        // Add an unknown field next to the chosen node.
        2 => {
            if let Some(Value::Object(map)) = node(value, &parent) {
                map.insert(
                    hostile_string(rng).chars().take(40).collect(),
                    hostile_value(rng),
                );
            }
            format!("add a field beside {name}")
        }
        // Raw JSON text.
        3 | 4 => {
            let marker = format!("@@raw{}@@", raws.len());
            raws.push(raw_fragment(rng));
            if let Some(target) = node(value, &path) {
                *target = Value::String(marker);
            }
            format!(
                "raw {} at {name}",
                raws[raws.len() - 1].chars().take(40).collect::<String>()
            )
        }
        // A hostile string.
        5 | 6 => {
            let s = hostile_string(rng);
            let shown: String = s.chars().take(20).collect();
            if let Some(target) = node(value, &path) {
                *target = Value::String(s);
            }
            format!("string {shown:?}.. at {name}")
        }
        // Anything else in its place.
        _ => {
            let v = hostile_value(rng);
            let shown: String = v.to_string().chars().take(40).collect();
            if let Some(target) = node(value, &path) {
                *target = v;
            }
            format!("value {shown} at {name}")
        }
    }
}

fn render(value: &Value, raws: &[String]) -> Vec<u8> {
    let mut text = serde_json::to_string(value).expect("a Value renders");
    for (i, raw) in raws.iter().enumerate() {
        text = text.replace(&format!("\"@@raw{i}@@\""), raw);
    }
    text.into_bytes()
}

/// Byte-level damage to a rendered body.
fn damage(rng: &mut Rng, body: &mut Vec<u8>) -> String {
    match rng.below(6) {
        0 => {
            let at = rng.below(body.len());
            body.truncate(at);
            format!("truncated at {at}")
        }
        1 => {
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(body.len());
                body[at] = (rng.next() & 0xff) as u8;
            }
            "bytes flipped".to_owned()
        }
        2 => {
            let at = rng.below(body.len());
            body.splice(at..at, [0xff, 0xfe, 0xc3]);
            "invalid UTF-8 inserted".to_owned()
        }
        3 => {
            body.splice(0..0, [0xef, 0xbb, 0xbf]);
            "BOM".to_owned()
        }
        4 => {
            body.extend_from_slice(b"}\x00garbage");
            "trailing garbage".to_owned()
        }
        _ => {
            *body = (0..rng.below(4096))
                .map(|_| (rng.next() & 0xff) as u8)
                .collect();
            "random bytes".to_owned()
        }
    }
}

fn hostile_query(rng: &mut Rng) -> String {
    rng.pick(&[
        "",
        "?api-version=",
        "?api-version=2099-01-01",
        "?api-version=2023-05-01&api-version=2021-09-01",
        "?api-version=%FF%FE",
        "?api-version=2023-05-01%00",
        "?API-VERSION=2023-05-01",
        "?api-version=2023-05-01&$skipToken=-1",
        "?api-version=2023-05-01&$skipToken=99999999999999999999",
        "?api-version=2023-05-01&x=%zz&&&=",
        "?api-version=2023-05-01#frag",
        "?api-version=2023-05-01&tail=-5&since=yesterday",
    ])
    .to_string()
}

fn hostile_name(rng: &mut Rng, name: &str) -> String {
    match rng.below(9) {
        0 => name.to_uppercase(),
        1 => format!("{name}--x"),
        2 => "a".repeat(64),
        3 => format!("{name}%FF"),
        4 => format!("{name}%2F..%2F"),
        5 => format!("{name}%C3%A9"),
        6 => "-".to_owned(),
        7 => format!("{name}%00"),
        _ => "..".to_owned(),
    }
}

/// One generated request.
pub(super) struct Case {
    pub(super) index: usize,
    pub(super) what: String,
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) token: Token,
    pub(super) content_type: Option<&'static str>,
    pub(super) body: Option<Vec<u8>>,
    /// For a PUT: the group it would create (sub, rg, name) if the path was well formed.
    pub(super) creates: Option<String>,
}

#[derive(Clone, Copy)]
pub(super) enum Token {
    Tenant,
    Operator,
}

pub(super) fn group_url(sub: &str, rg: &str, name: &str) -> String {
    format!(
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerInstance/containerGroups/{name}"
    )
}

pub(super) fn generate(seed: u64, index: usize, bases: &[(&'static str, Value)]) -> Case {
    let mut rng = Rng::new(seed ^ (index as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let name = format!("h{index}");
    let (base, body) = rng.pick(bases);
    let mut body = body.clone();
    let mut raws = Vec::new();
    let mut what = vec![format!("case {index} from {base}")];
    let kind = rng.below(100);
    let (method, path, token, mut bytes, creates) = if kind < 75 {
        // PUT a mutated group.
        for _ in 0..1 + rng.below(3) {
            what.push(mutate(&mut rng, &mut body, &mut raws));
        }
        let mut bytes = render(&body, &raws);
        if rng.percent(12) {
            what.push(damage(&mut rng, &mut bytes));
        }
        let mut url = group_url(SUB, RG, &name);
        let mut creates = Some(url.clone());
        if rng.percent(8) {
            let hostile = hostile_name(&mut rng, &name);
            what.push(format!("name {hostile}"));
            url = group_url(SUB, RG, &hostile);
            creates = None;
        } else if rng.percent(4) {
            let sub = *rng.pick(&[
                "not-a-guid",
                OTHER_SUB,
                "00000000-0000-0000-0000-00000000000A",
            ]);
            what.push(format!("subscription {sub}"));
            url = group_url(sub, RG, &name);
            // The same subscription in capitals is the same subscription.
            creates = sub
                .eq_ignore_ascii_case(SUB)
                .then(|| group_url(SUB, RG, &name));
        }
        let query = if rng.percent(10) {
            let q = hostile_query(&mut rng);
            what.push(format!("query {q:?}"));
            q
        } else {
            "?api-version=2023-05-01".to_owned()
        };
        (
            Method::PUT,
            format!("{url}{query}"),
            Token::Tenant,
            Some(bytes),
            creates,
        )
    } else if kind < 85 {
        // Other routes that read a body: tags, exec, admin.
        let (method, path, token, mut value) = match rng.below(4) {
            0 => (
                Method::PATCH,
                group_url(SUB, RG, &name),
                Token::Tenant,
                json!({"tags": {"a": "b"}}),
            ),
            1 => (
                Method::POST,
                format!("{}/containers/web/exec", group_url(SUB, RG, &name)),
                Token::Tenant,
                json!({"command": "/bin/sh", "terminalSize": {"rows": 24, "cols": 80}}),
            ),
            2 => (
                Method::POST,
                "/admin/v1/join-tokens".to_owned(),
                Token::Operator,
                json!({"uses": 1, "ttlSeconds": 3600}),
            ),
            _ => (
                Method::POST,
                "/admin/v1/tokens".to_owned(),
                Token::Operator,
                json!({"subscriptions": [SUB], "operator": false}),
            ),
        };
        for _ in 0..1 + rng.below(2) {
            what.push(mutate(&mut rng, &mut value, &mut raws));
        }
        let query = if path.starts_with("/admin") {
            String::new()
        } else {
            "?api-version=2023-05-01".to_owned()
        };
        what.push(format!("{method} {path}"));
        (
            method,
            format!("{path}{query}"),
            token,
            Some(render(&value, &raws)),
            None,
        )
    } else {
        // Reads with hostile queries and paths.
        let q = hostile_query(&mut rng);
        let path = match rng.below(5) {
            0 => format!(
                "/subscriptions/{SUB}/providers/Microsoft.ContainerInstance/containerGroups{q}"
            ),
            1 => format!("{}/containers/web/logs{q}", group_url(SUB, RG, &name)),
            2 => format!(
                "/subscriptions/{SUB}/providers/Microsoft.ContainerInstance/locations/local/usages{q}"
            ),
            3 => format!(
                "/subscriptions/{SUB}/providers/Microsoft.ContainerInstance/usage?from=%FF&to={}",
                hostile_string(&mut rng)
                    .chars()
                    .take(30)
                    .collect::<String>()
                    .replace(['#', ' ', '&'], "")
            ),
            _ => format!("{}{q}", group_url(SUB, RG, &hostile_name(&mut rng, &name))),
        };
        what.push(format!("GET {path}"));
        (Method::GET, path, Token::Tenant, None, None)
    };
    let content_type = if bytes.is_some() && rng.percent(6) {
        let ct = *rng.pick(&[
            "text/plain",
            "application/xml",
            "application/json; charset=utf-16",
            "application/json; charset=utf-8",
        ]);
        what.push(format!("content-type {ct}"));
        Some(ct)
    } else if bytes.is_some() {
        Some("application/json")
    } else {
        None
    };
    if let Some(b) = bytes.as_mut()
        && rng.percent(2)
    {
        b.clear();
        what.push("empty body".to_owned());
    }
    Case {
        index,
        what: what.join("; "),
        method,
        path,
        token,
        content_type,
        body: bytes,
        creates,
    }
}

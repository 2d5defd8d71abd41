//! Liveness and readiness probes: exactly one action (`exec` or `httpGet`) and timings in range.

use berth_proto::arm;
use berth_proto::spec::probe as rules;

use super::codes::{invalid, missing};
use crate::error::ApiError;
use crate::model::*;

/// Probe `p` at ARM path `target`; `liveness` for a `livenessProbe` (its success threshold is 1).
pub(super) fn probe(
    p: &arm::ContainerProbe,
    target: &str,
    liveness: bool,
) -> Result<Probe, ApiError> {
    if p.exec.is_some() == p.http_get.is_some() {
        return Err(invalid(target, rules::ProbeError::Action));
    }
    let exec_command = match &p.exec {
        Some(e) => {
            let t = format!("{target}.exec.command");
            let cmd = e
                .command
                .clone()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| missing(&t))?;
            rules::command(&cmd).map_err(|why| invalid(&t, why))?;
            Some(cmd)
        }
        None => None,
    };
    let http_get = match &p.http_get {
        Some(h) => Some(http_get(h, &format!("{target}.httpGet"))?),
        None => None,
    };
    let field = |field: &str| format!("{target}.{field}");
    type Rule = fn(i64, u32) -> Result<u32, rules::ProbeError>;
    let checked = |v: Option<i64>, name: &str, min: u32, rule: Rule| {
        v.map(|n| rule(n, min))
            .transpose()
            .map_err(|why| invalid(field(name), why))
    };
    if liveness && let Some(n) = p.success_threshold {
        rules::liveness_success(n, 1).map_err(|why| invalid(field("successThreshold"), why))?;
    }
    let (seconds, threshold): (Rule, Rule) = (rules::seconds, rules::threshold);
    Ok(Probe {
        exec_command,
        http_get,
        initial_delay_seconds: checked(p.initial_delay_seconds, "initialDelaySeconds", 0, seconds)?,
        period_seconds: checked(p.period_seconds, "periodSeconds", 1, seconds)?,
        failure_threshold: checked(p.failure_threshold, "failureThreshold", 1, threshold)?,
        success_threshold: checked(p.success_threshold, "successThreshold", 1, threshold)?,
        timeout_seconds: checked(p.timeout_seconds, "timeoutSeconds", 1, seconds)?,
    })
}

fn http_get(h: &arm::ContainerHttpGet, t: &str) -> Result<HttpGet, ApiError> {
    let port = h.port.ok_or_else(|| missing(format!("{t}.port")))?;
    let port = rules::port(port).map_err(|why| invalid(format!("{t}.port"), why))?;
    let scheme = match h.scheme.as_deref() {
        None => None,
        Some(s) => {
            rules::scheme(s).map_err(|why| invalid(format!("{t}.scheme"), why))?;
            Some(s.to_ascii_lowercase())
        }
    };
    if let Some(path) = &h.path {
        rules::path(path).map_err(|why| invalid(format!("{t}.path"), why))?;
    }
    let given = h.http_headers.as_deref().unwrap_or_default();
    rules::header_count(given.len()).map_err(|why| invalid(format!("{t}.httpHeaders"), why))?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for (i, hd) in given.iter().enumerate() {
        let ht = format!("{t}.httpHeaders[{i}]");
        let name = hd
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| missing(format!("{ht}.name")))?;
        rules::header_name(&name).map_err(|why| invalid(format!("{ht}.name"), why))?;
        // The node gets a map: one value per name.
        if headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            return Err(super::codes::duplicate(
                &format!("{ht}.name"),
                "header",
                &name,
            ));
        }
        let value = hd.value.clone().unwrap_or_default();
        rules::header_value(&name, &value).map_err(|why| invalid(format!("{ht}.value"), why))?;
        headers.push((name, value));
    }
    Ok(HttpGet {
        path: h.path.clone(),
        port,
        scheme,
        headers,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    fn check(probe: Value) -> Result<Probe, ApiError> {
        self::probe(&serde_json::from_value(probe).unwrap(), "p", false)
    }

    #[test]
    fn one_action_and_timings_in_range() {
        let ok = check(json!({"httpGet": {"port": 80, "path": "/healthz"}, "periodSeconds": 5}))
            .unwrap();
        assert_eq!(ok.period_seconds, Some(5));
        assert_eq!(ok.http_get.unwrap().port, 80);
        for (probe, target) in [
            (json!({}), "p"),
            (
                json!({"exec": {"command": ["true"]}, "httpGet": {"port": 1}}),
                "p",
            ),
            (json!({"exec": {"command": []}}), "p.exec.command"),
            (json!({"httpGet": {}}), "p.httpGet.port"),
            (json!({"httpGet": {"port": 70000}}), "p.httpGet.port"),
            (
                json!({"httpGet": {"port": 80, "scheme": "ftp"}}),
                "p.httpGet.scheme",
            ),
            (
                json!({"httpGet": {"port": 80, "httpHeaders": [{"value": "x"}]}}),
                "p.httpGet.httpHeaders[0].name",
            ),
            (
                json!({"exec": {"command": ["true"]}, "periodSeconds": 0}),
                "p.periodSeconds",
            ),
            (json!({"exec": {"command": ["a\u{0}"]}}), "p.exec.command"),
            (
                json!({"exec": {"command": vec!["x"; 300]}}),
                "p.exec.command",
            ),
            (json!({"httpGet": {"port": 0}}), "p.httpGet.port"),
            (
                json!({"httpGet": {"port": 80, "path": "healthz"}}),
                "p.httpGet.path",
            ),
            (
                json!({"httpGet": {"port": 80, "path": "/a b"}}),
                "p.httpGet.path",
            ),
            (
                json!({"httpGet": {"port": 80, "path": "/a\r\nX: y"}}),
                "p.httpGet.path",
            ),
            (
                json!({"httpGet": {"port": 80, "httpHeaders": [{"name": "X A", "value": "x"}]}}),
                "p.httpGet.httpHeaders[0].name",
            ),
            (
                json!({"httpGet": {"port": 80, "httpHeaders": [{"name": "X-A", "value": "x\r\nX-B: 1"}]}}),
                "p.httpGet.httpHeaders[0].value",
            ),
            (
                json!({"httpGet": {"port": 80, "httpHeaders": [{"name": "X-A"}, {"name": "x-a"}]}}),
                "p.httpGet.httpHeaders[1].name",
            ),
            (
                json!({"httpGet": {"port": 80, "httpHeaders": (0..33).map(|i| json!({"name": format!("X-{i}")})).collect::<Vec<_>>()}}),
                "p.httpGet.httpHeaders",
            ),
            (
                json!({"exec": {"command": ["true"]}, "timeoutSeconds": 3601}),
                "p.timeoutSeconds",
            ),
            (
                json!({"exec": {"command": ["true"]}, "failureThreshold": 1001}),
                "p.failureThreshold",
            ),
            (
                json!({"exec": {"command": ["true"]}, "successThreshold": 0}),
                "p.successThreshold",
            ),
        ] {
            assert_eq!(
                check(probe.clone()).unwrap_err().target.as_deref(),
                Some(target),
                "{probe}"
            );
        }
    }

    #[test]
    fn a_liveness_probe_succeeds_once() {
        let probe = json!({"exec": {"command": ["true"]}, "successThreshold": 2});
        let parsed = serde_json::from_value(probe).unwrap();
        assert!(self::probe(&parsed, "p", false).is_ok());
        let refused = self::probe(&parsed, "p", true).unwrap_err();
        assert_eq!(refused.target.as_deref(), Some("p.successThreshold"));
        let https =
            check(json!({"httpGet": {"port": 443, "scheme": "HTTPS", "path": "/"}})).unwrap();
        assert_eq!(https.http_get.unwrap().scheme.as_deref(), Some("https"));
    }

    proptest! {
        #[test]
        fn accepted_timings_are_within_an_hour(period in -5i64..5000, delay in -5i64..5000) {
            let probe = json!({"exec": {"command": ["true"]}, "periodSeconds": period, "initialDelaySeconds": delay});
            if let Ok(p) = check(probe) {
                prop_assert!((1..=3600).contains(&p.period_seconds.unwrap()));
                prop_assert!(p.initial_delay_seconds.unwrap() <= 3600);
            }
        }
    }
}

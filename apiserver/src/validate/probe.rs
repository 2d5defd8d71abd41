//! Liveness and readiness probes: exactly one action (`exec` or `httpGet`) and timings in range.

use berth_proto::arm;

use super::codes::{invalid, missing};
use crate::error::ApiError;
use crate::model::*;

pub(super) fn probe(p: &arm::ContainerProbe, target: &str) -> Result<Probe, ApiError> {
    if p.exec.is_some() == p.http_get.is_some() {
        return Err(invalid(
            target,
            "a probe has exactly one of 'exec' or 'httpGet'",
        ));
    }
    let exec_command = match &p.exec {
        Some(e) => {
            let cmd = e
                .command
                .clone()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| missing(format!("{target}.exec.command")))?;
            Some(cmd)
        }
        None => None,
    };
    let http_get = match &p.http_get {
        Some(h) => Some(http_get(h, &format!("{target}.httpGet"))?),
        None => None,
    };
    let seconds = |v: Option<i64>, field: &str, min: i64| -> Result<Option<u32>, ApiError> {
        match v {
            None => Ok(None),
            Some(n) if n >= min && n <= 3600 => Ok(Some(n as u32)),
            Some(n) => Err(invalid(
                format!("{target}.{field}"),
                format!("{n} is not between {min} and 3600"),
            )),
        }
    };
    Ok(Probe {
        exec_command,
        http_get,
        initial_delay_seconds: seconds(p.initial_delay_seconds, "initialDelaySeconds", 0)?,
        period_seconds: seconds(p.period_seconds, "periodSeconds", 1)?,
        failure_threshold: seconds(p.failure_threshold, "failureThreshold", 1)?,
        success_threshold: seconds(p.success_threshold, "successThreshold", 1)?,
        timeout_seconds: seconds(p.timeout_seconds, "timeoutSeconds", 1)?,
    })
}

fn http_get(h: &arm::ContainerHttpGet, t: &str) -> Result<HttpGet, ApiError> {
    let port = h.port.ok_or_else(|| missing(format!("{t}.port")))?;
    let port = u16::try_from(port)
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            invalid(
                format!("{t}.port"),
                format!("{port} is not a port between 1 and 65535"),
            )
        })?;
    let scheme = match h.scheme.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => None,
        Some(s @ ("http" | "https")) => Some(s.to_owned()),
        Some(_) => {
            return Err(invalid(format!("{t}.scheme"), "expected 'http' or 'https'"));
        }
    };
    let mut headers = Vec::new();
    for (i, hd) in h
        .http_headers
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let name = hd
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| missing(format!("{t}.httpHeaders[{i}].name")))?;
        headers.push((name, hd.value.clone().unwrap_or_default()));
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
        self::probe(&serde_json::from_value(probe).unwrap(), "p")
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
        ] {
            assert_eq!(
                check(probe.clone()).unwrap_err().target.as_deref(),
                Some(target),
                "{probe}"
            );
        }
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

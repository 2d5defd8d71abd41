//! Sizes: ARM's doubles (cores, GB) converted once to exact integers (millicores, MiB), a container's
//! limits against its requests, and the group's total against each limit and the cluster's maximum.

use berth_proto::arm;

use super::codes::{code, invalid, missing};
use crate::error::ApiError;
use crate::model::*;

/// A double in ARM units to an exact integer count of `scale`ths (cores -> millicores, GB -> MiB).
fn exact(
    value: Option<f64>,
    scale: f64,
    max: f64,
    target: &str,
    what: &str,
    required: bool,
) -> Result<u64, ApiError> {
    match value {
        Some(v) => {
            let units = v * scale;
            if !v.is_finite() || v <= 0.0 || units.round() < 1.0 || units > max {
                return Err(invalid(target, format!("{v} is not {what}")));
            }
            Ok(units.round() as u64)
        }
        None if required => Err(missing(target)),
        None => Ok(0),
    }
}

/// Converts ARM doubles to exact integers, once.
pub(super) fn size(
    r: &arm::ResourceRequests,
    target: &str,
    required: bool,
) -> Result<(Size, Option<String>), ApiError> {
    let cpu_millis = exact(
        r.cpu,
        1000.0,
        1e9,
        &format!("{target}.cpu"),
        "a positive number of cores",
        required,
    )?;
    let memory_mib = exact(
        r.memory_in_gb,
        1024.0,
        1e12,
        &format!("{target}.memoryInGB"),
        "a positive size in GB",
        required,
    )?;
    let (gpu, sku) = match &r.gpu {
        Some(g) => {
            let count = g
                .count
                .ok_or_else(|| missing(format!("{target}.gpu.count")))?;
            let count = u32::try_from(count)
                .ok()
                .filter(|c| (1..=8).contains(c))
                .ok_or_else(|| {
                    invalid(
                        format!("{target}.gpu.count"),
                        "a GPU count is between 1 and 8",
                    )
                })?;
            let sku = match g.sku.as_deref().map(str::to_ascii_uppercase).as_deref() {
                Some(s @ ("K80" | "P100" | "V100")) => s.to_owned(),
                None => return Err(missing(format!("{target}.gpu.sku"))),
                Some(_) => {
                    return Err(invalid(
                        format!("{target}.gpu.sku"),
                        "expected 'K80', 'P100' or 'V100'",
                    ));
                }
            };
            (count, Some(sku))
        }
        None => (0, None),
    };
    Ok((
        Size {
            cpu_millis,
            memory_mib,
            gpu,
        },
        sku,
    ))
}

/// A container's limits: a limit left out is the request (ACI's default); none may be below it.
pub(super) fn limits(
    l: &arm::ResourceRequests,
    requests: &Size,
    rtarget: &str,
) -> Result<Size, ApiError> {
    let (mut lim, _) = size(l, &format!("{rtarget}.limits"), false)?;
    if l.cpu.is_none() {
        lim.cpu_millis = requests.cpu_millis;
    }
    if l.memory_in_gb.is_none() {
        lim.memory_mib = requests.memory_mib;
    }
    if l.gpu.is_none() {
        lim.gpu = requests.gpu;
    }
    if lim.cpu_millis < requests.cpu_millis {
        return Err(invalid(
            format!("{rtarget}.limits.cpu"),
            "a limit may not be below the request",
        ));
    }
    if lim.memory_mib < requests.memory_mib {
        return Err(invalid(
            format!("{rtarget}.limits.memoryInGB"),
            "a limit may not be below the request",
        ));
    }
    Ok(lim)
}

/// The group's total request; each container's limits against it (ACI's rule); the total against
/// the cluster's maximum group size.
pub(super) fn group_total(
    containers: &[ContainerSpec],
    group: &str,
    max_group: &Size,
) -> Result<Size, ApiError> {
    let total = containers
        .iter()
        .fold(Size::default(), |sum, c| sum.add(&c.requests));
    for (i, c) in containers.iter().enumerate() {
        let Some(lim) = c.limits else { continue };
        let target = format!("properties.containers[{i}].properties.resources.limits");
        let over = |what: &str, limit: f64, total: f64, field: &str| {
            ApiError::bad_request(
                code::LIMIT_OVER_TOTAL,
                format!("{target}.{field}"),
                format!(
                    "The '{what}' limit '{limit}' in container '{}' is greater than the total request '{total}' of \
                     container group '{group}'.",
                    c.name
                ),
            )
        };
        if lim.cpu_millis > total.cpu_millis {
            return Err(over(
                "Cpu",
                cpu_cores(lim.cpu_millis),
                cpu_cores(total.cpu_millis),
                "cpu",
            ));
        }
        if lim.memory_mib > total.memory_mib {
            return Err(over(
                "MemoryInGB",
                memory_gb(lim.memory_mib),
                memory_gb(total.memory_mib),
                "memoryInGB",
            ));
        }
        if lim.gpu > total.gpu {
            return Err(over(
                "Gpu",
                f64::from(lim.gpu),
                f64::from(total.gpu),
                "gpu.count",
            ));
        }
    }
    if !total.fits_in(max_group) {
        return Err(ApiError::bad_request(
            code::GROUP_TOO_LARGE,
            "properties.containers",
            format!(
                "The container group requests {} CPU, {} GB memory and {} GPU; a group may request at most {} CPU, \
                 {} GB memory and {} GPU.",
                cpu_cores(total.cpu_millis),
                memory_gb(total.memory_mib),
                total.gpu,
                cpu_cores(max_group.cpu_millis),
                memory_gb(max_group.memory_mib),
                max_group.gpu
            ),
        ));
    }
    Ok(total)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn req(cpu: Option<f64>, memory: Option<f64>) -> arm::ResourceRequests {
        serde_json::from_value(serde_json::json!({"cpu": cpu, "memoryInGB": memory})).unwrap()
    }

    #[test]
    fn sizes_become_exact_integers() {
        let (s, sku) = size(&req(Some(0.5), Some(1.5)), "r", true).unwrap();
        assert_eq!(
            (s.cpu_millis, s.memory_mib, s.gpu, sku),
            (500, 1536, 0, None)
        );
        for (cpu, mem, target) in [
            (None, Some(1.0), "r.cpu"),
            (Some(0.0), Some(1.0), "r.cpu"),
            (Some(-1.0), Some(1.0), "r.cpu"),
            (Some(f64::NAN), Some(1.0), "r.cpu"),
            (Some(0.0001), Some(1.0), "r.cpu"),
            (Some(1.0), Some(1e300), "r.memoryInGB"),
        ] {
            let err = size(&req(cpu, mem), "r", true).unwrap_err();
            assert_eq!(err.target.as_deref(), Some(target), "{cpu:?} {mem:?}");
        }
    }

    #[test]
    fn limits_default_to_requests_and_never_go_below() {
        let requests = Size {
            cpu_millis: 1000,
            memory_mib: 1024,
            gpu: 0,
        };
        let lim = limits(&req(Some(2.0), None), &requests, "r").unwrap();
        assert_eq!((lim.cpu_millis, lim.memory_mib), (2000, 1024));
        let err = limits(&req(Some(0.5), None), &requests, "r").unwrap_err();
        assert_eq!(err.target.as_deref(), Some("r.limits.cpu"));
    }

    proptest! {
        /// Any accepted size is a whole, positive, bounded number of millicores and MiB.
        #[test]
        fn accepted_sizes_are_positive_integers(cpu in -2.0f64..1e7, mem in -2.0f64..1e10) {
            if let Ok((s, _)) = size(&req(Some(cpu), Some(mem)), "r", true) {
                prop_assert!(s.cpu_millis >= 1 && s.cpu_millis <= 1_000_000_000);
                prop_assert!(s.memory_mib >= 1);
                prop_assert!((s.cpu_millis as f64 - cpu * 1000.0).abs() <= 0.5);
            }
        }
    }
}

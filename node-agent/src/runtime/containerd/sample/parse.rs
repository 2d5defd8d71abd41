//! Parsers of the kernel's counter files, pure so they can be tested on any text: a file a process
//! inside a container can influence (its own `/proc/<pid>/net/dev` lists interfaces it names) is
//! read as untrusted, and anything unexpected is skipped rather than trusted.

/// A file of one number (`memory.current`, `cpuacct.usage`, `memory.usage_in_bytes`); `None` for
/// anything else (`max`, empty, garbage).
pub(super) fn number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The value of `key` in a flat keyed file of `<key> <value>` lines (`cpu.stat`, `memory.stat`).
pub(super) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some(key))
            .then(|| words.next()?.parse().ok())
            .flatten()
    })
}

/// cgroup v2 `cpu.stat`'s `usage_usec`, in ns.
pub(super) fn cpu_stat_usage_ns(text: &str) -> Option<u64> {
    keyed(text, "usage_usec").map(|usec| usec.saturating_mul(1000))
}

/// The working set as cAdvisor and the kubelet count it: usage minus inactive file pages (which the
/// kernel reclaims first), never below zero.
pub(super) fn working_set(usage: u64, inactive_file: u64) -> u64 {
    usage.saturating_sub(inactive_file)
}

/// Bytes received and sent through a network namespace's interfaces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct NetCounters {
    pub(super) rx_bytes: u64,
    pub(super) tx_bytes: u64,
}

/// `/proc/<pid>/net/dev`: the sum over every interface but loopback (`lo`, traffic a group has
/// with itself). Two header lines, then `<name>: <8 receive fields> <8 transmit fields>`, bytes
/// first in each. `None` if the text is not such a table.
pub(super) fn net_dev(text: &str) -> Option<NetCounters> {
    let mut lines = text.lines();
    let header = lines.next()?;
    if !header.contains("Receive") || !lines.next()?.contains("bytes") {
        return None;
    }
    let mut total = NetCounters::default();
    for line in lines {
        let Some((name, fields)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let fields: Vec<u64> = match fields
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
        {
            Ok(fields) => fields,
            Err(_) => continue,
        };
        let (Some(rx), Some(tx)) = (fields.first(), fields.get(8)) else {
            continue;
        };
        total.rx_bytes = total.rx_bytes.saturating_add(*rx);
        total.tx_bytes = total.tx_bytes.saturating_add(*tx);
    }
    Some(total)
}

/// The first pid in a `cgroup.procs` file (one pid a line), if any.
pub(super) fn first_pid(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|line| line.trim().parse().ok())
        .filter(|pid| *pid > 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    5000      50    0    0    0     0          0         0     5000      50    0    0    0     0       0          0
  eth0:  123456     900    0    0    0     0          0         0    65432     400    0    0    0     0       0          0
  eth1:      10       1    0    0    0     0          0         0       20       1    0    0    0     0       0          0
";

    #[test]
    fn network_counters_sum_every_interface_but_loopback() {
        assert_eq!(
            net_dev(NET_DEV),
            Some(NetCounters {
                rx_bytes: 123_466,
                tx_bytes: 65_452,
            })
        );
        let only_lo: String = NET_DEV.lines().take(3).map(|l| format!("{l}\n")).collect();
        assert_eq!(net_dev(&only_lo), Some(NetCounters::default()));
        assert_eq!(net_dev("not a table"), None);
        assert_eq!(net_dev(""), None);
    }

    #[test]
    fn a_malformed_interface_line_is_skipped_not_trusted() {
        let text = format!(
            "{NET_DEV}  evil: 99999999999999999999999 1 2\n  short: 1 2 3\n  eth9: x 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\n"
        );
        assert_eq!(net_dev(&text).unwrap().rx_bytes, 123_466);
    }

    #[test]
    fn cpu_and_memory_files_are_read_as_the_kernel_writes_them() {
        let cpu_stat = "usage_usec 2500123\nuser_usec 2000000\nsystem_usec 500123\nnr_periods 0\n";
        assert_eq!(cpu_stat_usage_ns(cpu_stat), Some(2_500_123_000));
        assert_eq!(cpu_stat_usage_ns("user_usec 5\n"), None);
        let memory_stat = "anon 1000\nfile 8192\ninactive_file 4096\nactive_file 4096\n";
        assert_eq!(keyed(memory_stat, "inactive_file"), Some(4096));
        assert_eq!(keyed(memory_stat, "file"), Some(8192), "whole keys only");
        assert_eq!(keyed("total_inactive_file 7\n", "inactive_file"), None);
        assert_eq!(number("104857600\n"), Some(104_857_600));
        assert_eq!(number("max\n"), None);
        assert_eq!(working_set(10_000, 4096), 5904);
        assert_eq!(working_set(10, 4096), 0, "never negative");
        assert_eq!(first_pid("\n4242\n4243\n"), Some(4242));
        assert_eq!(first_pid(""), None);
        assert_eq!(first_pid("0\n"), None);
    }

    proptest! {
        #[test]
        fn any_text_parses_without_panicking(text in ".{0,400}") {
            let _ = net_dev(&text);
            let _ = keyed(&text, "usage_usec");
            let _ = number(&text);
            let _ = first_pid(&text);
        }

        #[test]
        fn counters_of_any_interfaces_are_their_sum(
            interfaces in proptest::collection::vec(("[a-z]{1,6}[0-9]?", 0u64..1 << 50, 0u64..1 << 50), 0..8),
        ) {
            let mut text = String::from("Inter-| Receive | Transmit\n face |bytes packets|bytes packets\n");
            let mut expected = NetCounters::default();
            for (name, rx, tx) in &interfaces {
                text.push_str(&format!("{name:>6}: {rx} 1 0 0 0 0 0 0 {tx} 1 0 0 0 0 0 0\n"));
                if name != "lo" {
                    expected.rx_bytes += rx;
                    expected.tx_bytes += tx;
                }
            }
            prop_assert_eq!(net_dev(&text), Some(expected));
        }
    }
}

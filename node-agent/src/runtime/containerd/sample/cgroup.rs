//! Where a container's cgroup is and what it has used: cgroup v2 (`cpu.stat` `usage_usec`,
//! `memory.current` minus `memory.stat` `inactive_file`), or, on a host that still mounts the v1
//! controllers, v1 (`cpuacct.usage`, `memory.usage_in_bytes` minus `total_inactive_file`), as
//! cAdvisor reads either. runc makes a container's cgroup at its `cgroupsPath` below the root of
//! each hierarchy (`/<--cgroup-parent>/<group>/<container>`).

use std::fs;
use std::path::{Path, PathBuf};

use super::parse;

/// The cgroup hierarchies of the host, from `/proc/self/mountinfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Hierarchies {
    /// The cgroup v2 mount, if any (on a hybrid host it may have no controllers).
    pub(super) unified: Option<PathBuf>,
    /// The v1 hierarchies with the `cpuacct` and `memory` controllers, if mounted.
    pub(super) cpuacct: Option<PathBuf>,
    pub(super) memory: Option<PathBuf>,
}

impl Hierarchies {
    /// Reads `/proc/self/mountinfo`; none if it cannot be read.
    pub(super) fn of_host() -> Hierarchies {
        fs::read_to_string("/proc/self/mountinfo")
            .map(|text| Hierarchies::parse(&text))
            .unwrap_or_default()
    }

    /// The hierarchies in a mountinfo text: `<id> <parent> <dev> <root> <mount point> <options>
    /// [optional fields] - <type> <source> <super options>`. Only mounts of a hierarchy's root
    /// (`<root>` is `/`) count: a bind mount of a sub-cgroup is somebody else's view.
    pub(super) fn parse(mountinfo: &str) -> Hierarchies {
        let mut found = Hierarchies::default();
        for line in mountinfo.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let Some(dash) = fields.iter().position(|f| *f == "-") else {
                continue;
            };
            let (Some(root), Some(mount_point)) = (fields.get(3), fields.get(4)) else {
                continue;
            };
            if *root != "/" {
                continue;
            }
            let mount_point = PathBuf::from(mount_point);
            let fstype = fields.get(dash + 1).copied().unwrap_or_default();
            let options = fields.get(dash + 3).copied().unwrap_or_default();
            let has = |controller: &str| options.split(',').any(|o| o == controller);
            if fstype == "cgroup2" {
                found.unified.get_or_insert(mount_point.clone());
            }
            // `cpu,cpuacct,memory` in one hierarchy is allowed too.
            if fstype == "cgroup" && has("cpuacct") {
                found.cpuacct.get_or_insert(mount_point.clone());
            }
            if fstype == "cgroup" && has("memory") {
                found.memory.get_or_insert(mount_point);
            }
        }
        found
    }

    /// What the cgroup at `path` (absolute below the hierarchies' roots, e.g. `/berth/g/c`) has
    /// used, and one of its processes; `None` if it does not exist (the container is not running)
    /// or cannot be read.
    pub(super) fn read(&self, path: &str) -> Option<Usage> {
        let relative = path.trim_start_matches('/');
        if relative
            .split('/')
            .any(|part| part.is_empty() || part == "..")
        {
            return None;
        }
        if let Some(unified) = &self.unified {
            let dir = unified.join(relative);
            if dir.join("memory.current").is_file() {
                return read_v2(&dir);
            }
        }
        let cpuacct = self.cpuacct.as_ref()?.join(relative);
        let memory = self.memory.as_ref()?.join(relative);
        read_v1(&cpuacct, &memory)
    }
}

/// A cgroup's use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Usage {
    pub(super) cpu_usage_ns: u64,
    pub(super) memory_working_set_bytes: u64,
    /// A process in it (in the agent's pid namespace), for its network namespace.
    pub(super) pid: Option<u32>,
}

fn read(dir: &Path, file: &str) -> Option<String> {
    fs::read_to_string(dir.join(file)).ok()
}

fn read_v2(dir: &Path) -> Option<Usage> {
    let cpu_usage_ns = parse::cpu_stat_usage_ns(&read(dir, "cpu.stat")?)?;
    let current = parse::number(&read(dir, "memory.current")?)?;
    let inactive = parse::keyed(&read(dir, "memory.stat")?, "inactive_file").unwrap_or(0);
    Some(Usage {
        cpu_usage_ns,
        memory_working_set_bytes: parse::working_set(current, inactive),
        pid: read(dir, "cgroup.procs")
            .as_deref()
            .and_then(parse::first_pid),
    })
}

fn read_v1(cpuacct: &Path, memory: &Path) -> Option<Usage> {
    let cpu_usage_ns = parse::number(&read(cpuacct, "cpuacct.usage")?)?;
    let usage = parse::number(&read(memory, "memory.usage_in_bytes")?)?;
    let inactive = parse::keyed(&read(memory, "memory.stat")?, "total_inactive_file").unwrap_or(0);
    Some(Usage {
        cpu_usage_ns,
        memory_working_set_bytes: parse::working_set(usage, inactive),
        pid: read(memory, "cgroup.procs")
            .as_deref()
            .and_then(parse::first_pid),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:22 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
26 25 0:23 / /sys/fs/cgroup/cpu rw,relatime shared:10 - cgroup cgroup rw,cpu
27 25 0:24 / /sys/fs/cgroup/cpuacct rw,relatime shared:11 - cgroup cgroup rw,cpuacct
28 25 0:25 / /sys/fs/cgroup/memory rw,relatime shared:12 - cgroup cgroup rw,memory
29 25 0:26 / /sys/fs/cgroup/unified rw,relatime shared:13 - cgroup2 cgroup2 rw
40 28 0:25 /kubepods /mnt/view rw,relatime - cgroup cgroup rw,memory
";

    #[test]
    fn hierarchies_are_found_in_mountinfo() {
        assert_eq!(
            Hierarchies::parse(HYBRID),
            Hierarchies {
                unified: Some("/sys/fs/cgroup/unified".into()),
                cpuacct: Some("/sys/fs/cgroup/cpuacct".into()),
                memory: Some("/sys/fs/cgroup/memory".into()),
            }
        );
        let v2 = "30 1 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            Hierarchies::parse(v2).unified,
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let combined = "26 25 0:23 / /c rw shared:10 - cgroup cgroup rw,cpu,cpuacct,memory\n";
        let found = Hierarchies::parse(combined);
        assert_eq!(found.cpuacct, Some(PathBuf::from("/c")));
        assert_eq!(found.memory, Some(PathBuf::from("/c")));
        assert_eq!(Hierarchies::parse("garbage\n"), Hierarchies::default());
    }

    fn write(dir: &Path, files: &[(&str, &str)]) {
        fs::create_dir_all(dir).unwrap();
        for (name, text) in files {
            fs::write(dir.join(name), text).unwrap();
        }
    }

    #[test]
    fn a_v2_cgroup_is_read_and_preferred() {
        let root = tempfile::tempdir().unwrap();
        let unified = root.path().join("unified");
        write(
            &unified.join("berth/g/c"),
            &[
                ("cpu.stat", "usage_usec 1500\nuser_usec 1000\n"),
                ("memory.current", "10000\n"),
                ("memory.stat", "anon 5000\ninactive_file 3000\n"),
                ("cgroup.procs", "77\n"),
            ],
        );
        let found = Hierarchies {
            unified: Some(unified),
            cpuacct: Some(root.path().join("cpuacct")),
            memory: Some(root.path().join("memory")),
        };
        assert_eq!(
            found.read("/berth/g/c"),
            Some(Usage {
                cpu_usage_ns: 1_500_000,
                memory_working_set_bytes: 7000,
                pid: Some(77),
            })
        );
        assert_eq!(found.read("/berth/g/other"), None, "not running");
        assert_eq!(found.read("/berth/../g/c"), None);
    }

    #[test]
    fn a_v1_cgroup_is_read_when_the_unified_one_has_no_memory_controller() {
        let root = tempfile::tempdir().unwrap();
        let unified = root.path().join("unified");
        // runc makes the directory in the unified hierarchy too, without controller files.
        write(&unified.join("berth/g/c"), &[("cgroup.procs", "78\n")]);
        write(
            &root.path().join("cpuacct/berth/g/c"),
            &[("cpuacct.usage", "123456789\n")],
        );
        write(
            &root.path().join("memory/berth/g/c"),
            &[
                ("memory.usage_in_bytes", "8192\n"),
                (
                    "memory.stat",
                    "cache 4096\ninactive_file 99\ntotal_inactive_file 1024\n",
                ),
                ("cgroup.procs", "78\n79\n"),
            ],
        );
        let found = Hierarchies {
            unified: Some(unified),
            cpuacct: Some(root.path().join("cpuacct")),
            memory: Some(root.path().join("memory")),
        };
        assert_eq!(
            found.read("/berth/g/c"),
            Some(Usage {
                cpu_usage_ns: 123_456_789,
                memory_working_set_bytes: 7168,
                pid: Some(78),
            })
        );
        assert_eq!(Hierarchies::default().read("/berth/g/c"), None);
    }
}

//! The config file and where each setting comes from: flag > environment > config file > default.
//!
//! ```toml
//! endpoint = "https://127.0.0.1:8443"
//! token = "berth_…"
//! ca_file = "/home/me/.berth/ca.crt"
//! subscription = "dev"
//! location = "local"
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

pub const ENV_ENDPOINT: &str = "BERTH_ENDPOINT";
/// Several endpoints (replicas), comma-separated; beats [`ENV_ENDPOINT`].
pub const ENV_ENDPOINTS: &str = "BERTH_ENDPOINTS";
pub const ENV_TOKEN: &str = "BERTH_TOKEN";
pub const ENV_CA_FILE: &str = "BERTH_CA_FILE";
pub const ENV_SUBSCRIPTION: &str = "BERTH_SUBSCRIPTION";
pub const ENV_LOCATION: &str = "BERTH_LOCATION";
pub const ENV_CONFIG: &str = "BERTH_CONFIG";

/// The location of new groups when neither a flag, the environment, the config file nor a `--file`
/// names one.
pub const DEFAULT_LOCATION: &str = "local";

/// `config.toml`. Every key is optional; an unknown key is an error, so a typo is not silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A relative path is relative to the config file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl ConfigFile {
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Reads `path`; a file that does not exist is an empty config.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let mut file = Self::parse(&text)
            .with_context(|| format!("invalid config file {}", path.display()))?;
        if let (Some(ca), Some(dir)) = (&file.ca_file, path.parent())
            && ca.is_relative()
        {
            file.ca_file = Some(dir.join(ca));
        }
        Ok(file)
    }

    /// Writes the file readable by its owner only (it holds a token), creating its directory.
    /// The new contents replace the old in one rename, so a reader never sees half a file.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let text = toml::to_string(self).context("cannot serialise the config")?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".tmp");
        let tmp = dir.join(tmp_name);
        let write = || -> std::io::Result<()> {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut f = options.open(&tmp)?;
            // `mode` applies only to a file this call creates; a leftover keeps its bits.
            #[cfg(unix)]
            f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Where the config file is: `--config`, else `BERTH_CONFIG`, else `<config dir>/berth/config.toml`.
pub fn config_path(
    flag: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<PathBuf> {
    if let Some(path) = flag {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = env(ENV_CONFIG) {
        return Ok(PathBuf::from(path));
    }
    let dir = dirs::config_dir()
        .context("cannot tell where the config directory is; pass --config or set BERTH_CONFIG")?;
    Ok(dir.join("berth").join("config.toml"))
}

/// The values given on the command line.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub endpoint: Option<String>,
    pub token: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub subscription: Option<String>,
    pub location: Option<String>,
}

/// The settings a command runs with, each taken from the flag, else the environment, else the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub endpoint: Option<String>,
    pub token: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub subscription: Option<String>,
    /// `--location` or `BERTH_LOCATION`: beats the `location` of a `--file`.
    pub location_override: Option<String>,
    /// The config file's `location`: loses to the `location` of a `--file`.
    pub location_default: Option<String>,
}

impl Settings {
    /// The location of a group built from flags.
    pub fn location(&self) -> &str {
        self.location_override
            .as_deref()
            .or(self.location_default.as_deref())
            .unwrap_or(DEFAULT_LOCATION)
    }
}

/// Applies flag > environment (`env` returns `None` for unset or empty) > config file.
pub fn resolve(
    flags: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
    file: &ConfigFile,
) -> Settings {
    let pick = |flag: &Option<String>, var: &str, file: &Option<String>| {
        flag.clone().or_else(|| env(var)).or_else(|| file.clone())
    };
    Settings {
        endpoint: flags
            .endpoint
            .clone()
            .or_else(|| env(ENV_ENDPOINTS))
            .or_else(|| env(ENV_ENDPOINT))
            .or_else(|| file.endpoint.clone()),
        token: pick(&flags.token, ENV_TOKEN, &file.token),
        ca_file: flags
            .ca_file
            .clone()
            .or_else(|| env(ENV_CA_FILE).map(PathBuf::from))
            .or_else(|| file.ca_file.clone()),
        subscription: pick(&flags.subscription, ENV_SUBSCRIPTION, &file.subscription),
        location_override: flags.location.clone().or_else(|| env(ENV_LOCATION)),
        location_default: file.location.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| vars.get(k).cloned()
    }

    const FILE: &str = r#"
endpoint = "https://file:8443"
token = "file-token"
ca_file = "/etc/berth/ca.crt"
subscription = "file-sub"
location = "file-loc"
"#;

    #[test]
    fn the_file_alone_fills_everything() {
        let file = ConfigFile::parse(FILE).unwrap();
        let s = resolve(&Overrides::default(), &env_of(&[]), &file);
        assert_eq!(s.endpoint.as_deref(), Some("https://file:8443"));
        assert_eq!(s.token.as_deref(), Some("file-token"));
        assert_eq!(s.ca_file, Some(PathBuf::from("/etc/berth/ca.crt")));
        assert_eq!(s.subscription.as_deref(), Some("file-sub"));
        assert_eq!(s.location_override, None);
        assert_eq!(s.location(), "file-loc");
    }

    #[test]
    fn env_beats_file_and_flag_beats_env() {
        let file = ConfigFile::parse(FILE).unwrap();
        let env = env_of(&[
            (ENV_ENDPOINT, "https://env:8443"),
            (ENV_TOKEN, "env-token"),
            (ENV_CA_FILE, "/env/ca.crt"),
            (ENV_SUBSCRIPTION, "env-sub"),
            (ENV_LOCATION, "env-loc"),
        ]);
        let s = resolve(&Overrides::default(), &env, &file);
        assert_eq!(s.endpoint.as_deref(), Some("https://env:8443"));
        let with_replicas = env_of(&[
            (ENV_ENDPOINT, "https://env:8443"),
            (ENV_ENDPOINTS, "https://a:8443,https://b:8543"),
        ]);
        let r = resolve(&Overrides::default(), &with_replicas, &file);
        assert_eq!(
            r.endpoint.as_deref(),
            Some("https://a:8443,https://b:8543"),
            "the list beats one"
        );
        assert_eq!(s.token.as_deref(), Some("env-token"));
        assert_eq!(s.ca_file, Some(PathBuf::from("/env/ca.crt")));
        assert_eq!(s.subscription.as_deref(), Some("env-sub"));
        assert_eq!(s.location(), "env-loc");
        assert_eq!(s.location_override.as_deref(), Some("env-loc"));

        let flags = Overrides {
            endpoint: Some("https://flag:8443".into()),
            token: Some("flag-token".into()),
            ca_file: Some("/flag/ca.crt".into()),
            subscription: Some("flag-sub".into()),
            location: Some("flag-loc".into()),
        };
        let s = resolve(&flags, &env, &file);
        assert_eq!(s.endpoint.as_deref(), Some("https://flag:8443"));
        assert_eq!(s.token.as_deref(), Some("flag-token"));
        assert_eq!(s.ca_file, Some(PathBuf::from("/flag/ca.crt")));
        assert_eq!(s.subscription.as_deref(), Some("flag-sub"));
        assert_eq!(s.location(), "flag-loc");
        assert_eq!(s.location_default.as_deref(), Some("file-loc"));
    }

    #[test]
    fn location_defaults_to_local() {
        let s = resolve(&Overrides::default(), &env_of(&[]), &ConfigFile::default());
        assert_eq!(s.location(), "local");
        assert_eq!(s.endpoint, None);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = ConfigFile::parse("endpoint = \"https://x\"\ntokne = \"t\"\n").unwrap_err();
        assert!(err.to_string().contains("tokne"), "{err}");
    }

    #[test]
    fn config_path_precedence() {
        let env = env_of(&[(ENV_CONFIG, "/env/config.toml")]);
        assert_eq!(
            config_path(Some(Path::new("/flag.toml")), &env).unwrap(),
            PathBuf::from("/flag.toml")
        );
        assert_eq!(
            config_path(None, &env).unwrap(),
            PathBuf::from("/env/config.toml")
        );
    }

    #[test]
    fn write_then_load_round_trips_privately() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("config.toml");
        let file = ConfigFile {
            endpoint: Some("https://127.0.0.1:8443".into()),
            token: Some("berth_secret".into()),
            ca_file: Some("/abs/ca.crt".into()),
            subscription: None,
            location: Some("local".into()),
        };
        file.write(&path).unwrap();
        assert_eq!(ConfigFile::load(&path).unwrap(), file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("subscription"),
            "unset keys are left out:\n{text}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Overwriting keeps it private and replaces the contents.
        let again = ConfigFile {
            token: Some("other".into()),
            ..file
        };
        again.write(&path).unwrap();
        assert_eq!(
            ConfigFile::load(&path).unwrap().token.as_deref(),
            Some("other")
        );
    }

    #[test]
    fn a_missing_file_is_empty_and_a_relative_ca_is_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            ConfigFile::load(&dir.path().join("none.toml")).unwrap(),
            ConfigFile::default()
        );
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "ca_file = \"ca.crt\"\n").unwrap();
        assert_eq!(
            ConfigFile::load(&path).unwrap().ca_file,
            Some(dir.path().join("ca.crt"))
        );
    }
}

//! Volumes (`emptyDir`, `secret`, `gitRepo`, `azureFile`) and the mounts that name them, by the shared
//! spec rules the node applies too (`berth_proto::spec`): names, mount paths in their normal form,
//! repository URLs, clone directories and revisions, share and account names.

use std::collections::{BTreeMap, HashSet};

use base64::Engine as _;
use berth_proto::arm;
use berth_proto::spec::{self, git, names, paths};
use serde_json::Value;

use super::Limits;
use super::codes::{
    code, duplicate, invalid, invalid_name, missing, present, too_many, unsupported,
};
use crate::error::ApiError;
use crate::model::*;

pub(super) fn volume_mounts(
    mounts: &[arm::VolumeMount],
    target: &str,
    volumes: &HashSet<&str>,
) -> Result<Vec<VolumeMount>, ApiError> {
    let mut paths = HashSet::new();
    let mut out = Vec::with_capacity(mounts.len());
    for (i, m) in mounts.iter().enumerate() {
        let t = format!("{target}.volumeMounts[{i}]");
        let name = m
            .name
            .as_deref()
            .ok_or_else(|| missing(format!("{t}.name")))?;
        if !volumes.contains(name) {
            return Err(ApiError::bad_request(
                code::VOLUME_NOT_FOUND,
                format!("{t}.name"),
                format!("The volume '{name}' is mounted but not defined in 'properties.volumes'."),
            ));
        }
        let path = m
            .mount_path
            .as_deref()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| missing(format!("{t}.mountPath")))?;
        let normal = paths::mount_path(path).map_err(|e| invalid(format!("{t}.mountPath"), e))?;
        if !paths.insert(normal.clone()) {
            return Err(invalid(
                format!("{t}.mountPath"),
                spec::Broken::DuplicateMountPath(normal),
            ));
        }
        out.push(VolumeMount {
            name: name.to_owned(),
            mount_path: path.to_owned(),
            read_only: m.read_only.unwrap_or(false),
        });
    }
    Ok(out)
}

pub(super) fn volumes(
    volumes: &[arm::Volume],
    limits: &Limits,
) -> Result<Vec<VolumeSpec>, ApiError> {
    if volumes.len() > limits.max_volumes {
        return Err(too_many(
            "properties.volumes",
            "volumes",
            limits.max_volumes,
        ));
    }
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(volumes.len());
    for (i, v) in volumes.iter().enumerate() {
        let t = format!("properties.volumes[{i}]");
        let name = v
            .name
            .as_deref()
            .ok_or_else(|| missing(format!("{t}.name")))?;
        if names::volume(name).is_err() {
            return Err(ApiError::bad_request(
                code::INVALID_NAME,
                format!("{t}.name"),
                format!(
                    "The volume name '{name}' is invalid. It can contain only lowercase letters, numbers and hyphens, \
                     must start and end with a letter or number, may not contain '--', and must be 5 to 63 \
                     characters long."
                ),
            ));
        }
        if !names.insert(name) {
            return Err(duplicate(&format!("{t}.name"), "volume", name));
        }
        if present(&v.secret_reference) {
            return Err(unsupported(format!("{t}.secretReference")));
        }
        let kinds = [
            v.azure_file.is_some(),
            present(&v.empty_dir),
            v.secret.is_some(),
            v.git_repo.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(invalid(t, spec::Broken::NoSource));
        }
        let source = if let Some(af) = &v.azure_file {
            azure_file(af, &t)?
        } else if let Some(files) = &v.secret {
            secret(files, &t)?
        } else if let Some(repo) = &v.git_repo {
            git_repo(repo, &t)?
        } else {
            if !matches!(v.empty_dir, Some(Value::Object(_))) {
                return Err(invalid(
                    format!("{t}.emptyDir"),
                    "'emptyDir' is a JSON object",
                ));
            }
            VolumeSource::EmptyDir
        };
        out.push(VolumeSpec {
            name: name.to_owned(),
            source,
        });
    }
    Ok(out)
}

fn azure_file(af: &arm::AzureFileVolume, t: &str) -> Result<VolumeSource, ApiError> {
    if present(&af.storage_account_key_reference) {
        return Err(unsupported(format!(
            "{t}.azureFile.storageAccountKeyReference"
        )));
    }
    if present(&af.user_managed_identity_client_id) {
        return Err(unsupported(format!(
            "{t}.azureFile.userManagedIdentityClientId"
        )));
    }
    // An account key is base64 (Azure Storage's 512-bit keys): a placeholder is refused, not ignored.
    if let Some(key) = &af.storage_account_key
        && base64::engine::general_purpose::STANDARD
            .decode(key)
            .map_or(true, |k| k.is_empty())
    {
        return Err(invalid(
            format!("{t}.azureFile.storageAccountKey"),
            "a storage account key is base64",
        ));
    }
    let share_name = af
        .share_name
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| missing(format!("{t}.azureFile.shareName")))?;
    names::share(&share_name).map_err(|e| invalid_name(format!("{t}.azureFile.shareName"), e))?;
    let storage_account_name = af
        .storage_account_name
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| missing(format!("{t}.azureFile.storageAccountName")))?;
    names::storage_account(&storage_account_name)
        .map_err(|e| invalid_name(format!("{t}.azureFile.storageAccountName"), e))?;
    Ok(VolumeSource::AzureFile {
        share_name,
        storage_account_name,
        read_only: af.read_only.unwrap_or(false),
        storage_account_key: af.storage_account_key.clone(),
    })
}

fn secret(files: &BTreeMap<String, String>, t: &str) -> Result<VolumeSource, ApiError> {
    let mut pages = 0u64;
    for (file, contents) in files {
        names::secret_file(file).map_err(|e| invalid(format!("{t}.secret.{file}"), e))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(contents)
            .map_err(|_| {
                invalid(
                    format!("{t}.secret.{file}"),
                    "secret volume contents are base64",
                )
            })?;
        pages += (decoded.len() as u64).div_ceil(4096).max(1) * 4096;
    }
    if pages > spec::MAX_SECRET_VOLUME_BYTES {
        return Err(invalid(format!("{t}.secret"), spec::Broken::SecretTooLarge));
    }
    Ok(VolumeSource::Secret {
        files: files.clone(),
    })
}

fn git_repo(repo: &arm::GitRepoVolume, t: &str) -> Result<VolumeSource, ApiError> {
    let repository = repo
        .repository
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| missing(format!("{t}.gitRepo.repository")))?;
    git::repository(&repository).map_err(|e| invalid(format!("{t}.gitRepo.repository"), e))?;
    let directory = repo.directory.clone().unwrap_or_default();
    git::directory(&repository, &directory)
        .map_err(|e| invalid(format!("{t}.gitRepo.directory"), e))?;
    let revision = repo.revision.clone().unwrap_or_default();
    git::revision(&revision).map_err(|e| invalid(format!("{t}.gitRepo.revision"), e))?;
    Ok(VolumeSource::GitRepo {
        repository,
        directory: repo.directory.clone(),
        revision: repo.revision.clone(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn check(volume: Value) -> Result<Vec<VolumeSpec>, ApiError> {
        let volumes: Vec<arm::Volume> = serde_json::from_value(json!([volume])).unwrap();
        self::volumes(&volumes, &Limits::default())
    }

    fn target_of(volume: Value) -> String {
        check(volume).unwrap_err().target.unwrap_or_default()
    }

    fn mounts(paths: &[&str]) -> Result<Vec<VolumeMount>, ApiError> {
        let mounts: Vec<arm::VolumeMount> = serde_json::from_value(json!(
            paths
                .iter()
                .map(|p| json!({"name": "cache", "mountPath": p}))
                .collect::<Vec<_>>()
        ))
        .unwrap();
        volume_mounts(&mounts, "c", &HashSet::from(["cache"]))
    }

    #[test]
    fn node_refusals_are_refused_here() {
        let git = |repo: Value| json!({"name": "source", "gitRepo": repo});
        for (volume, target) in [
            (
                git(json!({"repository": "file:///srv/repo"})),
                "properties.volumes[0].gitRepo.repository",
            ),
            (
                git(json!({"repository": "/srv/repo"})),
                "properties.volumes[0].gitRepo.repository",
            ),
            (
                git(json!({"repository": "--upload-pack=touch /x"})),
                "properties.volumes[0].gitRepo.repository",
            ),
            (
                git(json!({"repository": "https://h/r", "directory": "/etc"})),
                "properties.volumes[0].gitRepo.directory",
            ),
            (
                git(json!({"repository": "https://h/..", "directory": ""})),
                "properties.volumes[0].gitRepo.directory",
            ),
            (
                git(json!({"repository": "https://h/r", "revision": "-b"})),
                "properties.volumes[0].gitRepo.revision",
            ),
            (
                json!({"name": "share", "azureFile": {"shareName": "../../..", "storageAccountName": "acct"}}),
                "properties.volumes[0].azureFile.shareName",
            ),
            (
                json!({"name": "share", "azureFile": {"shareName": "keep", "storageAccountName": "a/b"}}),
                "properties.volumes[0].azureFile.storageAccountName",
            ),
            (
                json!({"name": "certs", "secret": {"a\u{0}b": "eA=="}}),
                "properties.volumes[0].secret.a\u{0}b",
            ),
        ] {
            assert_eq!(target_of(volume.clone()), target, "{volume}");
        }
    }

    #[test]
    fn mount_paths_are_compared_in_normal_form() {
        assert!(mounts(&["/d", "/e/"]).is_ok());
        for (paths, at) in [
            (vec!["/d", "/d/"], 1),
            (vec!["/a/./b", "//a/b"], 1),
            (vec!["/"], 0),
            (vec!["/a\u{0}b"], 0),
            (vec!["/proc/x"], 0),
            (vec!["/etc/resolv.conf"], 0),
        ] {
            let err = mounts(&paths).unwrap_err();
            assert_eq!(
                err.target.as_deref(),
                Some(format!("c.volumeMounts[{at}].mountPath").as_str()),
                "{paths:?}"
            );
        }
        let long = format!("/{}", "a/".repeat(2500));
        assert!(mounts(&[&long]).is_err());
    }

    proptest! {
        /// An accepted gitRepo volume is one the node admits: the shared rules agree on it.
        #[test]
        fn accepted_git_volumes_pass_the_node_rules(repo in "(https://|file://|/|-|git://)[a-z.:/-]{0,12}", dir in "[a-z./-]{0,6}", rev in "[a-z -]{0,4}") {
            let volume = json!({"name": "source", "gitRepo": {"repository": repo, "directory": dir, "revision": rev}});
            if let Ok(v) = check(volume) {
                let node = v[0].to_proto();
                let Some(berth_proto::node::volume::Source::GitRepo(g)) = node.source else {
                    panic!("a gitRepo volume");
                };
                prop_assert!(git::repository(&g.repository).is_ok());
                prop_assert!(git::directory(&g.repository, &g.directory).is_ok());
                prop_assert!(git::revision(&g.revision).is_ok());
            }
        }
    }
}

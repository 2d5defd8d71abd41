//! An ACI YAML/JSON group file (aci-api.md §7) read into the PUT it stands for, the way `az container
//! create --file` reads it: `berth container create --file` and the console's
//! `POST /console/v1/manifests` share this one reading.

use serde_json::{Map, Value};

/// What a group file PUTs.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The group's name: the file's `name`, else the one the caller gave.
    pub name: String,
    /// The file's `apiVersion`, else [`crate::arm::API_VERSION`].
    pub api_version: String,
    /// The resource without `apiVersion`, `name`, `type` and `id`, as the file wrote it (a `cpu: 1`
    /// stays the number 1), with a `location`.
    pub body: Value,
}

/// How a group file is written (`"yaml"` or `"json"` in the console's request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// JSON for `*.json`, YAML for anything else (ACI's format).
    pub fn of(path: &std::path::Path) -> Self {
        match path.extension() {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Self::Json,
            _ => Self::Yaml,
        }
    }
}

/// Why a group file does not make a PUT.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The text is not YAML (the parser's message names the line and column).
    #[error("the file is not valid YAML: {0}")]
    Yaml(serde_norway::Error),
    /// The text is not JSON (the parser's message names the line and column).
    #[error("the file is not valid JSON: {0}")]
    Json(serde_json::Error),
    /// The file's top level is a list, a string, … rather than a mapping.
    #[error("expected a mapping with name, properties, … at the top")]
    NotAMapping,
    /// A top-level `name` or `apiVersion` that is not a string.
    #[error("`{field}` must be a string, not {value}")]
    NotAString { field: &'static str, value: Value },
    /// The caller named the group and the file names it otherwise.
    #[error("the name {given:?} differs from the file's name {file:?}")]
    NameDiffers { given: String, file: String },
    /// Neither the file nor the caller names the group.
    #[error("the file has no `name`, and no name was given")]
    NoName,
    /// YAML flow collections (`[`, `{`) nested past [`MAX_FLOW_DEPTH`]: refused before parsing,
    /// because the YAML scanner's work grows with the square of that depth (a 1 MiB file of `[`
    /// would keep it busy for many minutes).
    #[error(
        "the file nests `[` or `{{` more than {MAX_FLOW_DEPTH} deep, at line {line} column {column}"
    )]
    TooDeep { line: usize, column: usize },
}

/// The deepest YAML flow nesting read (the YAML parser refuses more than 128 levels of any nesting).
pub const MAX_FLOW_DEPTH: usize = 128;

impl Manifest {
    /// Reads a group file: `name` (the caller's) must agree with the file's `name`; the location is
    /// `location_override`, else the file's, else `location_fallback`.
    pub fn parse(
        text: &str,
        format: Format,
        name: Option<&str>,
        location_override: Option<&str>,
        location_fallback: &str,
    ) -> Result<Self, ManifestError> {
        let value: Value = match format {
            Format::Yaml => {
                if let Some((line, column)) = too_deep(text, MAX_FLOW_DEPTH) {
                    return Err(ManifestError::TooDeep { line, column });
                }
                serde_norway::from_str(text).map_err(ManifestError::Yaml)?
            }
            Format::Json => serde_json::from_str(text).map_err(ManifestError::Json)?,
        };
        let Value::Object(mut body) = value else {
            return Err(ManifestError::NotAMapping);
        };
        let name = match (string_field(&mut body, "name")?, name) {
            (Some(file), Some(given)) if file != given => {
                return Err(ManifestError::NameDiffers {
                    given: given.to_owned(),
                    file,
                });
            }
            (Some(file), _) => file,
            (None, Some(given)) => given.to_owned(),
            (None, None) => return Err(ManifestError::NoName),
        };
        let api_version = string_field(&mut body, "apiVersion")?
            .unwrap_or_else(|| crate::arm::API_VERSION.to_owned());
        body.remove("type");
        body.remove("id");
        let location = match (location_override, body.get("location")) {
            (Some(given), _) => given.to_owned(),
            (None, Some(Value::String(file))) if !file.is_empty() => file.clone(),
            _ => location_fallback.to_owned(),
        };
        body.insert("location".to_owned(), Value::String(location));
        Ok(Self {
            name,
            api_version,
            body: Value::Object(body),
        })
    }
}

/// Where YAML `text` first nests flow collections deeper than `limit` (line and column, from 1), or
/// `None`. It never counts less than the YAML scanner would: every `[` and `{` opens, and a `]` or
/// `}` closes only outside what may be a quoted scalar (opened by a quote after a space or an
/// indicator, as YAML opens them) or a comment (`#` after a space). So text built to hide its depth
/// from this count is refused too; a plain YAML file is counted exactly.
fn too_deep(text: &str, limit: usize) -> Option<(usize, usize)> {
    #[derive(Clone, Copy, PartialEq)]
    enum In {
        Code,
        Single,
        Double,
        Comment,
    }
    let mut state = In::Code;
    let mut depth = 0usize;
    let (mut line, mut column) = (1, 0);
    let mut prev = '\n';
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        column += 1;
        if c == '[' || c == '{' {
            depth += 1;
            if depth > limit {
                return Some((line, column));
            }
        }
        let after_space = prev.is_whitespace() || "[{,:?-".contains(prev);
        state = match (state, c) {
            (In::Code, ']' | '}') => {
                depth = depth.saturating_sub(1);
                In::Code
            }
            (In::Code, '\'') if after_space => In::Single,
            (In::Code, '"') if after_space => In::Double,
            (In::Code, '#') if prev.is_whitespace() => In::Comment,
            (In::Single, '\'') if chars.peek() == Some(&'\'') => {
                chars.next();
                column += 1;
                In::Single
            }
            (In::Double, '\\') => {
                if chars.next().is_some() {
                    column += 1;
                }
                In::Double
            }
            (In::Single, '\'') | (In::Double, '"') => In::Code,
            (In::Comment, '\n') => In::Code,
            (state, _) => state,
        };
        if c == '\n' {
            line += 1;
            column = 0;
        }
        prev = c;
    }
    None
}

/// Takes `field` out of `body`: a string, or nothing when absent or null.
fn string_field(
    body: &mut Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, ManifestError> {
    match body.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(value) => Err(ManifestError::NotAString { field, value }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::arm::ContainerGroup;

    /// aci-api.md §7's example, from the ACI docs on secure environment variables.
    const SECURE_YAML: &str = "\
apiVersion: 2018-06-01
location: eastus
name: securetest
properties:
  containers:
  - name: mycontainer
    properties:
      environmentVariables:
        - name: 'NOTSECRET'
          value: 'my-exposed-value'
        - name: 'SECRET'
          secureValue: 'my-secret-value'
      image: nginx
      ports: []
      resources:
        requests:
          cpu: 1
          memoryInGB: 1.5
  osType: Linux
  restartPolicy: Always
tags: null
type: Microsoft.ContainerInstance/containerGroups
";

    #[test]
    fn the_aci_yaml_example_maps_to_a_put() {
        let m = Manifest::parse(SECURE_YAML, Format::Yaml, None, None, "local").unwrap();
        assert_eq!(m.name, "securetest");
        assert_eq!(m.api_version, "2018-06-01");
        assert_eq!(
            m.body,
            json!({
                "location": "eastus",
                "tags": null,
                "properties": {
                    "containers": [{
                        "name": "mycontainer",
                        "properties": {
                            "environmentVariables": [
                                {"name": "NOTSECRET", "value": "my-exposed-value"},
                                {"name": "SECRET", "secureValue": "my-secret-value"}
                            ],
                            "image": "nginx",
                            "ports": [],
                            "resources": {"requests": {"cpu": 1, "memoryInGB": 1.5}}
                        }
                    }],
                    "osType": "Linux",
                    "restartPolicy": "Always"
                }
            })
        );
        assert!(
            m.body["properties"]["containers"][0]["properties"]["resources"]["requests"]["cpu"]
                .is_u64()
        );
        // The body is a container group as the apiserver reads it.
        let group: ContainerGroup = serde_json::from_value(m.body).unwrap();
        assert_eq!(group.name, None);
        assert_eq!(group.kind, None);
    }

    #[test]
    fn the_callers_name_and_location_against_the_file() {
        let m = Manifest::parse(
            SECURE_YAML,
            Format::Yaml,
            Some("securetest"),
            Some("local"),
            "x",
        )
        .unwrap();
        assert_eq!(m.body["location"], "local");

        let err =
            Manifest::parse(SECURE_YAML, Format::Yaml, Some("other"), None, "local").unwrap_err();
        assert!(
            matches!(&err, ManifestError::NameDiffers { given, file } if given == "other" && file == "securetest"),
            "{err}"
        );

        let nameless = "properties: {containers: []}\n";
        let m = Manifest::parse(nameless, Format::Yaml, Some("web"), None, "fallback").unwrap();
        assert_eq!(
            (m.name.as_str(), m.api_version.as_str()),
            ("web", "2023-05-01")
        );
        assert_eq!(m.body["location"], "fallback");
        let err = Manifest::parse(nameless, Format::Yaml, None, None, "x").unwrap_err();
        assert!(matches!(err, ManifestError::NoName), "{err}");
    }

    #[test]
    fn json_files_and_bad_files() {
        let text =
            r#"{"name":"j","apiVersion":"2021-10-01","id":"/x","location":"here","properties":{}}"#;
        let path = std::path::Path::new("group.JSON");
        let m = Manifest::parse(text, Format::of(path), None, None, "local").unwrap();
        assert_eq!(m.api_version, "2021-10-01");
        assert_eq!(m.body, json!({"location": "here", "properties": {}}));
        assert_eq!(Format::of(std::path::Path::new("g.yml")), Format::Yaml);

        let err = Manifest::parse("- a\n- b\n", Format::Yaml, Some("n"), None, "l").unwrap_err();
        assert!(matches!(err, ManifestError::NotAMapping), "{err}");
        let err = Manifest::parse("name: 7\n", Format::Yaml, None, None, "l").unwrap_err();
        assert_eq!(err.to_string(), "`name` must be a string, not 7");
        let err = Manifest::parse("apiVersion: [1]\nname: a\n", Format::Yaml, None, None, "l")
            .unwrap_err();
        assert!(
            matches!(
                err,
                ManifestError::NotAString {
                    field: "apiVersion",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn parse_errors_say_where() {
        let err =
            Manifest::parse("name: a\nproperties: [\n", Format::Yaml, None, None, "l").unwrap_err();
        assert!(matches!(err, ManifestError::Yaml(_)), "{err}");
        assert!(err.to_string().contains("line 3 column 1"), "{err}");
        let err =
            Manifest::parse("{\n  \"name\": \"a\",\n}", Format::Json, None, None, "l").unwrap_err();
        assert!(matches!(err, ManifestError::Json(_)), "{err}");
        assert!(err.to_string().contains("line 3"), "{err}");
    }

    #[test]
    fn flow_depth_is_counted_as_yaml_nests() {
        assert_eq!(too_deep("a: [[[]]]\n", 3), None);
        assert_eq!(too_deep("a: [[[[]]]]\n", 3), Some((1, 7)));
        // Siblings do not add up; quoted and commented brackets do not close.
        let siblings = format!("a: [{}]\n", "{p: 1}, ".repeat(500));
        assert_eq!(too_deep(&siblings, 2), None);
        assert_eq!(
            too_deep("a: [ ']', [ \"]\", [ # ]\n ] ] ]", 2),
            Some((1, 18))
        );
        // Apostrophes inside words and escaped quotes are not the ends of quoted scalars.
        assert_eq!(too_deep("a: [it's, [b]]\nc: ['x'']', [y]]\n", 2), None);
        assert_eq!(too_deep("a: [\"x\\\"]\", [y]]\n", 2), None);
    }

    /// A file is untrusted text: aliases that expand exponentially and deep nesting are refused,
    /// not expanded or recursed into until the process runs out of memory or stack.
    #[test]
    fn hostile_files_are_refused() {
        let mut bomb = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for (i, prev) in ('b'..='j').zip('a'..='i') {
            bomb.push_str(&format!(
                "{i}: &{i} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
            ));
        }
        bomb.push_str("name: bomb\n");
        assert!(Manifest::parse(&bomb, Format::Yaml, None, None, "l").is_err());

        // A whole body (1 MiB) of nesting is refused at once rather than scanned for hours.
        let started = std::time::Instant::now();
        let deep_yaml = format!(
            "name: a\nx: {}{}\n",
            "[".repeat(1 << 19),
            "]".repeat(1 << 19)
        );
        let err = Manifest::parse(&deep_yaml, Format::Yaml, None, None, "l").unwrap_err();
        assert!(
            matches!(
                err,
                ManifestError::TooDeep {
                    line: 2,
                    column: 132
                }
            ),
            "{err}"
        );
        // Closing brackets hidden in quoted scalars and comments do not hide the depth.
        let hidden = format!("name: a\nx: {}\n", "[ ']' # ]\n\"]\" ".repeat(200));
        let err = Manifest::parse(&hidden, Format::Yaml, None, None, "l").unwrap_err();
        assert!(matches!(err, ManifestError::TooDeep { .. }), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let deep_json = format!(
            "{{\"name\": \"a\", \"x\": {}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(Manifest::parse(&deep_json, Format::Json, None, None, "l").is_err());
    }
}

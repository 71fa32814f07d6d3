//! Reading `spin.toml` (manifest version 2) the way `spin up` does: application
//! variables with defaults and secrets, HTTP trigger routes, components with their
//! source, allowed outbound hosts, key-value stores, files and `{{ }}` templates.
//!
//! As Spin 3.6.3 does: a `--variable` the manifest does not declare is ignored (the
//! caller is told its name in [`App::ignored_variables`]); an `allowed_outbound_hosts`
//! entry that is invalid as written, or with the variables' defaults, stops the load,
//! while one made invalid by a value given at run time only makes the host deny every
//! outbound request (see [`super::allowed_hosts`]).

use super::allowed_hosts;
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
struct RawManifest {
    spin_manifest_version: u32,
    #[serde(default)]
    variables: BTreeMap<String, RawVariable>,
    #[serde(default)]
    trigger: RawTriggers,
    #[serde(default)]
    component: BTreeMap<String, RawComponent>,
}

#[derive(Debug, Default, Deserialize)]
struct RawTriggers {
    #[serde(default)]
    http: Vec<RawHttpTrigger>,
}

#[derive(Debug, Deserialize)]
struct RawHttpTrigger {
    route: String,
    component: String,
}

#[derive(Debug, Deserialize)]
struct RawVariable {
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    secret: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawFile {
    Pattern(String),
    Mount { source: String, destination: String },
}

#[derive(Debug, Deserialize)]
struct RawComponent {
    source: String,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    files: Vec<RawFile>,
}

/// A component ready to run: everything resolved.
#[derive(Debug, Clone)]
pub struct App {
    /// The component's id.
    pub component: String,
    /// The route prefix it serves (`/...` serves everything).
    pub route: String,
    /// The `.wasm` module (wasm32-wasip1) or component.
    pub source: PathBuf,
    /// Allowed outbound hosts, templates expanded (not yet checked: see
    /// [`allowed_hosts::Policy::resolve`]).
    pub allowed_outbound_hosts: Vec<String>,
    /// Key-value store labels it may open.
    pub key_value_stores: Vec<String>,
    /// Component variables, templates expanded.
    pub variables: BTreeMap<String, String>,
    /// Directories to mount: (host path, guest path).
    pub files: Vec<(PathBuf, String)>,
    /// Values of secret variables, never to be logged.
    pub secrets: Vec<String>,
    /// Names given with `--variable` that the manifest does not declare: ignored.
    pub ignored_variables: Vec<String>,
}

/// Expands `{{ name }}` templates with application variables.
pub fn expand(template: &str, values: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| anyhow!("unclosed {{{{ in {template:?}"))?;
        let name = after[..end].trim();
        let value = values.get(name).ok_or_else(|| anyhow!("{template:?} uses the undeclared variable {name:?}"))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Loads `spin.toml` and resolves its first HTTP component with the given variable
/// values (from flags, then `SPIN_VARIABLE_*`, then defaults).
pub fn load(path: &Path, given: &[(String, String)], env: &BTreeMap<String, String>) -> Result<App> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read manifest {}", path.display()))?;
    let raw: RawManifest = toml::from_str(&text).with_context(|| format!("invalid manifest {}", path.display()))?;
    if raw.spin_manifest_version != 2 {
        bail!("spin_manifest_version {} is not supported (only 2)", raw.spin_manifest_version);
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut values = BTreeMap::new();
    let mut secrets = Vec::new();
    for (name, decl) in &raw.variables {
        let from_env = env.get(&format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()));
        let value = given.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone()).or_else(|| from_env.cloned());
        let value = match (value, &decl.default) {
            (Some(v), _) => v,
            (None, Some(d)) => d.clone(),
            (None, None) if decl.required => {
                bail!("the variable {name} is required: pass --variable {name}=VALUE or set SPIN_VARIABLE_{}", name.to_ascii_uppercase())
            }
            (None, None) => String::new(),
        };
        if decl.secret && !value.is_empty() {
            secrets.push(value.clone());
        }
        values.insert(name.clone(), value);
    }
    let mut ignored_variables: Vec<String> = Vec::new();
    for (name, _) in given {
        if !raw.variables.contains_key(name) && !ignored_variables.contains(name) {
            ignored_variables.push(name.clone());
        }
    }
    let trigger = raw.trigger.http.first().ok_or_else(|| anyhow!("the manifest has no [[trigger.http]]"))?;
    let component = raw
        .component
        .get(&trigger.component)
        .ok_or_else(|| anyhow!("trigger route {} names the missing component {}", trigger.route, trigger.component))?;
    let variables = component.variables.iter().map(|(k, t)| Ok((k.clone(), expand(t, &values)?))).collect::<Result<_>>()?;
    validate_allowed_hosts(&component.allowed_outbound_hosts, &raw.variables)
        .with_context(|| format!("Failed to load component `{}`: `allowed_outbound_hosts` is malformed", trigger.component))?;
    // An entry that expands to nothing stays, as in Spin, where it is invalid.
    let allowed_outbound_hosts = component.allowed_outbound_hosts.iter().map(|t| expand(t, &values)).collect::<Result<Vec<_>>>()?;
    let files = component
        .files
        .iter()
        .map(|f| match f {
            RawFile::Pattern(p) => (base.join(p), format!("/{}", p.trim_start_matches('/'))),
            RawFile::Mount { source, destination } => (base.join(source), destination.clone()),
        })
        .collect();
    Ok(App {
        component: trigger.component.clone(),
        route: trigger.route.trim_end_matches("/...").to_owned(),
        source: base.join(&component.source),
        allowed_outbound_hosts,
        key_value_stores: component.key_value_stores.clone(),
        variables,
        files,
        secrets,
        ignored_variables,
    })
}

/// What Spin checks when it loads an app: literal entries must parse, and so must
/// templated ones whose variables all have defaults, expanded with the defaults. A
/// template waiting on a value given at run time is checked only then.
fn validate_allowed_hosts(entries: &[String], declared: &BTreeMap<String, RawVariable>) -> Result<()> {
    let defaults: BTreeMap<String, String> = declared.iter().filter_map(|(name, v)| Some((name.clone(), v.default.clone()?))).collect();
    if entries.len() == 1 && entries[0] == "insecure:allow-all" {
        // Refused with the reason Spin gives.
        allowed_hosts::parse_all(entries)?;
    }
    for entry in entries {
        if !entry.contains("{{") {
            allowed_hosts::AllowedHost::parse(entry)?;
        } else if let Ok(resolved) = expand(entry, &defaults) {
            allowed_hosts::AllowedHost::parse(&resolved).with_context(|| {
                format!("using default variable value(s) with template {entry:?} results in invalid config {resolved:?}")
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let values = BTreeMap::from([("a".to_string(), "x".to_string())]);
        assert_eq!(expand("p{{ a }}q{{a}}", &values).unwrap(), "pxqx");
        assert!(expand("{{ b }}", &values).is_err());
    }

    /// The project's own spin.toml and its required variables.
    fn projects_manifest() -> (std::path::PathBuf, Vec<(String, String)>) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../spin.toml");
        let given = vec![
            ("vod_secret_id".to_string(), "AKID".to_string()),
            ("vod_secret_key".into(), "k".into()),
            ("api_token".into(), "t".into()),
            ("source_origin".into(), "http://127.0.0.1:8080".into()),
        ];
        (path, given)
    }

    #[test]
    fn the_projects_manifest_resolves() {
        let (path, given) = projects_manifest();
        let app = load(&path, &given, &BTreeMap::new()).unwrap();
        // notify_origin unset: its harmless default keeps the entry valid.
        assert_eq!(app.allowed_outbound_hosts, vec!["https://vod2.qcloud.com", "http://127.0.0.1:8080", "https://notify.invalid"]);
        assert_eq!(app.key_value_stores, vec!["default"]);
        assert_eq!(app.variables["budget_ms"], "20000");
        assert!(app.secrets.contains(&"k".to_string()) && app.secrets.contains(&"t".to_string()));
        let missing = load(&path, &given[..3], &BTreeMap::new()).unwrap_err().to_string();
        assert!(missing.contains("source_origin"), "{missing}");
        let env = BTreeMap::from([("SPIN_VARIABLE_SOURCE_ORIGIN".to_string(), "http://h:1".to_string())]);
        assert_eq!(load(&path, &given[..3], &env).unwrap().variables["source_origin"], "http://h:1");
    }

    /// Spin 3.6.3 starts with an undeclared `--variable` and ignores it.
    #[test]
    fn undeclared_variables_are_ignored_by_name() {
        let (path, mut given) = projects_manifest();
        given.extend([("not_declared".into(), "v1".into()), ("not_declared".into(), "v2".into())]);
        let app = load(&path, &given, &BTreeMap::new()).unwrap();
        assert_eq!(app.ignored_variables, vec!["not_declared"]);
        assert!(!app.variables.contains_key("not_declared"));
    }

    /// A manifest of one component allowing `hosts`, with a variable `v` declared by
    /// `v_decl`; loaded with `given`.
    fn load_hosts(hosts: &str, v_decl: &str, given: &[(&str, &str)]) -> Result<App> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spin.toml");
        let text = format!(
            "spin_manifest_version = 2\n[variables]\nv = {v_decl}\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n\
             [component.c]\nsource = \"c.wasm\"\nallowed_outbound_hosts = {hosts}\n"
        );
        std::fs::write(&path, text).unwrap();
        let given: Vec<(String, String)> = given.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        load(&path, &given, &BTreeMap::new())
    }

    /// Spin refuses to load an invalid literal entry, or a template invalid with the
    /// variables' defaults; a value given at run time is checked only when used.
    #[test]
    fn allowed_hosts_are_checked_at_load_as_spin_checks_them() {
        let refused = load_hosts(r#"["https://ok.example", "bad host"]"#, "{ default = \"x\" }", &[]).unwrap_err();
        assert!(format!("{refused:#}").contains("`allowed_outbound_hosts` is malformed"), "{refused:#}");
        let refused = load_hosts(r#"["https://{{ v }}"]"#, "{ default = \"invalid host\" }", &[]).unwrap_err();
        assert!(format!("{refused:#}").contains("using default variable value(s)"), "{refused:#}");
        assert!(load_hosts(r#"["insecure:allow-all"]"#, "{ default = \"x\" }", &[]).is_err());
        // The default is what is checked, even when a valid value is given.
        assert!(load_hosts(r#"["https://{{ v }}"]"#, "{ default = \"invalid host\" }", &[("v", "fine.example")]).is_err());
        let app = load_hosts(r#"["{{ v }}"]"#, "{ required = true }", &[("v", "http://a:1,http://b:2")]).unwrap();
        assert!(matches!(allowed_hosts::Policy::resolve(&app.allowed_outbound_hosts), allowed_hosts::Policy::Invalid(_)));
        let app = load_hosts(r#"["{{ v }}"]"#, "{ required = true }", &[("v", "")]).unwrap();
        assert_eq!(app.allowed_outbound_hosts, vec![""], "an empty entry is kept (and invalid, as in Spin)");
    }
}

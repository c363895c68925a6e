//! Settings: built-in defaults < optional TOML file < environment (SPEC §5).
//!
//! A setting is the environment variable `APP__<SECTION>__<KEY>` (for example
//! `APP__SERVER__PORT`), except the conventional `DATABASE_URL`, `DATABASE_FEED_URL` and
//! `DATABASE_REPLICA_URLS`; a secret may instead be read from a file, `<VARIABLE>_FILE`, as
//! container platforms mount them. Each section's defaults and checks sit beside its fields
//! (`sections`; the database's in `database`, the keys' in `auth`, the rate limits' in
//! `rate_limit`); every setting is listed with its default in `.env.example`. A setting that is
//! missing, unknown or unusable is named by its variable in a one-line error.

mod auth;
mod database;
mod rate_limit;
mod sections;

use std::collections::HashMap;
use std::path::Path;

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

pub use auth::*;
pub use database::*;
pub use rate_limit::*;
pub use sections::*;

/// Where `load` looks for a file when none is named; a missing default file is not an error.
pub const DEFAULT_CONFIG_FILE: &str = "config/agent-api.toml";

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub ops: OpsSettings,
    pub database: DatabaseSettings,
    pub migrate: MigrateSettings,
    pub auth: AuthSettings,
    pub api: ApiSettings,
    pub legacy: LegacySettings,
    pub rate_limit: RateLimitSettings,
    pub listing_cache: ListingCacheSettings,
    pub tls: TlsSettings,
    pub log: LogSettings,
    /// What loading noticed that the operator should hear of, once (a secret's file that
    /// others may read); never a secret itself.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// The settings named by conventional variables rather than `APP__…`.
const CONVENTIONAL: [(&str, &str); 3] = [
    ("database.url", "DATABASE_URL"),
    ("database.feed_url", "DATABASE_FEED_URL"),
    ("database.replica_urls", "DATABASE_REPLICA_URLS"),
];

/// The settings that are secrets: each may be given as a file, `<VARIABLE>_FILE`.
const SECRETS: [&str; 5] = [
    "database.url",
    "database.feed_url",
    "database.replica_urls",
    "auth.jwt_secret",
    "rate_limit.redis_url",
];

/// Settings holding lists, written comma-separated in the environment.
const LISTS: [&str; 2] = ["rate_limit.trusted_proxies", "database.replica_urls"];

/// The environment variable of the setting at `key` (`section.field`).
pub fn env_name(key: &str) -> String {
    match CONVENTIONAL.iter().find(|(setting, _)| *setting == key) {
        Some((_, variable)) => variable.to_string(),
        None => format!("APP__{}", key.replace('.', "__").to_uppercase()),
    }
}

/// A setting that is missing or cannot be used; the message names it by its variable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    /// `message` about the setting at `key`, named as operators set it.
    pub fn about(key: &str, message: &str) -> Self {
        Self(format!("{} {message}", env_name(key)))
    }
}

impl Settings {
    /// Loads settings from defaults, `file` (or the default file when present) and the process
    /// environment, then checks what serde cannot.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// `load` with an explicit environment, so callers and tests need not touch the process's.
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut warnings = Vec::new();
        let env = with_secret_files(env.into_iter().collect(), &mut warnings)?;
        let file_source = match file {
            Some(path) => config::File::from(path).required(true),
            None => config::File::with_name(DEFAULT_CONFIG_FILE).required(false),
        };
        let mut environment = config::Environment::with_prefix("APP")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .ignore_empty(true)
            .list_separator(",");
        for key in LISTS {
            environment = environment.with_list_parse_key(key);
        }
        let lists: Vec<String> = LISTS.iter().map(|key| env_name(key)).collect();
        let application: HashMap<String, String> = env
            .iter()
            .filter(|(name, _)| name.starts_with("APP__"))
            .map(|(name, value)| match lists.contains(name) {
                true => (name.clone(), split_list(value).join(",")),
                false => (name.clone(), value.clone()),
            })
            .collect();
        let mut builder = config::Config::builder()
            .add_source(file_source)
            .add_source(environment.source(Some(application.into_iter().collect())));
        for (key, variable) in CONVENTIONAL {
            let value = env.get(variable).filter(|value| !value.is_empty());
            let value = match LISTS.contains(&key) {
                true => value.map(|urls| config::Value::from(split_list(urls))),
                false => value.map(|url| config::Value::from(url.as_str())),
            };
            builder = builder.set_override_option(key, value).map_err(describe)?;
        }
        let mut settings: Settings = builder
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(describe)?;
        sections::validate(&settings)?;
        settings.warnings = warnings;
        Ok(settings)
    }

    /// The database URL, or the error that names the missing setting.
    pub fn database_url(&self) -> Result<&str, ConfigError> {
        self.database
            .url
            .as_ref()
            .map(|url| url.expose_secret())
            .ok_or_else(|| ConfigError::about("database.url", "is required"))
    }
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The most a secret's file may hold: a URL or a key, never a stream (`/dev/zero`) or a file
/// named by mistake, read whole into memory.
const SECRET_FILE_LIMIT: u64 = 64 * 1024;

/// The environment with each `<SECRET>_FILE` read into `<SECRET>` (its content without the
/// white space around it); never both. An empty or oversized file is refused; one that others
/// may read is warned of.
fn with_secret_files(
    mut env: HashMap<String, String>,
    warnings: &mut Vec<String>,
) -> Result<HashMap<String, String>, ConfigError> {
    for key in SECRETS {
        let variable = env_name(key);
        let file_variable = format!("{variable}_FILE");
        let Some(path) = env.remove(&file_variable).filter(|path| !path.is_empty()) else {
            continue;
        };
        if env.get(&variable).is_some_and(|value| !value.is_empty()) {
            return Err(ConfigError(format!(
                "{variable} and {file_variable} are both set: keep one"
            )));
        }
        let content = read_secret_file(&path, &file_variable, warnings)?;
        env.insert(variable, content);
    }
    Ok(env)
}

fn read_secret_file(
    path: &str,
    file_variable: &str,
    warnings: &mut Vec<String>,
) -> Result<String, ConfigError> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let cannot = |why: String| ConfigError(format!("{file_variable}: cannot read {path}: {why}"));
    let file = std::fs::File::open(path).map_err(|error| cannot(error.to_string()))?;
    let mut bytes = Vec::new();
    file.take(SECRET_FILE_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| cannot(error.to_string()))?;
    if bytes.len() as u64 > SECRET_FILE_LIMIT {
        return Err(cannot(format!(
            "it holds more than {} KiB, more than any secret",
            SECRET_FILE_LIMIT / 1024
        )));
    }
    let content = String::from_utf8(bytes).map_err(|_| cannot("it is not UTF-8 text".into()))?;
    let content = content.trim();
    if content.is_empty() {
        return Err(cannot("it is empty".into()));
    }
    let mode = std::fs::metadata(path).map_or(0, |metadata| metadata.permissions().mode());
    if mode & 0o077 != 0 {
        warnings.push(format!(
            "{file_variable}: {path} may be read by others (mode {:o}): chmod 600 it, or 640 for a group that must",
            mode & 0o777
        ));
    }
    Ok(content.to_string())
}

/// The `config` crate's error in operators' words: the setting by its variable, and what was
/// wrong with the value.
fn describe(error: config::ConfigError) -> ConfigError {
    use config::ConfigError as Error;
    match error {
        Error::Type {
            unexpected,
            expected,
            key: Some(key),
            ..
        } => ConfigError::about(
            &setting(&key),
            &format!("must be {expected}, not {unexpected}"),
        ),
        Error::At {
            error,
            key: Some(key),
            ..
        } => match *error {
            // An unknown field inside a section: the message names it, the key the section.
            Error::Message(message) if message.starts_with("unknown field") => {
                unknown(&key, &message)
            }
            Error::Message(message) => {
                ConfigError(format!("{}: {message}", env_name(&setting(&key))))
            }
            other => describe(other),
        },
        Error::Message(message) if message.starts_with("unknown field") => unknown("", &message),
        other => ConfigError(other.to_string()),
    }
}

/// `server.port`, from the `config` crate's key (which may carry a list index).
fn setting(key: &str) -> String {
    key.split('[').next().unwrap_or(key).to_string()
}

/// A variable (or file key) that is no setting at all: named, with the section's settings.
fn unknown(section: &str, message: &str) -> ConfigError {
    let field = message.split('`').nth(1).unwrap_or("?");
    let key = match section {
        "" => field.to_string(),
        section => format!("{section}.{field}"),
    };
    ConfigError(format!(
        "{} is not a setting (.env.example lists them all)",
        env_name(&key)
    ))
}

/// How secrets serialize: whether they are set, never what they are.
mod secret {
    use secrecy::SecretString;
    use serde::Serializer;

    pub fn serialize<S: Serializer>(
        secret: &Option<SecretString>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match secret {
            None => serializer.serialize_none(),
            Some(_) => serializer.serialize_str("(set)"),
        }
    }

    pub fn serialize_all<S: Serializer>(
        secrets: &[SecretString],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(secrets.iter().map(|_| "(set)"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The tests' settings file: empty, so an operator's `config/agent-api.toml` in the
    /// checkout changes nothing here.
    fn no_file() -> Option<&'static Path> {
        Some(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/no-settings.toml"
        )))
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut all = vec![("APP__AUTH__JWT_SECRET".to_string(), "x".repeat(32))];
        all.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        all
    }

    fn error(pairs: &[(&str, &str)]) -> String {
        Settings::load_from(no_file(), env(pairs))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_match_the_spec() {
        let settings = Settings::load_from(no_file(), env(&[])).unwrap();
        assert_eq!(settings.server.host, "0.0.0.0");
        assert_eq!(settings.server.port, 8080);
        assert_eq!(settings.legacy.callerline, LegacyMode::Auto);
        assert_eq!(
            settings.legacy.sunset_at.to_rfc3339(),
            "2023-02-01T00:00:00+08:00"
        );
        assert!(settings.rate_limit.enabled);
        assert!(settings.listing_cache.enabled);
        assert_eq!(settings.api.default_per_page, 15);
        assert_eq!(settings.api.max_per_page, 100);
        assert!(settings.database.url.is_none());
    }

    #[test]
    fn environment_overrides_defaults() {
        let settings = Settings::load_from(
            no_file(),
            env(&[
                ("APP__SERVER__PORT", "9090"),
                ("APP__LEGACY__CALLERLINE", "on"),
                ("APP__RATE_LIMIT__ENABLED", "false"),
                (
                    "APP__RATE_LIMIT__TRUSTED_PROXIES",
                    "10.0.0.0/8, 192.0.2.1/32",
                ),
                ("DATABASE_URL", "postgres://localhost/x"),
                ("DATABASE_REPLICA_URLS", "postgres://a/x, postgres://b/x"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.server.port, 9090);
        assert_eq!(settings.legacy.callerline, LegacyMode::On);
        assert!(!settings.rate_limit.enabled);
        assert_eq!(settings.rate_limit.trusted_proxies.len(), 2);
        assert_eq!(settings.database_url().unwrap(), "postgres://localhost/x");
        assert_eq!(settings.database.replica_urls.len(), 2);
    }

    #[test]
    fn bad_settings_are_named_by_their_variable_in_one_line() {
        let cases = [
            (
                vec![("APP__SERVER__PORT", "eighty")],
                "APP__SERVER__PORT must be",
            ),
            (
                vec![("APP__LEGACY__CALLERLINE", "maybe")],
                r#"APP__LEGACY__CALLERLINE: "maybe" is not one of auto, on, off"#,
            ),
            (
                vec![("APP__LEGACY__SUNSET_AT", "tomorrow")],
                "APP__LEGACY__SUNSET_AT",
            ),
            (
                vec![("APP__AUTH__JWT_SECRET", "short")],
                "APP__AUTH__JWT_SECRET",
            ),
            (
                vec![("APP__API__DISPLAY_TIMEZONE", "Mars/Olympus")],
                "APP__API__DISPLAY_TIMEZONE",
            ),
            (
                vec![("APP__TLS__CERT_PATH", "/tmp/cert.pem")],
                "APP__TLS__KEY_PATH",
            ),
            (
                vec![("APP__LISTING_CACHE__MAX_BYTES", "1000")],
                "APP__LISTING_CACHE__MAX_BYTES",
            ),
            (
                vec![("APP__SERVER__PROT", "8080")],
                "APP__SERVER__PROT is not a setting",
            ),
            (
                vec![("APP__SEVRER__PORT", "8080")],
                "APP__SEVRER is not a setting",
            ),
            (
                vec![("APP__RATE_LIMIT__REDIS_URL", "redis://127.0.0.1:6379")],
                "APP__RATE_LIMIT__INSTANCES is required",
            ),
        ];
        for (pairs, named) in cases {
            let error = error(&pairs);
            assert!(
                error.contains(named),
                "{pairs:?}: {error:?} should say {named:?}"
            );
            assert!(!error.contains('\n'), "{error:?}");
            assert!(!error.contains("Settings"), "no Rust type in {error:?}");
        }
    }

    #[test]
    fn the_published_example_secret_is_refused() {
        let error = error(&[("APP__AUTH__JWT_SECRET", PUBLISHED_SECRETS[0])]);
        assert!(error.contains("APP__AUTH__JWT_SECRET"), "{error}");
    }

    #[test]
    fn secrets_may_come_from_files_never_both_ways() {
        let dir = std::env::temp_dir().join(format!("agent-api-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret_file = dir.join("jwt");
        std::fs::write(&secret_file, format!("{}\n", "s".repeat(40))).unwrap();
        let url_file = dir.join("url");
        std::fs::write(&url_file, "postgres://from-a-file/x\n").unwrap();
        let path = |file: &Path| file.to_str().unwrap().to_string();
        let loaded = Settings::load_from(
            no_file(),
            [
                ("APP__AUTH__JWT_SECRET_FILE".into(), path(&secret_file)),
                ("DATABASE_URL_FILE".into(), path(&url_file)),
            ],
        )
        .unwrap();
        assert_eq!(
            loaded.auth.jwt_secret.as_ref().unwrap().expose_secret(),
            "s".repeat(40)
        );
        assert_eq!(loaded.database_url().unwrap(), "postgres://from-a-file/x");
        let both = error(&[("APP__AUTH__JWT_SECRET_FILE", &path(&secret_file))]);
        assert!(both.contains("both set"), "{both}");
        let missing = Settings::load_from(
            no_file(),
            [("DATABASE_URL_FILE".into(), "/nonexistent/url".into())],
        )
        .unwrap_err()
        .to_string();
        assert!(missing.contains("DATABASE_URL_FILE"), "{missing}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A secret's file is a secret, not a stream: bounded, never empty, trimmed, and kept from
    /// others' eyes (said once, not refused).
    #[test]
    fn secret_files_are_bounded_non_empty_trimmed_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("agent-api-bounds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, content: &[u8], mode: u32| {
            let path = dir.join(name);
            std::fs::write(&path, content).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path.to_str().unwrap().to_string()
        };
        let load = |path: &str| {
            Settings::load_from(
                no_file(),
                [("DATABASE_URL_FILE".to_string(), path.to_string())],
            )
        };
        let refused = |path: &str| load(path).unwrap_err().to_string();
        let huge = file("huge", &vec![b'x'; 300 * 1024], 0o600);
        for (path, why) in [
            ("/dev/zero", "more than 64 KiB"),
            (huge.as_str(), "more than 64 KiB"),
            (&file("empty", b"", 0o600), "empty"),
            (&file("blank", b" \n\t\r\n", 0o600), "empty"),
        ] {
            let error = refused(path);
            assert!(
                error.contains("DATABASE_URL_FILE") && error.contains(why),
                "{path}: {error}"
            );
        }
        let spaced = file("spaced", b"  postgres://h/db \r\n", 0o600);
        let loaded = load(&spaced).unwrap();
        assert_eq!(loaded.database_url().unwrap(), "postgres://h/db");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let shared = file("shared", b"postgres://h/db", 0o644);
        let warnings = load(&shared).unwrap().warnings;
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("DATABASE_URL_FILE") && warnings[0].contains("644"));
        assert!(
            !warnings[0].contains("postgres://"),
            "never the secret: {warnings:?}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_empty_variable_is_unset() {
        let settings = Settings::load_from(
            no_file(),
            env(&[
                ("APP__RATE_LIMIT__TRUSTED_PROXIES", ""),
                ("DATABASE_URL", ""),
            ]),
        )
        .unwrap();
        assert!(settings.rate_limit.trusted_proxies.is_empty());
        assert!(settings.database.url.is_none());
    }

    #[test]
    fn settings_load_without_a_secret_for_the_commands_that_sign_nothing() {
        let settings = Settings::load_from(no_file(), Vec::new()).unwrap();
        assert!(settings.auth.jwt_secret.is_none());
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let settings = Settings::load_from(
            no_file(),
            env(&[("DATABASE_URL", "postgres://user:hunter2@db/x")]),
        )
        .unwrap();
        let printed = format!("{settings:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains(&"x".repeat(32)), "{printed}");
    }

    /// Every setting's variable and its default as `.env.example` writes it (`None`: unset).
    fn every_setting() -> BTreeMap<String, Option<String>> {
        fn walk(value: &serde_json::Value, key: &str, out: &mut BTreeMap<String, Option<String>>) {
            use serde_json::Value;
            let text = match value {
                Value::Object(fields) => {
                    for (field, value) in fields {
                        let key = match key {
                            "" => field.clone(),
                            key => format!("{key}.{field}"),
                        };
                        walk(value, &key, out);
                    }
                    return;
                }
                Value::Null => None,
                Value::Array(items) if items.is_empty() => None,
                Value::Array(items) => Some(
                    items
                        .iter()
                        .map(|item| item.as_str().map_or(item.to_string(), str::to_owned))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                Value::String(text) => Some(text.clone()),
                other => Some(other.to_string()),
            };
            out.insert(env_name(key), text);
        }
        let mut out = BTreeMap::new();
        walk(
            &serde_json::to_value(Settings::default()).unwrap(),
            "",
            &mut out,
        );
        out
    }

    /// `.env.example`'s variables (commented out or not) and their values.
    fn env_example() -> Vec<(String, String, bool)> {
        include_str!("../../.env.example")
            .lines()
            .filter_map(|line| {
                let (commented, line) = match line.strip_prefix("# ") {
                    Some(rest) => (true, rest),
                    None => (false, line),
                };
                let (name, value) = line.split_once('=')?;
                let is_name = name.chars().all(|c| c.is_ascii_uppercase() || c == '_');
                (is_name && !name.is_empty()).then(|| (name.into(), value.into(), commented))
            })
            .collect()
    }

    #[test]
    fn every_setting_is_in_env_example_with_its_default_and_nothing_else_is() {
        let settings = every_setting();
        let example = env_example();
        for (name, default) in &settings {
            let line = example.iter().find(|(listed, ..)| listed == name);
            let Some((_, value, commented)) = line else {
                panic!(".env.example lacks {name}");
            };
            if let Some(default) = default {
                assert!(
                    !commented,
                    ".env.example comments out {name}, which has a default"
                );
                assert_eq!(value, default, "{name}'s default in .env.example");
            }
        }
        let secret_files: Vec<String> = SECRETS
            .iter()
            .map(|key| format!("{}_FILE", env_name(key)))
            .collect();
        for (name, ..) in &example {
            let scripts = name.starts_with("AGENT_API_");
            // OpenTelemetry's own variables, read by its SDK (`traces`).
            let opentelemetry = name.starts_with("OTEL_");
            assert!(
                settings.contains_key(name)
                    || secret_files.contains(name)
                    || scripts
                    || opentelemetry,
                ".env.example lists {name}, which is no setting"
            );
        }
    }

    #[test]
    fn env_example_loads_with_only_the_secret_changed() {
        let mut env: Vec<(String, String)> = env_example()
            .into_iter()
            .filter(|(.., commented)| !commented)
            .map(|(name, value, _)| (name, value))
            .collect();
        env.push((
            "APP__AUTH__JWT_SECRET".into(),
            "a fresh secret of 32 bytes or more!".into(),
        ));
        let settings = Settings::load_from(no_file(), env).unwrap();
        assert!(settings.database_url().is_ok());
    }

    /// Copied as its header says, the example serves: no key file it names must exist.
    #[test]
    fn the_example_settings_file_is_usable_as_it_stands() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/agent-api.example.toml");
        let settings = Settings::load_from(Some(&example), env(&[])).unwrap();
        crate::tokens::KeyRing::from_settings(&settings.auth).unwrap();
    }
}

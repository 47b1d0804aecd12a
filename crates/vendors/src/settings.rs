//! Strict reading of one `[providers.<provider>.<account>]` table's
//! vendor-specific keys: every key is either read by the vendor's adapter or
//! refused, so a typo stops the process instead of being ignored.

use herald_core::ConfigError;
use herald_core::config::{Secret, read_secret};

/// Keys every account may carry that another part of Herald reads (the
/// webhook endpoint checks vendor callbacks with this secret).
const SHARED_KEYS: &[&str] = &["webhook_secret_env", "webhook_secret_file"];

/// One account's vendor keys, tracking which were read.
pub(crate) struct Settings<'a> {
    table: &'a toml::Table,
    prefix: String,
    read: Vec<String>,
    secrets: Vec<Secret>,
}

impl<'a> Settings<'a> {
    pub(crate) fn new(provider: &str, account: &str, table: &'a toml::Table) -> Settings<'a> {
        Settings {
            table,
            prefix: format!("providers.{provider}.{account}"),
            read: Vec::new(),
            secrets: Vec::new(),
        }
    }

    /// The full name of `key`, as errors show it.
    fn name(&self, key: &str) -> String {
        format!("{}.{key}", self.prefix)
    }

    /// An optional non-empty string.
    pub(crate) fn optional(&mut self, key: &str) -> Result<Option<String>, ConfigError> {
        self.read.push(key.to_owned());
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
            Some(toml::Value::String(_)) => {
                Err(ConfigError::new(self.name(key), "must not be empty"))
            }
            Some(_) => Err(ConfigError::new(self.name(key), "must be a string")),
        }
    }

    /// A required non-empty string.
    pub(crate) fn required(&mut self, key: &str) -> Result<String, ConfigError> {
        self.optional(key)?
            .ok_or_else(|| ConfigError::new(self.name(key), "is required"))
    }

    /// A required string that passes `valid`, described by `expected` when it does not.
    pub(crate) fn required_checked(
        &mut self,
        key: &str,
        valid: fn(&str) -> bool,
        expected: &str,
    ) -> Result<String, ConfigError> {
        let value = self.required(key)?;
        if valid(&value) {
            Ok(value)
        } else {
            Err(self.invalid(key, format!("{value:?} must be {expected}")))
        }
    }

    /// An error about `key`, named in full.
    pub(crate) fn invalid(&self, key: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError::new(self.name(key), problem)
    }

    /// The secret `name`, read from `<name>_env` or `<name>_file`.
    pub(crate) fn secret(&mut self, name: &str) -> Result<Secret, ConfigError> {
        self.read.push(format!("{name}_env"));
        self.read.push(format!("{name}_file"));
        let secret = read_secret(self.table, name, &self.prefix)?;
        self.secrets.push(secret.clone());
        Ok(secret)
    }

    /// The secret `name` when the account names one (`<name>_env` or
    /// `<name>_file`); a named secret that cannot be read is an error.
    pub(crate) fn optional_secret(&mut self, name: &str) -> Result<Option<Secret>, ConfigError> {
        let named = [format!("{name}_env"), format!("{name}_file")]
            .iter()
            .any(|key| self.table.contains_key(key));
        if named {
            self.secret(name).map(Some)
        } else {
            self.read.push(format!("{name}_env"));
            self.read.push(format!("{name}_file"));
            Ok(None)
        }
    }

    /// Refuses any key nobody read; returns the secrets that were read.
    pub(crate) fn finish(self) -> Result<Vec<Secret>, ConfigError> {
        let known = |key: &str| SHARED_KEYS.contains(&key) || self.read.iter().any(|r| r == key);
        match self.table.keys().find(|key| !known(key)) {
            Some(key) => {
                let mut expected: Vec<&str> = self.read.iter().map(String::as_str).collect();
                expected.extend(SHARED_KEYS);
                Err(ConfigError::new(
                    self.name(key),
                    format!(
                        "unknown key for this provider (known: {})",
                        expected.join(", ")
                    ),
                ))
            }
            None => Ok(self.secrets),
        }
    }
}

/// A value safe to put in a URL path as one segment.
pub(crate) fn is_path_segment(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'))
}

/// An international number: 8–15 digits, no `+`.
pub(crate) fn is_international_digits(value: &str) -> bool {
    (8..=15).contains(&value.len()) && value.chars().all(|c| c.is_ascii_digit())
}

/// An E.164 number: `+` then 8–15 digits.
pub(crate) fn is_e164(value: &str) -> bool {
    value.strip_prefix('+').is_some_and(is_international_digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn unknown_keys_are_refused_by_full_name() {
        let t = table("sid = \"HX1\"\nsdi = \"typo\"\nwebhook_secret_env = \"W\"");
        let mut s = Settings::new("kaleyra", "default", &t);
        s.required("sid").unwrap();
        let err = s.finish().unwrap_err();
        assert_eq!(err.key, "providers.kaleyra.default.sdi");
        assert!(err.problem.contains("sid"), "{}", err.problem);
    }

    #[test]
    fn missing_and_malformed_values_name_their_key() {
        let t = table("from = 12\nsid = \"\"");
        let mut s = Settings::new("kaleyra", "eu", &t);
        assert_eq!(
            s.required("business").unwrap_err().key,
            "providers.kaleyra.eu.business"
        );
        assert_eq!(s.required("from").unwrap_err().problem, "must be a string");
        assert_eq!(s.required("sid").unwrap_err().problem, "must not be empty");
        let err = s.secret("api_key").unwrap_err();
        assert_eq!(err.key, "providers.kaleyra.eu.api_key_env");
    }

    #[test]
    fn checked_values_say_what_was_expected() {
        let t = table("from = \"0712\"");
        let mut s = Settings::new("99digital", "default", &t);
        let err = s
            .required_checked("from", is_international_digits, "international digits")
            .unwrap_err();
        assert_eq!(err.problem, "\"0712\" must be international digits");
    }

    #[test]
    fn number_and_segment_shapes() {
        assert!(is_e164("+12025550123") && !is_e164("12025550123") && !is_e164("+12"));
        assert!(
            is_international_digits("972771234567") && !is_international_digits("+972771234567")
        );
        assert!(
            is_path_segment("HXAP1XXXXXX17XX") && !is_path_segment("a/b") && !is_path_segment("")
        );
    }
}

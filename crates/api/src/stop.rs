//! Stop keywords (CONTRACT §11): an account may list words (`stop_keywords
//! = ["STOP", "UNSUBSCRIBE"]`) that, sent alone by a customer, suppress
//! that customer on the account. Compared trimmed and case-insensitively,
//! against the whole text: "stop" suppresses, "don't stop" does not.

use std::collections::BTreeMap;

use herald_core::{Config, ConfigError};

/// Each account's stop keywords, lower-cased; accounts without are absent.
#[derive(Debug, Default)]
pub struct StopKeywords(BTreeMap<(String, String), Vec<String>>);

impl StopKeywords {
    /// Reads every account's `stop_keywords`; one that is not a list of
    /// non-empty strings stops the start, naming the key.
    pub fn from_config(config: &Config) -> Result<StopKeywords, ConfigError> {
        let mut keywords = BTreeMap::new();
        for (provider, accounts) in &config.providers {
            for (account, settings) in accounts {
                let Some(value) = settings.settings.get("stop_keywords") else {
                    continue;
                };
                let key = format!("providers.{provider}.{account}.stop_keywords");
                let words = value
                    .as_array()
                    .and_then(|words| {
                        words
                            .iter()
                            .map(|w| w.as_str().map(str::trim).filter(|w| !w.is_empty()))
                            .map(|w| w.map(str::to_lowercase))
                            .collect::<Option<Vec<_>>>()
                    })
                    .ok_or_else(|| {
                        ConfigError::new(
                            key,
                            "must be a list of non-empty strings, e.g. [\"STOP\"]",
                        )
                    })?;
                keywords.insert((provider.clone(), account.clone()), words);
            }
        }
        Ok(StopKeywords(keywords))
    }

    /// Whether `text`, from a customer of the account, asks to stop.
    pub fn says_stop(&self, provider: &str, account: &str, text: Option<&str>) -> bool {
        let (Some(words), Some(text)) =
            (self.0.get(&(provider.to_owned(), account.to_owned())), text)
        else {
            return false;
        };
        let text = text.trim().to_lowercase();
        words.contains(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Result<StopKeywords, ConfigError> {
        let toml = format!(
            "[providers.kaleyra.default]\nbase_url = \"https://api.kaleyra.io\"\n{extra}\n\
             [providers.kaleyra.quiet]\nbase_url = \"https://api.kaleyra.io\"\n"
        );
        StopKeywords::from_config(&Config::from_toml_with_env(&toml, &[]).unwrap())
    }

    #[test]
    fn only_the_whole_text_of_a_keyword_stops_and_only_on_its_account() {
        let stop = config("stop_keywords = [\"STOP\", \"Unsubscribe\"]").unwrap();
        for text in ["STOP", " stop\n", "unsubscribe"] {
            assert!(stop.says_stop("kaleyra", "default", Some(text)), "{text:?}");
        }
        for text in ["don't stop", "stopping", ""] {
            assert!(
                !stop.says_stop("kaleyra", "default", Some(text)),
                "{text:?}"
            );
        }
        assert!(
            !stop.says_stop("kaleyra", "default", None),
            "not a text message"
        );
        assert!(
            !stop.says_stop("kaleyra", "quiet", Some("STOP")),
            "default none"
        );
    }

    #[test]
    fn stop_keywords_that_are_not_a_list_of_words_are_named() {
        for bad in [
            "stop_keywords = \"STOP\"",
            "stop_keywords = [\"\"]",
            "stop_keywords = [1]",
        ] {
            let error = config(bad).unwrap_err();
            assert_eq!(
                error.key, "providers.kaleyra.default.stop_keywords",
                "{bad}"
            );
        }
    }
}

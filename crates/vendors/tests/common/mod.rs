//! Builds [`Vendors`] from configuration text the way the worker does, with
//! secrets in files of a temporary directory (the environment is shared by
//! every test thread, files are not).

use std::path::PathBuf;

use herald_core::{Config, ConfigErrors};
use herald_vendors::Vendors;

pub struct Secrets {
    dir: tempfile::TempDir,
}

impl Secrets {
    pub fn new() -> Secrets {
        Secrets {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Writes `value` to a file and returns its path, for `*_file` keys.
    pub fn file(&self, name: &str, value: &str) -> String {
        let path: PathBuf = self.dir.path().join(name);
        std::fs::write(&path, format!("{value}\n")).expect("write secret");
        path.display().to_string()
    }
}

/// The configuration's providers, checked by [`Vendors::from_config`].
pub fn vendors(toml: &str) -> Result<Vendors, ConfigErrors> {
    let config = Config::from_toml_with_env(toml, &[]).expect("valid common configuration");
    Vendors::from_config(&config)
}

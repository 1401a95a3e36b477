//! Secrets provisioned from outside (AppRole secret-id and role-id): where to read them
//! ([`SecretSource`]: a file or an environment variable, never the config itself) and the
//! in-memory wrapper ([`SecretString`]: zeroized on drop, redacted in `Debug`).

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::KeyError;

/// A secret string: zeroized on drop, never printed.
#[derive(Clone)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    pub fn new(s: String) -> Self {
        SecretString(Zeroizing::new(s))
    }
    /// The secret itself; only for handing it to the one call that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

/// Where a secret comes from. TOML: `secret_id = { file = "/run/parley/secret-id" }` or
/// `secret_id = { env = "PARLEY_VAULT_SECRET_ID" }`. There is deliberately no way to write
/// the secret into the config: configs are copied, committed and logged.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretSource {
    /// A file readable by the node's user only (mode 0600 or stricter), optionally sealed
    /// to the TEE (see [`crate::sealing`]). Surrounding whitespace is trimmed.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A file sealed to the TEE (`keys.local.seal = "snp"`), as written by
    /// [`crate::sealing::seal_secret_file`] inside the guest.
    SealedFile(PathBuf),
}

impl SecretSource {
    /// Where, for messages (never the value).
    pub fn describe(&self) -> String {
        match self {
            SecretSource::File(p) => format!("file {}", p.display()),
            SecretSource::Env(v) => format!("environment variable {v}"),
            SecretSource::SealedFile(p) => format!("sealed file {}", p.display()),
        }
    }

    /// Read the secret now. Called at every login, so a rotated secret-id file is picked up.
    pub fn read(&self, what: &'static str) -> Result<SecretString, KeyError> {
        self.read_with(what, &crate::sealing::PlainFile)
    }

    /// Read the secret, unsealing a `SealedFile` with `protector`.
    pub fn read_with(
        &self,
        what: &'static str,
        protector: &dyn crate::sealing::FileProtector,
    ) -> Result<SecretString, KeyError> {
        let err = |reason: String| KeyError::Secret {
            what,
            source_desc: self.describe(),
            reason,
        };
        let raw = match self {
            SecretSource::File(path) => {
                let bytes = crate::local::read_secret_file(path).map_err(|e| err(e.to_string()))?;
                let text = std::str::from_utf8(&bytes).map_err(|_| err("not UTF-8".into()))?;
                Zeroizing::new(text.to_owned())
            }
            SecretSource::SealedFile(path) => {
                let stored =
                    crate::local::read_secret_file(path).map_err(|e| err(e.to_string()))?;
                let bytes = protector
                    .unprotect(path, &stored)
                    .map_err(|e| err(e.to_string()))?;
                let text = std::str::from_utf8(&bytes).map_err(|_| err("not UTF-8".into()))?;
                Zeroizing::new(text.to_owned())
            }
            SecretSource::Env(var) => Zeroizing::new(
                std::env::var(var)
                    .map_err(|_| err("the variable is not set or not UTF-8".into()))?,
            ),
        };
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(err("it is empty".into()));
        }
        Ok(SecretString::new(trimmed.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn sources_and_redaction() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sid");
        std::fs::write(&p, "s3cret-value\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = SecretSource::File(p.clone()).read("secret-id").unwrap();
        assert_eq!(s.expose(), "s3cret-value");
        assert!(!format!("{s:?}").contains("s3cret"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = SecretSource::File(p).read("secret-id").unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        let e = SecretSource::Env("PARLEY_TEST_SURELY_UNSET_VAR".into())
            .read("secret-id")
            .unwrap_err();
        assert!(e.to_string().contains("PARLEY_TEST_SURELY_UNSET_VAR"));
    }
}

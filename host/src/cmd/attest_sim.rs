//! `parley attest` for simulated evidence: loading simulation root keys.

use std::path::Path;

use anyhow::Context;
use parley_attestation::hexbytes::Ed25519Key;

/// Simulation roots: every `ed25519:<hex>` line of the files in `path` (or the file).
pub fn roots(path: &Path) -> anyhow::Result<Vec<Ed25519Key>> {
    let files: Vec<std::path::PathBuf> = if path.is_dir() {
        let mut v: Vec<_> = std::fs::read_dir(path)
            .with_context(|| format!("cannot list {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        v.sort();
        v
    } else {
        vec![path.to_owned()]
    };
    let mut keys = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.starts_with("ed25519:") {
                keys.push(
                    line.parse()
                        .map_err(|e| anyhow::anyhow!("{}, line {}: {e}", f.display(), i + 1))?,
                );
            }
        }
    }
    if keys.is_empty() {
        anyhow::bail!(
            "no simulation root key (a line \"ed25519:<64 hex>\") in {}",
            path.display()
        );
    }
    Ok(keys)
}

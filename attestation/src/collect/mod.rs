//! Collecting evidence inside a confidential VM: the Linux configfs-tsm report interface.
//!
//! This is the one part of the crate that touches the OS. The kernel's TSM interface
//! (`Documentation/ABI/testing/configfs-tsm-report`) is the same for every TEE: create a
//! directory under `<configfs>/tsm/report/`, optionally write `privlevel`, write 64 bytes
//! of report data to `inblob`, read the evidence from `outblob` and any auxiliary data
//! (SNP: the certificate table) from `auxblob`. `provider` names the TEE driver
//! (`sev_guest`, `tdx_guest`) and `generation` counts writes, so a reader detects another
//! process writing the same entry between its write and its read.
//!
//! The root is a parameter so tests run against a fake directory tree; production passes
//! [`DEFAULT_TSM_REPORT_ROOT`]. TEE-specific fallbacks (SNP's `/dev/sev-guest`) live with
//! their evidence type (`crate::snp::collect`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where configfs-tsm report entries live on Linux.
pub const DEFAULT_TSM_REPORT_ROOT: &str = "/sys/kernel/config/tsm/report";

/// Why evidence could not be collected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectError {
    #[error(
        "configfs-tsm is not available at {root}: {detail} (is configfs mounted and the TEE guest driver loaded?)"
    )]
    Unavailable { root: PathBuf, detail: String },
    #[error(
        "the configfs-tsm provider is {found:?}, expected {expected:?}: this VM runs another TEE"
    )]
    WrongProvider { expected: String, found: String },
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} holds {found:?}, not a generation counter: the configfs-tsm entry is not what the kernel creates"
    )]
    BadGeneration { path: PathBuf, found: String },
    #[error(
        "the configfs-tsm entry changed while it was read (generation {before} then {after}): another process wrote to it; retry"
    )]
    GenerationChanged { before: u64, after: u64 },
    #[error("the TEE returned no evidence ({path} is empty)")]
    EmptyOutblob { path: PathBuf },
    #[error("the SEV guest device failed: {detail}")]
    Device { detail: String },
    #[error("the evidence the TEE returned does not parse: {detail}")]
    BadEvidence { detail: String },
}

/// What to ask the TEE for.
#[derive(Debug, Clone, Copy)]
pub struct TsmRequest<'a> {
    /// The TEE provider expected in `provider` (`sev_guest`, `tdx_guest`).
    pub provider: &'a str,
    /// The 64 bytes bound into the evidence (SNP REPORT_DATA, TDX REPORTDATA).
    pub inblob: &'a [u8; 64],
    /// The privilege level to report at (SNP: VMPL), when not the default.
    pub privlevel: Option<u32>,
}

/// Evidence read from a configfs-tsm entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsmReport {
    pub provider: String,
    /// The evidence (SNP report, TDX quote).
    pub outblob: Vec<u8>,
    /// Auxiliary data (SNP: the certificate table), when the provider has any.
    pub auxblob: Option<Vec<u8>>,
    /// The generation the evidence was read at.
    pub generation: u64,
}

/// Removes the entry directory when dropped; configfs turns `rmdir` into releasing it.
struct Entry {
    path: PathBuf,
}

impl Drop for Entry {
    fn drop(&mut self) {
        // Best effort: a failure leaves an empty entry behind, which holds no secret.
        let _ = fs::remove_dir(&self.path);
    }
}

fn io_err<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> CollectError + 'p {
    move |source| CollectError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// A fresh entry name: unique within this process, and across processes by the pid.
fn entry_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "parley-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Collect evidence through configfs-tsm under `root` (normally
/// [`DEFAULT_TSM_REPORT_ROOT`]).
pub fn collect(root: &Path, req: &TsmRequest<'_>) -> Result<TsmReport, CollectError> {
    if !root.is_dir() {
        return Err(CollectError::Unavailable {
            root: root.to_owned(),
            detail: "no such directory".into(),
        });
    }
    let entry = Entry {
        path: root.join(entry_name()),
    };
    fs::create_dir(&entry.path).map_err(|e| CollectError::Unavailable {
        root: root.to_owned(),
        detail: format!("cannot create a report entry: {e}"),
    })?;
    collect_in(&entry.path, req)
}

/// The protocol on an existing entry directory (created by the kernel on `mkdir`).
pub fn collect_in(dir: &Path, req: &TsmRequest<'_>) -> Result<TsmReport, CollectError> {
    let provider_path = dir.join("provider");
    let provider = fs::read_to_string(&provider_path)
        .map_err(io_err("read", &provider_path))?
        .trim()
        .to_owned();
    if provider != req.provider {
        return Err(CollectError::WrongProvider {
            expected: req.provider.to_owned(),
            found: provider,
        });
    }
    if let Some(level) = req.privlevel {
        let p = dir.join("privlevel");
        fs::write(&p, level.to_string()).map_err(io_err("write", &p))?;
    }
    let inblob = dir.join("inblob");
    fs::write(&inblob, req.inblob).map_err(io_err("write", &inblob))?;
    let before = generation(dir)?;
    let outblob_path = dir.join("outblob");
    let outblob = fs::read(&outblob_path).map_err(io_err("read", &outblob_path))?;
    if outblob.is_empty() {
        return Err(CollectError::EmptyOutblob { path: outblob_path });
    }
    // auxblob exists only for providers that have auxiliary data.
    let aux_path = dir.join("auxblob");
    let auxblob = match fs::read(&aux_path) {
        Ok(b) if b.is_empty() => None,
        Ok(b) => Some(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err("read", &aux_path)(e)),
    };
    let after = generation(dir)?;
    if before != after {
        return Err(CollectError::GenerationChanged { before, after });
    }
    Ok(TsmReport {
        provider,
        outblob,
        auxblob,
        generation: after,
    })
}

fn generation(dir: &Path) -> Result<u64, CollectError> {
    let p = dir.join("generation");
    let s = fs::read_to_string(&p).map_err(io_err("read", &p))?;
    s.trim()
        .parse()
        .map_err(|_| CollectError::BadGeneration { path: p, found: s })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly
mod tests {
    use super::*;

    /// A fake entry as the kernel presents it after `mkdir` and a report request.
    fn fake_entry(dir: &Path, provider: &str, out: &[u8], aux: Option<&[u8]>, generation: &str) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("provider"), format!("{provider}\n")).unwrap();
        fs::write(dir.join("outblob"), out).unwrap();
        if let Some(a) = aux {
            fs::write(dir.join("auxblob"), a).unwrap();
        }
        fs::write(dir.join("generation"), generation).unwrap();
    }

    #[test]
    fn reads_outblob_and_auxblob_after_writing_inblob() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("entry");
        fake_entry(&dir, "sev_guest", b"report", Some(b"certs"), "1\n");
        let data = [7u8; 64];
        let req = TsmRequest {
            provider: "sev_guest",
            inblob: &data,
            privlevel: Some(2),
        };
        let r = collect_in(&dir, &req).unwrap();
        assert_eq!(r.outblob, b"report");
        assert_eq!(r.auxblob.as_deref(), Some(&b"certs"[..]));
        assert_eq!(r.generation, 1);
        assert_eq!(fs::read(dir.join("inblob")).unwrap(), data);
        assert_eq!(fs::read_to_string(dir.join("privlevel")).unwrap(), "2");
    }

    #[test]
    fn refuses_other_providers_and_bad_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let data = [0u8; 64];
        let req = TsmRequest {
            provider: "sev_guest",
            inblob: &data,
            privlevel: None,
        };
        let dir = tmp.path().join("tdx");
        fake_entry(&dir, "tdx_guest", b"quote", None, "1");
        assert!(matches!(
            collect_in(&dir, &req),
            Err(CollectError::WrongProvider { .. })
        ));
        let dir = tmp.path().join("empty");
        fake_entry(&dir, "sev_guest", b"", None, "1");
        assert!(matches!(
            collect_in(&dir, &req),
            Err(CollectError::EmptyOutblob { .. })
        ));
        let dir = tmp.path().join("gen");
        fake_entry(&dir, "sev_guest", b"r", None, "x");
        assert!(matches!(
            collect_in(&dir, &req),
            Err(CollectError::BadGeneration { .. })
        ));
        // No auxblob: fine (TDX has none).
        let dir = tmp.path().join("noaux");
        fake_entry(&dir, "sev_guest", b"r", None, "3");
        assert_eq!(collect_in(&dir, &req).unwrap().auxblob, None);
        // A root that is not there.
        assert!(matches!(
            collect(&tmp.path().join("missing"), &req),
            Err(CollectError::Unavailable { .. })
        ));
    }

    #[test]
    fn collect_creates_and_removes_its_entry() {
        // A plain directory stands in for configfs: mkdir succeeds but no attribute files
        // appear, so the request fails cleanly and the entry is removed again.
        let tmp = tempfile::tempdir().unwrap();
        let data = [0u8; 64];
        let req = TsmRequest {
            provider: "sev_guest",
            inblob: &data,
            privlevel: None,
        };
        let e = collect(tmp.path(), &req).unwrap_err();
        assert!(matches!(e, CollectError::Io { op: "read", .. }), "{e}");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }
}

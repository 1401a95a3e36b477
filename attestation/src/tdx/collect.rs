//! Collecting a TDX quote inside a TD through Linux configfs-tsm.
//!
//! Signature for the generic collector (to be unified with `crate::collect`):
//! [`collect_quote`]`(root, report_data)` with `root` the configfs-tsm report directory
//! (normally [`DEFAULT_TSM_ROOT`]), and [`collect_quote_with`] taking a [`ConfigFs`] so
//! tests can run against a fake tree. The ABI (Linux `Documentation/ABI/testing/configfs-tsm`):
//! create an entry directory under `root`, write the 64 report-data bytes to `inblob`,
//! read `provider` (must be `tdx_guest`), `generation`, `outblob`, `generation` again (a
//! different value means another writer raced us), then remove the entry.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use thiserror::Error;

use super::quote::{Quote, QuoteError};

/// Where configfs-tsm reports live when configfs is mounted at the usual place.
pub const DEFAULT_TSM_ROOT: &str = "/sys/kernel/config/tsm/report";

/// The file operations collection needs; [`RealFs`] is the real one.
pub trait ConfigFs {
    fn create_dir(&self, path: &Path) -> std::io::Result<()>;
    fn write(&self, path: &Path, data: &[u8]) -> std::io::Result<()>;
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>>;
    fn remove_dir(&self, path: &Path) -> std::io::Result<()>;
}

/// `std::fs`.
pub struct RealFs;

impl ConfigFs for RealFs {
    fn create_dir(&self, path: &Path) -> std::io::Result<()> {
        std::fs::create_dir(path)
    }
    fn write(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        std::fs::write(path, data)
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn remove_dir(&self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_dir(path)
    }
}

/// Why no quote could be collected.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CollectError {
    #[error(
        "configfs-tsm is not available at {root}: run inside a TDX guest with a kernel that has CONFIG_TSM_REPORTS and configfs mounted at /sys/kernel/config"
    )]
    NoTsm { root: String },
    #[error("configfs-tsm {op} {path} failed: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the configfs-tsm provider is {found:?}, not \"tdx_guest\": this is not a TDX guest")]
    WrongProvider { found: String },
    #[error(
        "configfs-tsm generation changed from {before} to {after} while reading the quote: another process used the same entry; retry"
    )]
    Race { before: u64, after: u64 },
    #[error("configfs-tsm generation {value:?} is not a number")]
    BadGeneration { value: String },
    #[error("the quote from configfs-tsm does not parse: {0}")]
    NotAQuote(#[from] QuoteError),
    #[error("the quote from configfs-tsm carries other report data than was requested")]
    ReportDataMismatch,
}

/// A quote fresh from the TDX module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectedQuote {
    /// The `outblob` bytes, unmodified.
    pub quote: Vec<u8>,
    pub generation: u64,
}

/// Collect a quote whose report data is `report_data`, from the real configfs.
pub fn collect_quote(root: &Path, report_data: &[u8; 64]) -> Result<CollectedQuote, CollectError> {
    collect_quote_with(&RealFs, root, report_data)
}

static NEXT_ENTRY: AtomicU64 = AtomicU64::new(0);

/// Collect through `fs` (see the module docs for the steps).
pub fn collect_quote_with(
    fs: &impl ConfigFs,
    root: &Path,
    report_data: &[u8; 64],
) -> Result<CollectedQuote, CollectError> {
    let name = format!(
        "parley-{}-{}",
        std::process::id(),
        NEXT_ENTRY.fetch_add(1, Ordering::Relaxed)
    );
    let entry = root.join(name);
    if let Err(source) = fs.create_dir(&entry) {
        return Err(match source.kind() {
            std::io::ErrorKind::NotFound => CollectError::NoTsm {
                root: root.display().to_string(),
            },
            _ => io("mkdir", &entry, source),
        });
    }
    let result = read_entry(fs, &entry, report_data);
    // The entry holds a quote; remove it whatever happened.
    let removed = fs.remove_dir(&entry);
    let collected = result?;
    removed.map_err(|e| io("rmdir", &entry, e))?;
    Ok(collected)
}

fn read_entry(
    fs: &impl ConfigFs,
    entry: &Path,
    report_data: &[u8; 64],
) -> Result<CollectedQuote, CollectError> {
    let path = |f: &str| entry.join(f);
    let provider = fs
        .read(&path("provider"))
        .map_err(|e| io("read", &path("provider"), e))?;
    let provider = String::from_utf8_lossy(&provider).trim().to_owned();
    if provider != "tdx_guest" {
        return Err(CollectError::WrongProvider { found: provider });
    }
    fs.write(&path("inblob"), report_data)
        .map_err(|e| io("write", &path("inblob"), e))?;
    let before = generation(fs, &path("generation"))?;
    let quote = fs
        .read(&path("outblob"))
        .map_err(|e| io("read", &path("outblob"), e))?;
    let after = generation(fs, &path("generation"))?;
    if before != after {
        return Err(CollectError::Race { before, after });
    }
    let parsed = Quote::parse(&quote)?;
    if parsed.td_report().report_data != report_data {
        return Err(CollectError::ReportDataMismatch);
    }
    Ok(CollectedQuote {
        quote,
        generation: after,
    })
}

fn generation(fs: &impl ConfigFs, p: &Path) -> Result<u64, CollectError> {
    let raw = fs.read(p).map_err(|e| io("read", p, e))?;
    let value = String::from_utf8_lossy(&raw).trim().to_owned();
    value
        .parse()
        .map_err(|_| CollectError::BadGeneration { value })
}

fn io(op: &'static str, path: &Path, source: std::io::Error) -> CollectError {
    CollectError::Io {
        op,
        path: PathBuf::from(path).display().to_string(),
        source,
    }
}

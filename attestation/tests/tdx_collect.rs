//! Quote collection through configfs-tsm, against a fake tree in a temp dir that behaves
//! like the kernel's: an entry directory gets `provider` and `generation`; writing
//! `inblob` bumps the generation and makes `outblob` a quote carrying that report data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tdx_support;

use std::cell::Cell;
use std::io;
use std::path::Path;

use parley_attestation::tdx::collect::{
    CollectError, ConfigFs, RealFs, collect_quote, collect_quote_with,
};
use parley_attestation::tdx::{Quote, QuoteError};
use tdx_support::*;

struct FakeTsm {
    provider: &'static str,
    /// Quote template whose report data is replaced by what is written to `inblob`.
    template: Vec<u8>,
    /// Bump the generation between the two reads (another writer).
    race: bool,
    /// Return a quote with other report data than was written.
    stale: bool,
    reads_of_generation: Cell<u32>,
}

impl FakeTsm {
    fn new() -> Self {
        FakeTsm {
            provider: "tdx_guest\n",
            template: quote_bytes("v4-phala-dcap-qvl"),
            race: false,
            stale: false,
            reads_of_generation: Cell::new(0),
        }
    }
}

impl ConfigFs for FakeTsm {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)?;
        std::fs::write(path.join("provider"), self.provider)?;
        std::fs::write(path.join("generation"), "0\n")
    }
    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        std::fs::write(path, data)?;
        if path.file_name().unwrap() == "inblob" {
            let dir = path.parent().unwrap();
            let mut q = self.template.clone();
            if !self.stale {
                // v4: report data at 48 + 520.
                q[568..632].copy_from_slice(data);
            }
            std::fs::write(dir.join("outblob"), q)?;
            std::fs::write(dir.join("generation"), "1\n")?;
        }
        Ok(())
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        if path.file_name().unwrap() == "generation" {
            let n = self.reads_of_generation.get() + 1;
            self.reads_of_generation.set(n);
            if self.race && n == 2 {
                return Ok(b"2\n".to_vec());
            }
        }
        std::fs::read(path)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        // configfs removes the attribute files with the directory.
        std::fs::remove_dir_all(path)
    }
}

fn root() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn collects_a_quote_with_the_report_data_and_cleans_up() {
    let root = root();
    let rd = [0x5a; 64];
    let got = collect_quote_with(&FakeTsm::new(), root.path(), &rd).unwrap();
    let q = Quote::parse(&got.quote).unwrap();
    assert_eq!(q.td_report().report_data, &rd);
    assert_eq!(got.generation, 1);
    assert_eq!(
        std::fs::read_dir(root.path()).unwrap().count(),
        0,
        "entry removed"
    );
}

#[test]
fn refuses_another_provider() {
    let root = root();
    let fake = FakeTsm {
        provider: "sev_guest\n",
        ..FakeTsm::new()
    };
    let e = collect_quote_with(&fake, root.path(), &[0; 64]).unwrap_err();
    assert!(
        matches!(&e, CollectError::WrongProvider { found } if found == "sev_guest"),
        "{e}"
    );
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

#[test]
fn detects_a_racing_writer() {
    let fake = FakeTsm {
        race: true,
        ..FakeTsm::new()
    };
    let e = collect_quote_with(&fake, root().path(), &[0; 64]).unwrap_err();
    assert!(
        matches!(
            e,
            CollectError::Race {
                before: 1,
                after: 2
            }
        ),
        "{e}"
    );
}

#[test]
fn refuses_a_stale_quote() {
    let fake = FakeTsm {
        stale: true,
        ..FakeTsm::new()
    };
    let e = collect_quote_with(&fake, root().path(), &[7; 64]).unwrap_err();
    assert!(matches!(e, CollectError::ReportDataMismatch), "{e}");
}

#[test]
fn refuses_bytes_that_are_not_a_quote() {
    let fake = FakeTsm {
        template: vec![0; 700],
        stale: true,
        ..FakeTsm::new()
    };
    let e = collect_quote_with(&fake, root().path(), &[0; 64]).unwrap_err();
    assert!(
        matches!(
            e,
            CollectError::NotAQuote(QuoteError::UnsupportedVersion { version: 0 })
        ),
        "{e}"
    );
}

#[test]
fn without_configfs_tsm_the_error_says_so() {
    let e = collect_quote(Path::new("/nonexistent/tsm/report"), &[0; 64]).unwrap_err();
    assert!(matches!(e, CollectError::NoTsm { .. }), "{e}");
    assert!(e.to_string().contains("TDX guest"), "{e}");
    // The real file system on a plain directory: no provider file appears.
    let root = root();
    let e = collect_quote_with(&RealFs, root.path(), &[0; 64]).unwrap_err();
    assert!(matches!(e, CollectError::Io { op: "read", .. }), "{e}");
}

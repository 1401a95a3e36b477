//! `parley collateral fetch|status`: fill the collateral cache for evidence, and show what
//! expires when.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use parley::collateral::{Fetcher, Sources};
use parley_attestation::collateral::CollateralSet;
use parley_attestation::snp::Product;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Subcommand)]
pub enum CollateralCommand {
    /// Download (and check) the collateral each piece of evidence needs into the cache.
    Fetch {
        /// Evidence files (SNP reports, TDX quotes) to fetch collateral for.
        #[arg(long = "evidence", required = true)]
        evidence: Vec<PathBuf>,
        /// The cache directory.
        #[arg(long)]
        dir: PathBuf,
        /// AMD KDS base URL.
        #[arg(long, default_value = "https://kdsintf.amd.com")]
        kds_url: String,
        /// Intel PCS base URL, or a PCCS (e.g. https://pccs.example:8081).
        #[arg(long, default_value = "https://api.trustedservices.intel.com")]
        pcs_url: String,
        /// Where the Intel SGX Root CA CRL is published.
        #[arg(
            long,
            default_value = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
        )]
        root_crl_url: String,
        /// SNP product line, for version 2 reports (which do not name it).
        #[arg(long)]
        product: Option<String>,
        /// Attempts per request (transient failures are retried with backoff).
        #[arg(long, default_value_t = 3)]
        attempts: u32,
        /// First backoff in milliseconds (doubles each retry).
        #[arg(long, default_value_t = 500)]
        backoff_ms: u64,
        /// Check validity at this time (RFC 3339) instead of now.
        #[arg(long)]
        at: Option<String>,
    },
    /// Show each cached item and when it expires, soonest first.
    Status {
        #[arg(long)]
        dir: PathBuf,
        /// Warn about items expiring within this many days.
        #[arg(long, default_value_t = 7)]
        warn_days: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: CollateralCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CollateralCommand::Fetch {
            evidence,
            dir,
            kds_url,
            pcs_url,
            root_crl_url,
            product,
            attempts,
            backoff_ms,
            at,
        } => {
            let at = match at {
                Some(s) => OffsetDateTime::parse(&s, &Rfc3339)
                    .with_context(|| format!("--at {s:?} is not an RFC 3339 time"))?,
                None => OffsetDateTime::now_utc(),
            };
            let product =
                match product {
                    Some(p) => Some(Product::from_product_name(&p).with_context(|| {
                        format!("--product {p:?}: expected Milan, Genoa or Turin")
                    })?),
                    None => None,
                };
            let fetcher = Fetcher::new(
                Sources {
                    kds: kds_url,
                    pcs: pcs_url,
                    root_crl: root_crl_url,
                },
                attempts,
                Duration::from_millis(backoff_ms),
                at,
            )?;
            for file in &evidence {
                let bytes = std::fs::read(file)
                    .with_context(|| format!("cannot read evidence file {}", file.display()))?;
                let report = fetcher
                    .fetch_for(&bytes, product, &dir)
                    .await
                    .with_context(|| format!("collateral for {}", file.display()))?;
                for s in &report.stored {
                    println!("stored {} ({}) from {}", s.file, &s.sha256[..16], s.url);
                }
                for n in &report.notes {
                    eprintln!("note: {n}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CollateralCommand::Status {
            dir,
            warn_days,
            json,
        } => {
            let items = CollateralSet::expiries(&dir)
                .with_context(|| format!("cannot read the collateral cache {}", dir.display()))?;
            let now = OffsetDateTime::now_utc();
            if json {
                println!("{}", serde_json::to_string_pretty(&items)?);
            } else if items.is_empty() {
                println!("{}: empty; run `parley collateral fetch`", dir.display());
            }
            let mut expired = 0;
            for i in &items {
                let left = i.not_after - now;
                let state = if left.is_negative() {
                    expired += 1;
                    "EXPIRED".to_owned()
                } else if left.whole_days() < warn_days {
                    format!("expires in {} h", left.whole_hours())
                } else {
                    format!("{} days left", left.whole_days())
                };
                if !json {
                    println!(
                        "{}  {:<22} {}  ({})",
                        i.not_after.format(&Rfc3339)?,
                        state,
                        i.file,
                        i.what
                    );
                }
            }
            Ok(if expired > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

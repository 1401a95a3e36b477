//! Test helper: `keys-rotate-child STORE_DIR KEYRING [DELAY_MS]` rotates the data keys of a
//! file store under a local keyring, printing `rotated <blob id>` after each blob and
//! sleeping DELAY_MS between blobs, so a test can kill it mid-rotation. Prints
//! `done <changed> <resumed>` at the end. Mirrors `parley keys rotate-data`.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use parley_keys::envelope::EnvelopeStore;
use parley_keys::keyring::LocalKeyring;
use parley_keys::store::FileStore;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(store), Some(keyring)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: keys-rotate-child STORE_DIR KEYRING [DELAY_MS]");
        return ExitCode::from(2);
    };
    let delay = Duration::from_millis(args.get(3).and_then(|d| d.parse().ok()).unwrap_or(0));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let result = rt.block_on(async {
        let backend = Arc::new(LocalKeyring::open(&PathBuf::from(keyring))?);
        let store = Arc::new(FileStore::open(&PathBuf::from(store))?);
        let es = EnvelopeStore::new(backend, store);
        es.rotate_data_with(|id| {
            println!("rotated {id}");
            let _ = std::io::stdout().flush();
            std::thread::sleep(delay);
        })
        .await
    });
    match result {
        Ok(r) => {
            println!("done {} {}", r.changed, r.resumed);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

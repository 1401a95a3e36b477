//! Small helpers shared by the host's modules.

use std::path::{Path, PathBuf};

/// 1-based line and column of a byte offset in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, column)
}

/// `path` if absolute, else relative to `base`.
pub fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        // Collecting the components drops a trailing "." (`data_dir = "."` names `base`).
        base.join(path).components().collect()
    }
}

/// Current Unix time in seconds.
pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Current Unix time in milliseconds.
pub fn unix_now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

/// SHA-384 of the running executable: the simulated launch measurement.
pub fn measure_self() -> std::io::Result<[u8; 48]> {
    // /proc/self/exe stays readable even if the file was replaced since start.
    measure_file(Path::new("/proc/self/exe"))
}

/// SHA-384 of a file, streamed.
pub fn measure_file(path: &Path) -> std::io::Result<[u8; 48]> {
    use sha2::{Digest, Sha384};
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha384::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

/// Resolves once the shutdown flag is set (or its sender is gone).
pub async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send: drop it here.
    let _ = rx.wait_for(|s| *s).await;
}

//! A checked reader for the crate's small binary formats: every read checks the length
//! first and fails instead of panicking; `finish` rejects trailing bytes.

use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

/// Why a parse failed; callers turn it into a typed error naming their input.
#[derive(Debug)]
pub(crate) struct Short(pub &'static str);

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Short> {
        let (head, rest) = self.buf.split_at_checked(n).ok_or(Short(what))?;
        self.buf = rest;
        Ok(head)
    }
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Short> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }
    pub fn u16(&mut self, what: &'static str) -> Result<u16, Short> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }
    pub fn u32(&mut self, what: &'static str) -> Result<u32, Short> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    pub fn u64(&mut self, what: &'static str) -> Result<u64, Short> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }
    pub fn magic(&mut self, magic: &[u8], what: &'static str) -> Result<(), Short> {
        if self.take(magic.len(), what)? == magic {
            Ok(())
        } else {
            Err(Short(what))
        }
    }
    /// The rest of the input.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
    pub fn finish(self) -> Result<(), Short> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Short("trailing bytes"))
        }
    }
}

/// Seconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_never_reads_past_the_end() {
        let mut r = Reader::new(&[0, 1, 2]);
        assert_eq!(r.u16("a").unwrap(), 1);
        assert!(r.u16("b").is_err());
        assert!(Reader::new(&[1]).finish().is_err());
        assert!(Reader::new(b"PK").magic(b"PKR1", "magic").is_err());
    }
}

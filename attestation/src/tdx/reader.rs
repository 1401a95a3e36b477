//! A checked little-endian reader over a byte slice: every read names the field it is for
//! and fails with [`QuoteError::Truncated`] instead of panicking.

use super::quote::QuoteError;

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    /// Offset of `bytes[0]` in the whole quote, for error messages.
    base: usize,
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], base: usize) -> Self {
        Reader {
            bytes,
            base,
            pos: 0,
        }
    }

    /// Offset of the next byte in the whole quote.
    pub(crate) fn offset(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    pub(crate) fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], QuoteError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(QuoteError::Truncated {
                field,
                offset: self.offset(),
                needed: len,
                available: self.remaining(),
            })?;
        let out = self.bytes.get(self.pos..end).ok_or(QuoteError::Truncated {
            field,
            offset: self.offset(),
            needed: len,
            available: self.remaining(),
        })?;
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<&'a [u8; N], QuoteError> {
        let offset = self.offset();
        let available = self.remaining();
        self.take(N, field)?
            .try_into()
            .map_err(|_| QuoteError::Truncated {
                field,
                offset,
                needed: N,
                available,
            })
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, QuoteError> {
        self.array::<2>(field).map(|b| u16::from_le_bytes(*b))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, QuoteError> {
        self.array::<4>(field).map(|b| u32::from_le_bytes(*b))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_fails_without_panicking() {
        let mut r = Reader::new(&[1, 0, 2, 0, 0, 0, 9], 10);
        assert_eq!(r.u16("a").ok(), Some(1));
        assert_eq!(r.u32("b").ok(), Some(2));
        assert_eq!(r.offset(), 16);
        let err = r.u16("c").unwrap_err();
        assert_eq!(
            err,
            QuoteError::Truncated {
                field: "c",
                offset: 16,
                needed: 2,
                available: 1
            }
        );
        assert_eq!(r.take(1, "d").ok(), Some(&[9u8][..]));
        assert!(r.take(usize::MAX, "d").is_err());
    }
}

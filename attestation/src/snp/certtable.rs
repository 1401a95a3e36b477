//! The SEV-SNP certificate table: what the host attaches to an extended report (GHCB
//! specification, "SNP Extended Guest Request"; configfs-tsm `auxblob`).
//!
//! The table starts with entries of 24 bytes — a GUID (16 bytes, RFC 4122 byte order),
//! a little-endian u32 offset and a u32 length — ended by an all-zero entry. Offsets are
//! from the start of the table. Every entry is bounds-checked; nothing here trusts the
//! host's numbers.

use super::verify::Endorsements;

/// The kind of a certificate table entry, by GUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Ark,
    Ask,
    Vcek,
    Vlek,
    Crl,
    /// A GUID this crate does not know.
    Other([u8; 16]),
}

const GUIDS: [(&str, EntryKind); 5] = [
    ("c0b406a4a80349529743 3fb6014cd0ae", EntryKind::Ark),
    ("4ab7b379bbac4fe4a02f 05aef327c782", EntryKind::Ask),
    ("63da758de6644564adc5 f4b93be8accd", EntryKind::Vcek),
    ("a8074bc2a25a483eaae6 39c045a0b8a1", EntryKind::Vlek),
    ("92f81bc358114d3d97ff d19f88dc67ea", EntryKind::Crl),
];

fn kind_of(guid: &[u8; 16]) -> EntryKind {
    let h = hex::encode(guid);
    GUIDS
        .iter()
        .find(|(g, _)| g.replace(' ', "") == h)
        .map_or(EntryKind::Other(*guid), |(_, k)| *k)
}

/// Why a certificate table cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertTableError {
    #[error(
        "the certificate table ends before its terminating all-zero entry (after {entries} entries, {len} bytes)"
    )]
    Unterminated { entries: usize, len: usize },
    #[error(
        "certificate table entry {index} points at bytes {offset}..{end}, outside the {len}-byte table (or into its header)"
    )]
    OutOfBounds {
        index: usize,
        offset: u64,
        end: u64,
        len: usize,
    },
}

/// One certificate table entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertTableEntry {
    pub kind: EntryKind,
    pub data: Vec<u8>,
}

/// Parse a certificate table. An empty buffer is an empty table.
pub fn parse(table: &[u8]) -> Result<Vec<CertTableEntry>, CertTableError> {
    if table.is_empty() {
        return Ok(Vec::new());
    }
    let mut headers = Vec::new();
    let mut rest = table;
    loop {
        let Some((entry, tail)) = rest.split_first_chunk::<24>() else {
            return Err(CertTableError::Unterminated {
                entries: headers.len(),
                len: table.len(),
            });
        };
        rest = tail;
        if entry.iter().all(|&b| b == 0) {
            break;
        }
        let (guid, nums) = entry.split_at(16);
        let (off, len) = nums.split_at(4);
        let guid: [u8; 16] = guid.try_into().unwrap_or([0; 16]);
        let off = u32::from_le_bytes(off.try_into().unwrap_or([0; 4]));
        let len = u32::from_le_bytes(len.try_into().unwrap_or([0; 4]));
        headers.push((guid, off, len));
    }
    let header_end = (headers.len() + 1) * 24;
    headers
        .into_iter()
        .enumerate()
        .map(|(index, (guid, off, len))| {
            let (start, end) = (u64::from(off), u64::from(off) + u64::from(len));
            let data = usize::try_from(start)
                .ok()
                .zip(usize::try_from(end).ok())
                .filter(|&(s, _)| s >= header_end)
                .and_then(|(s, e)| table.get(s..e))
                .ok_or(CertTableError::OutOfBounds {
                    index,
                    offset: start,
                    end,
                    len: table.len(),
                })?;
            Ok(CertTableEntry {
                kind: kind_of(&guid),
                data: data.to_vec(),
            })
        })
        .collect()
}

fn guid_of(kind: EntryKind) -> [u8; 16] {
    match kind {
        EntryKind::Other(g) => g,
        k => GUIDS
            .iter()
            .find(|(_, g)| *g == k)
            .and_then(|(h, _)| hex::decode(h.replace(' ', "")).ok())
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0; 16]),
    }
}

/// Encode entries as a table (the inverse of [`parse`]): a node ships the table its host
/// gave it beside its evidence, whichever interface it was collected through.
pub fn encode(entries: &[CertTableEntry]) -> Vec<u8> {
    if entries.is_empty() {
        return Vec::new();
    }
    let header = (entries.len() + 1) * 24;
    let mut head = Vec::with_capacity(header);
    let mut body = Vec::new();
    for e in entries {
        head.extend_from_slice(&guid_of(e.kind));
        let offset = u32::try_from(header + body.len()).unwrap_or(u32::MAX);
        head.extend_from_slice(&offset.to_le_bytes());
        head.extend_from_slice(
            &u32::try_from(e.data.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        body.extend_from_slice(&e.data);
    }
    head.extend_from_slice(&[0; 24]);
    head.extend_from_slice(&body);
    head
}

/// The table's certificates and CRLs as verification inputs.
pub fn endorsements(entries: &[CertTableEntry]) -> Endorsements {
    let mut e = Endorsements::default();
    add_to(entries, &mut e);
    e
}

/// Add the table's certificates and CRLs to existing inputs (entries of unknown kind are
/// skipped).
pub fn add_to(entries: &[CertTableEntry], e: &mut Endorsements) {
    for (i, entry) in entries.iter().enumerate() {
        let name = format!("certificate table entry {i} ({:?})", entry.kind);
        match entry.kind {
            EntryKind::Other(_) => {}
            _ => e.add_file(&name, &entry.data),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly
mod tests {
    use super::*;

    fn table(entries: &[([u8; 16], &[u8])]) -> Vec<u8> {
        let header = (entries.len() + 1) * 24;
        let mut head = Vec::new();
        let mut body = Vec::new();
        for (guid, data) in entries {
            head.extend_from_slice(guid);
            head.extend_from_slice(&((header + body.len()) as u32).to_le_bytes());
            head.extend_from_slice(&(data.len() as u32).to_le_bytes());
            body.extend_from_slice(data);
        }
        head.extend_from_slice(&[0; 24]);
        head.extend_from_slice(&body);
        head
    }

    fn guid(s: &str) -> [u8; 16] {
        hex::decode(s.replace([' ', '-'], ""))
            .unwrap()
            .try_into()
            .unwrap()
    }

    #[test]
    fn encode_is_the_inverse_of_parse() {
        let vcek = guid("63da758d-e664-4564-adc5-f4b93be8accd");
        let t = table(&[(vcek, b"vcek-der"), ([9; 16], b"x")]);
        let e = parse(&t).unwrap();
        assert_eq!(encode(&e), t);
        assert_eq!(parse(&encode(&e)).unwrap(), e);
        assert!(encode(&[]).is_empty());
    }

    #[test]
    fn round_trip_and_bounds() {
        let vcek = guid("63da758d-e664-4564-adc5-f4b93be8accd");
        let ark = guid("c0b406a4-a803-4952-9743-3fb6014cd0ae");
        let t = table(&[(vcek, b"vcek-der"), (ark, b"ark"), ([9; 16], b"x")]);
        let e = parse(&t).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(
            (e[0].kind, e[0].data.as_slice()),
            (EntryKind::Vcek, &b"vcek-der"[..])
        );
        assert_eq!(e[1].kind, EntryKind::Ark);
        assert_eq!(e[2].kind, EntryKind::Other([9; 16]));
        assert_eq!(parse(&[]).unwrap(), vec![]);
        assert!(matches!(
            parse(&t[..30]),
            Err(CertTableError::Unterminated { .. })
        ));
        let mut bad = t.clone();
        bad[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            parse(&bad),
            Err(CertTableError::OutOfBounds { index: 0, .. })
        ));
        // Pointing into the header is refused too.
        let mut bad = t.clone();
        bad[16..20].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            parse(&bad),
            Err(CertTableError::OutOfBounds { .. })
        ));
    }
}

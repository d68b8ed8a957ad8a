//! PCR values as tpm2-tools writes them, and the PCR digest a quote commits to.
//!
//! `tpm2_quote -o` writes a memory dump of the TSS C structures TPML_PCR_SELECTION, a u32
//! count and that many TPML_DIGEST — host byte order (little-endian on every platform
//! tpm2-tools runs on) with C padding, not TPM wire format; `tpm2_checkquote` and Keylime
//! read the same layout. `tpm2_pcrread -o` writes the selected values concatenated.

use super::HashAlg;
use super::attest::{MAX_PCR_BANKS, MAX_PCR_SELECT, PcrSelection};
use super::wire::WireError;

/// sizeof(TPMS_PCR_SELECTION): u16 hash, u8 sizeofSelect, u8[4] pcrSelect, 1 byte padding.
const SELECTION_SIZE: usize = 8;
/// TPML_DIGEST holds at most 8 digests of sizeof(TPM2B_DIGEST) = u16 + 64 bytes each.
const DIGESTS_PER_LIST: usize = 8;
const DIGEST_SIZE: usize = 2 + 64;
const LIST_SIZE: usize = 4 + DIGESTS_PER_LIST * DIGEST_SIZE;
/// More lists than 16 banks × 32 PCRs / 8 cannot be meaningful.
const MAX_LISTS: usize = MAX_PCR_BANKS * 32 / DIGESTS_PER_LIST;

/// One PCR value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrValue {
    pub bank: HashAlg,
    pub index: u32,
    pub value: Vec<u8>,
}

/// PCR values in selection order (banks as listed, PCRs ascending): the order in which the
/// TPM concatenates them for the quote's PCR digest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PcrValues {
    pub values: Vec<PcrValue>,
}

impl PcrValues {
    /// Reads the file `tpm2_quote -o` writes.
    pub fn from_tpm2_tools(bytes: &[u8]) -> Result<Self, WireError> {
        let what = "tpm2-tools PCR file";
        let mut r = LeReader { buf: bytes, what };
        let count = r.u32()? as usize;
        if count > MAX_PCR_BANKS {
            return Err(WireError::Invalid { what, reason: format!("it lists {count} PCR banks; at most 16 exist") });
        }
        let mut selection = Vec::with_capacity(count);
        for slot in 0..MAX_PCR_BANKS {
            let entry = r.take(SELECTION_SIZE)?;
            if slot >= count {
                continue;
            }
            let (hash, size, bitmap) = match entry {
                [h0, h1, size, bitmap @ ..] => (u16::from_le_bytes([*h0, *h1]), usize::from(*size), bitmap),
                _ => return Err(WireError::Truncated(what)),
            };
            let select = bitmap.get(..size).filter(|_| size <= MAX_PCR_SELECT).ok_or_else(|| WireError::Invalid {
                what,
                reason: format!("a PCR bitmap of {size} bytes is larger than {MAX_PCR_SELECT}"),
            })?;
            selection.push(PcrSelection { hash, select: select.to_vec() });
        }
        let lists = r.u32()? as usize;
        if lists > MAX_LISTS {
            return Err(WireError::Invalid { what, reason: format!("it claims {lists} digest lists") });
        }
        let mut digests = Vec::new();
        for _ in 0..lists {
            let list = r.take(LIST_SIZE)?;
            let mut l = LeReader { buf: list, what };
            let n = l.u32()? as usize;
            if n > DIGESTS_PER_LIST {
                return Err(WireError::Invalid {
                    what,
                    reason: format!("a digest list claims {n} digests; at most 8 fit"),
                });
            }
            for _ in 0..n {
                let entry = l.take(DIGEST_SIZE)?;
                let (len, buffer) = entry.split_at_checked(2).ok_or(WireError::Truncated(what))?;
                let len = <[u8; 2]>::try_from(len).map_err(|_| WireError::Truncated(what))?;
                let len = usize::from(u16::from_le_bytes(len));
                let value = buffer.get(..len).ok_or_else(|| WireError::Invalid {
                    what,
                    reason: format!("a digest claims {len} bytes; at most 64 fit"),
                })?;
                digests.push(value.to_vec());
            }
        }
        if !r.buf.is_empty() {
            return Err(WireError::TrailingBytes { what, count: r.buf.len() });
        }
        Self::assign(&selection, digests, what)
    }

    /// Writes the file `tpm2_quote -o` writes, which [`Self::from_tpm2_tools`] reads back: the
    /// TPML_PCR_SELECTION the values imply (each run of one bank is one TPMS_PCR_SELECTION with
    /// a 3-byte bitmap, as tpm2-tools selects, or 4 bytes for PCRs 24-31), then the values in
    /// TPML_DIGESTs of at most 8. Unused slots and C padding are zero. The values must be in
    /// selection order (banks not repeated, PCRs ascending) and of their bank's digest size.
    pub fn to_tpm2_tools(&self) -> Result<Vec<u8>, WireError> {
        let what = "tpm2-tools PCR file";
        let invalid = |reason: String| WireError::Invalid { what, reason };
        let mut selection: Vec<(HashAlg, u32, [u8; MAX_PCR_SELECT])> = Vec::new();
        for v in &self.values {
            if v.value.len() != v.bank.digest_len() {
                return Err(invalid(format!(
                    "PCR {}:{} is {} bytes, not {}",
                    v.bank,
                    v.index,
                    v.value.len(),
                    v.bank.digest_len()
                )));
            }
            let byte = usize::try_from(v.index / 8).ok().filter(|b| *b < MAX_PCR_SELECT);
            let byte = byte.ok_or_else(|| invalid(format!("PCR {}:{} is beyond PCR 31", v.bank, v.index)))?;
            match selection.last_mut() {
                Some((bank, last, bitmap)) if *bank == v.bank => {
                    if v.index <= *last {
                        return Err(invalid(format!("PCR {}:{} is out of ascending order", v.bank, v.index)));
                    }
                    *last = v.index;
                    if let Some(b) = bitmap.get_mut(byte) {
                        *b |= 1 << (v.index % 8);
                    }
                }
                _ => {
                    if selection.iter().any(|(bank, _, _)| *bank == v.bank) {
                        return Err(invalid(format!("the {} bank is listed twice", v.bank)));
                    }
                    let mut bitmap = [0u8; MAX_PCR_SELECT];
                    if let Some(b) = bitmap.get_mut(byte) {
                        *b |= 1 << (v.index % 8);
                    }
                    selection.push((v.bank, v.index, bitmap));
                }
            }
        }
        if selection.len() > MAX_PCR_BANKS {
            return Err(invalid(format!("it lists {} PCR banks; at most 16 exist", selection.len())));
        }
        let chunks = self.values.chunks(DIGESTS_PER_LIST);
        let mut out = Vec::with_capacity(4 + MAX_PCR_BANKS * SELECTION_SIZE + 4 + chunks.len() * LIST_SIZE);
        // Both counts are bounded above (16 banks; 16 × 32 / 8 lists), so they fit a u32.
        out.extend_from_slice(&(selection.len() as u32).to_le_bytes());
        for slot in 0..MAX_PCR_BANKS {
            let entry: [u8; SELECTION_SIZE] = match selection.get(slot) {
                Some((bank, last, [b0, b1, b2, b3])) => {
                    let [h0, h1] = bank.id().to_le_bytes();
                    let size = if *last >= 24 { 4 } else { 3 };
                    [h0, h1, size, *b0, *b1, *b2, *b3, 0]
                }
                None => [0; SELECTION_SIZE],
            };
            out.extend_from_slice(&entry);
        }
        out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
        for chunk in chunks {
            out.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
            for slot in 0..DIGESTS_PER_LIST {
                let value = chunk.get(slot).map(|v| v.value.as_slice()).unwrap_or_default();
                // A digest is at most 64 bytes (checked above against its bank's size).
                out.extend_from_slice(&(value.len() as u16).to_le_bytes());
                out.extend_from_slice(value);
                out.resize(out.len() + (DIGEST_SIZE - 2 - value.len()), 0);
            }
        }
        Ok(out)
    }

    /// Reads `tpm2_pcrread -o` output: the values of `selection` concatenated, with no framing.
    pub fn from_concatenated(bytes: &[u8], selection: &[PcrSelection]) -> Result<Self, WireError> {
        let what = "PCR values file";
        let mut rest = bytes;
        let mut digests = Vec::new();
        for bank in selection {
            let hash = bank_hash(bank, what)?;
            for _ in bank.pcrs() {
                let (value, tail) = rest.split_at_checked(hash.digest_len()).ok_or(WireError::Truncated(what))?;
                digests.push(value.to_vec());
                rest = tail;
            }
        }
        if !rest.is_empty() {
            return Err(WireError::TrailingBytes { what, count: rest.len() });
        }
        Self::assign(selection, digests, what)
    }

    fn assign(selection: &[PcrSelection], digests: Vec<Vec<u8>>, what: &'static str) -> Result<Self, WireError> {
        let mut digests = digests.into_iter();
        let mut values = Vec::new();
        for bank in selection {
            let hash = bank_hash(bank, what)?;
            for index in bank.pcrs() {
                let value = digests.next().ok_or_else(|| WireError::Invalid {
                    what,
                    reason: "it holds fewer PCR values than its selection lists".to_owned(),
                })?;
                if value.len() != hash.digest_len() {
                    return Err(WireError::Invalid {
                        what,
                        reason: format!("PCR {hash}:{index} is {} bytes, not {}", value.len(), hash.digest_len()),
                    });
                }
                values.push(PcrValue { bank: hash, index, value });
            }
        }
        if digests.next().is_some() {
            return Err(WireError::Invalid {
                what,
                reason: "it holds more PCR values than its selection lists".to_owned(),
            });
        }
        Ok(Self { values })
    }

    /// The value of one PCR, if present.
    pub fn get(&self, bank: HashAlg, index: u32) -> Option<&[u8]> {
        self.values.iter().find(|v| v.bank == bank && v.index == index).map(|v| v.value.as_slice())
    }

    /// Whether these values are exactly the PCRs `selection` lists, in its order.
    pub fn covers(&self, selection: &[PcrSelection]) -> bool {
        let listed = selection
            .iter()
            .flat_map(|bank| bank.pcrs().into_iter().map(move |i| (HashAlg::from_id(bank.hash), i)))
            .collect::<Vec<_>>();
        let have = self.values.iter().map(|v| (Some(v.bank), v.index)).collect::<Vec<_>>();
        listed == have
    }

    /// The digest a quote's pcrDigest must equal: `hash` (the signing scheme's hash) over the
    /// concatenated values.
    pub fn digest(&self, hash: HashAlg) -> Vec<u8> {
        let parts = self.values.iter().map(|v| v.value.as_slice()).collect::<Vec<_>>();
        hash.digest(&parts)
    }
}

fn bank_hash(bank: &PcrSelection, what: &'static str) -> Result<HashAlg, WireError> {
    bank.hash_alg().ok_or(WireError::Unsupported { what, field: "PCR bank hash", value: u32::from(bank.hash) })
}

/// A little-endian reader for the tpm2-tools memory dump.
struct LeReader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> LeReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let (head, tail) = self.buf.split_at_checked(n).ok_or(WireError::Truncated(self.what))?;
        self.buf = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let bytes = self.take(4)?;
        <[u8; 4]>::try_from(bytes).map(u32::from_le_bytes).map_err(|_| WireError::Truncated(self.what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(bank: HashAlg, index: u32, fill: u8) -> PcrValue {
        PcrValue { bank, index, value: vec![fill; bank.digest_len()] }
    }

    #[test]
    fn to_tpm2_tools_round_trips_through_the_parser() {
        // 10 sha256 values (two digest lists), then a second bank reaching PCR 31 (4-byte bitmap).
        let mut values: Vec<PcrValue> = (0..10).map(|i| value(HashAlg::Sha256, i, i as u8 + 1)).collect();
        values.extend([value(HashAlg::Sha1, 16, 0xaa), value(HashAlg::Sha1, 31, 0xbb)]);
        let pcrs = PcrValues { values };
        let file = pcrs.to_tpm2_tools().expect("encode");
        assert_eq!(file.len(), 4 + MAX_PCR_BANKS * SELECTION_SIZE + 4 + 2 * LIST_SIZE);
        assert_eq!(PcrValues::from_tpm2_tools(&file).expect("decode"), pcrs);
        // The selection as tpm2-tools lays it out: count, then hash, sizeofSelect, bitmap, pad.
        assert_eq!(&file[..4], &2u32.to_le_bytes());
        assert_eq!(&file[4..12], &[0x0b, 0x00, 3, 0xff, 0x03, 0x00, 0x00, 0x00]);
        assert_eq!(&file[12..20], &[0x04, 0x00, 4, 0x00, 0x00, 0x01, 0x80, 0x00]);
        // PCRs 0-7 of one bank: one list, a 3-byte bitmap.
        let eight = PcrValues { values: (0..8).map(|i| value(HashAlg::Sha256, i, 7)).collect() };
        let file = eight.to_tpm2_tools().expect("encode");
        assert_eq!(file.len(), 4 + MAX_PCR_BANKS * SELECTION_SIZE + 4 + LIST_SIZE);
        assert_eq!(PcrValues::from_tpm2_tools(&file).expect("decode"), eight);
        // No values: an empty selection and no lists.
        let empty = PcrValues::default().to_tpm2_tools().expect("encode");
        assert_eq!(PcrValues::from_tpm2_tools(&empty).expect("decode"), PcrValues::default());
    }

    #[test]
    fn to_tpm2_tools_refuses_what_the_format_cannot_say() {
        let cases = [
            vec![value(HashAlg::Sha256, 3, 1), value(HashAlg::Sha256, 2, 1)],
            vec![value(HashAlg::Sha256, 1, 1), value(HashAlg::Sha1, 1, 1), value(HashAlg::Sha256, 2, 1)],
            vec![value(HashAlg::Sha256, 32, 1)],
            vec![PcrValue { bank: HashAlg::Sha256, index: 0, value: vec![0; 20] }],
        ];
        for values in cases {
            let err = PcrValues { values: values.clone() }.to_tpm2_tools();
            assert!(matches!(err, Err(WireError::Invalid { .. })), "{values:?}: {err:?}");
        }
    }
}

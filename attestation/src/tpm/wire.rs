//! Bounds-checked reading and writing of TPM 2.0 wire structures (TPM 2.0 Library, Part 2):
//! big-endian integers and TPM2B (u16 length-prefixed) buffers.

/// Why bytes could not be decoded as a TPM structure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("the {0} is truncated; send the complete structure as the TPM or tpm2-tools wrote it")]
    Truncated(&'static str),
    #[error("the {what} has {count} unexpected trailing bytes; it may be a different structure or a concatenation")]
    TrailingBytes { what: &'static str, count: usize },
    #[error("the {what} uses {field} 0x{value:04x}, which Tether does not support")]
    Unsupported { what: &'static str, field: &'static str, value: u32 },
    #[error("the {what} is invalid: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error(
        "the {0} does not start with TPM_GENERATED_VALUE (0xff544347), so it was not produced by a TPM \
         attestation command (a TPM2_Sign signature over chosen data cannot stand in for a quote)"
    )]
    NotTpmGenerated(&'static str),
}

/// A big-endian reader over a byte slice that never reads past its end.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let (head, tail) = self.buf.split_at_checked(n).ok_or(WireError::Truncated(self.what))?;
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let bytes = self.take(N)?;
        <[u8; N]>::try_from(bytes).map_err(|_| WireError::Truncated(self.what))
    }

    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        self.array::<1>().map(|[b]| b)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, WireError> {
        self.array().map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        self.array().map(u32::from_be_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, WireError> {
        self.array().map(u64::from_be_bytes)
    }

    /// A TPM2B: a u16 length followed by that many bytes.
    pub(crate) fn sized(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn finish(&self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::TrailingBytes { what: self.what, count: self.buf.len() })
        }
    }

    pub(crate) fn invalid(&self, reason: impl Into<String>) -> WireError {
        WireError::Invalid { what: self.what, reason: reason.into() }
    }

    pub(crate) fn unsupported(&self, field: &'static str, value: impl Into<u32>) -> WireError {
        WireError::Unsupported { what: self.what, field, value: value.into() }
    }
}

/// Appends a TPM2B (u16 length + bytes); fails when the bytes do not fit a u16 length.
pub(crate) fn put_sized(out: &mut Vec<u8>, bytes: &[u8], what: &'static str) -> Result<(), WireError> {
    let len = u16::try_from(bytes.len())
        .map_err(|_| WireError::Invalid { what, reason: format!("{} bytes do not fit a TPM2B", bytes.len()) })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

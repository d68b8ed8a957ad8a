//! How a target whose entry point takes several byte strings splits one fuzz input:
//! each part but the last is a big-endian u16 length and that many bytes (cut short at the
//! end of the input), the last part is whatever remains. Seeds are written with [`frame`].

/// Splits `data` into exactly `n` parts (missing parts are empty).
pub fn split(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut parts = Vec::with_capacity(n);
    let mut rest = data;
    for _ in 1..n {
        let (part, tail) = take(rest);
        parts.push(part);
        rest = tail;
    }
    if n > 0 {
        parts.push(rest);
    }
    parts
}

/// Splits `data` into length-prefixed parts until it is used up (at most `max`).
pub fn split_all(data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while !rest.is_empty() && parts.len() < max {
        let (part, tail) = take(rest);
        parts.push(part);
        rest = tail;
    }
    parts
}

fn take(data: &[u8]) -> (&[u8], &[u8]) {
    let (len, rest) = match data {
        [a, b, rest @ ..] => (usize::from(u16::from_be_bytes([*a, *b])), rest),
        _ => return (&[], &[]),
    };
    rest.split_at(len.min(rest.len()))
}

/// The input [`split`] turns back into `parts` (and [`split_all`], when no part is empty).
pub fn frame(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 < parts.len() {
            let len = u16::try_from(part.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&part[..usize::from(len)]);
        } else {
            out.extend_from_slice(part);
        }
    }
    out
}

/// Like [`frame`] but every part is length-prefixed, for [`split_all`].
pub fn frame_all(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        let len = u16::try_from(part.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&part[..usize::from(len)]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_and_split_are_inverse() {
        let parts: [&[u8]; 3] = [b"one", b"", b"three"];
        assert_eq!(split(&frame(&parts), 3), parts);
        assert_eq!(split_all(&frame_all(&parts), 8), parts);
        assert_eq!(split(b"\xff", 2), [&b""[..], &b""[..]]);
    }
}

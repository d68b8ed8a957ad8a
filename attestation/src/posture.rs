//! Binding a device's posture report to its presence answer.
//!
//! When the agent attaches a posture report (the exact bytes it sends as
//! `posture_json`), the hardware key signs a challenge derived from the
//! server's nonce and the report instead of the nonce itself:
//!
//! ```text
//! bound = SHA-256( "tether posture v1" || 0x00 || u32_be(len(nonce)) || nonce || SHA-256(posture bytes) )
//! ```
//!
//! For WebAuthn this is `clientDataJSON.challenge` (base64url); for a TPM quote
//! it is the qualifying data. The domain prefix keeps the value from being
//! confused with any other use of the nonce; the length prefix makes the
//! concatenation unambiguous. The service recomputes it from the bytes it
//! received, so a report altered, added or removed after signing no longer
//! matches what the key signed.

use ring::digest::{Context, SHA256, digest};

/// The domain-separation prefix (followed by one zero byte).
pub const DOMAIN: &[u8] = b"tether posture v1";

/// SHA-256 of the posture bytes exactly as sent.
pub fn posture_digest(posture: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, posture).as_ref());
    out
}

/// The challenge the hardware key signs when `posture` accompanies the answer to `nonce`.
pub fn bound_challenge(nonce: &[u8], posture: &[u8]) -> [u8; 32] {
    let mut ctx = Context::new(&SHA256);
    ctx.update(DOMAIN);
    ctx.update(&[0]);
    // Nonces are 32 bytes; a length that does not fit is clamped, which only changes the hash.
    ctx.update(&u32::try_from(nonce.len()).unwrap_or(u32::MAX).to_be_bytes());
    ctx.update(nonce);
    ctx.update(&posture_digest(posture));
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The LAN fingerprint of a network identifier (a gateway MAC or Wi-Fi BSSID,
/// lowercase `aa:bb:cc:dd:ee:ff`): hex SHA-256 over a domain prefix, so that
/// raw addresses never leave the device while equal networks still match.
pub fn lan_hash(identifier: &str) -> String {
    let mut ctx = Context::new(&SHA256);
    ctx.update(b"tether lan v1\0");
    ctx.update(identifier.trim().to_ascii_lowercase().as_bytes());
    hex::encode(ctx.finish().as_ref())
}

/// What the key must have signed: the bound challenge with a posture, the nonce without.
pub fn expected_challenge(nonce: &[u8], posture: Option<&[u8]>) -> Vec<u8> {
    match posture {
        Some(p) => bound_challenge(nonce, p).to_vec(),
        None => nonce.to_vec(),
    }
}

/// Unicode format characters (general category Cf): zero-width characters, bidirectional
/// controls, the byte-order mark, soft hyphen, tags, invisible operators. The agent drops
/// them from what it reports and tetherd refuses reports that carry them, so "\u{200b}kvmd"
/// cannot pass for something other than "kvmd".
pub fn is_invisible_format(c: char) -> bool {
    matches!(u32::from(c),
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x08E2 | 0x180E | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB
        | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
        | 0xE0001 | 0xE0020..=0xE007F)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_depends_on_every_input() {
        let nonce = [7u8; 32];
        let a = bound_challenge(&nonce, br#"{"usb":[]}"#);
        assert_ne!(a, bound_challenge(&nonce, br#"{"usb": []}"#), "bytes, not meaning, are bound");
        assert_ne!(a, bound_challenge(&[8u8; 32], br#"{"usb":[]}"#));
        assert_ne!(a.to_vec(), nonce.to_vec());
        assert_eq!(expected_challenge(&nonce, None), nonce.to_vec());
        assert_eq!(expected_challenge(&nonce, Some(br#"{"usb":[]}"#)), a.to_vec());
    }

    #[test]
    fn known_answer() {
        // Pinned so that agents and services built from different versions agree.
        let got = bound_challenge(&[0u8; 32], b"{}");
        let mut ctx = Context::new(&SHA256);
        ctx.update(b"tether posture v1\x00\x00\x00\x00\x20");
        ctx.update(&[0u8; 32]);
        ctx.update(digest(&SHA256, b"{}").as_ref());
        assert_eq!(got.as_slice(), ctx.finish().as_ref());
    }
}

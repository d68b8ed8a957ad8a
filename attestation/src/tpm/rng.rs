//! The operating system's random generator (through `ring`), for callers of
//! [`super::credential::make_credential`] that have no `rand_core` generator of their own.

use rand_core::{TryCryptoRng, TryRng};

/// The operating system's random generator failed; nothing can be encrypted without it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct RandomnessError;

/// `ring::rand::SystemRandom` as a fallible `rand_core` generator.
#[derive(Debug, Clone)]
pub struct SystemRng(ring::rand::SystemRandom);

impl SystemRng {
    pub fn new() -> Self {
        Self(ring::rand::SystemRandom::new())
    }
}

impl Default for SystemRng {
    fn default() -> Self {
        Self::new()
    }
}

impl TryRng for SystemRng {
    type Error = RandomnessError;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        ring::rand::SecureRandom::fill(&self.0, dst).map_err(|_| RandomnessError)
    }
}

impl TryCryptoRng for SystemRng {}

//! Writes the seeds derived from ../shared/conformance/webauthn to <dir>/<target>/ for
//! libFuzzer (run.sh calls this; the vectors are never copied into the repository).
//!
//! cargo run --manifest-path fuzz/Cargo.toml --no-default-features --example shared_seeds -- <dir>

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::args().nth(1).ok_or("usage: shared_seeds <dir>")?);
    let Some(dir) = tether_fuzz::seeds::shared_dir() else {
        eprintln!("NOTICE: ../shared/conformance/webauthn is absent; no real-device seeds");
        return Ok(());
    };
    let seeds = tether_fuzz::seeds::shared_seeds(&dir);
    for seed in &seeds {
        let target_dir = out.join(seed.target);
        std::fs::create_dir_all(&target_dir)?;
        std::fs::write(target_dir.join(&seed.name), &seed.data)?;
    }
    eprintln!("{} real-device seeds from {} written to {}", seeds.len(), dir.display(), out.display());
    Ok(())
}

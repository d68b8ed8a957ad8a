//! Building an engine from a configuration file and the IP databases it names.
//!
//! The crate does no I/O of its own: the caller hands over `read` (in production
//! `std::fs::read`), so the rules — database paths relative to the configuration file,
//! an engine without geolocation when no database is named — live here once for
//! tetherd and `tether analyze`, and tests can feed files from memory.

use std::path::{Path, PathBuf};

use crate::{Engine, Enricher, MmdbEnricher, NoEnricher, RiskConfig};

/// Builds the engine from a configuration file (TOML or JSON; defaults without one). The
/// City and ASN databases it names are read relative to the configuration file's folder.
pub fn load_engine(
    config_path: Option<&Path>,
    read: impl Fn(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<Engine, String> {
    let (config, base) = match config_path {
        Some(path) => {
            let bytes =
                read(path).map_err(|e| format!("cannot read the risk configuration {}: {e}", path.display()))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| format!("the risk configuration {} is not UTF-8 text", path.display()))?;
            let config = RiskConfig::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            (config, path.parent().map(Path::to_path_buf).unwrap_or_default())
        }
        None => (RiskConfig::default(), PathBuf::new()),
    };
    let read_database = |path: &Option<PathBuf>| {
        path.as_ref()
            .map(|p| {
                let full = base.join(p);
                read(&full).map_err(|e| format!("cannot read the IP database {}: {e}", full.display()))
            })
            .transpose()
    };
    let (city, asn) = (read_database(&config.geo.city_mmdb)?, read_database(&config.geo.asn_mmdb)?);
    let enricher: Box<dyn Enricher> = if city.is_none() && asn.is_none() {
        Box::new(NoEnricher)
    } else {
        Box::new(MmdbEnricher::from_bytes(city, asn)?)
    };
    Engine::with_enricher(config, enricher)
}

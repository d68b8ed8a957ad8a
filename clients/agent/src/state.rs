//! The agent's state file: which server, which device and credential, and the
//! authenticator's own state (for the soft key: the private key and the sign
//! counter, hence mode 0600 and atomic replacement).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::authenticator::{Authenticator, restore_authenticator};
use crate::{AgentError, Enrollment};

/// What `tether-agent enroll` writes and `tether-agent run` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    /// The tetherd URL the device enrolled with.
    pub server: String,
    pub device_id: String,
    /// base64url credential id, as the server names it.
    pub credential_id: String,
    /// The authenticator backend ("softkey").
    pub backend: String,
    /// The backend's own state (`Authenticator::to_state_json`).
    pub authenticator_state: serde_json::Value,
}

impl AgentState {
    /// The state after a successful enrollment with `auth`.
    pub fn from_enrollment(
        server: &str,
        enrollment: &Enrollment,
        auth: &dyn Authenticator,
    ) -> Result<Self, AgentError> {
        let authenticator_state = serde_json::from_str(&auth.to_state_json())
            .map_err(|e| AgentError::State(format!("authenticator state is not JSON: {e}")))?;
        Ok(Self {
            server: server.to_string(),
            device_id: enrollment.device_id.clone(),
            credential_id: enrollment.credential_id.clone(),
            backend: auth.backend().to_string(),
            authenticator_state,
        })
    }

    /// Read and parse the state file.
    pub fn load(path: &Path) -> Result<Self, AgentError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AgentError::State(format!("cannot read {}: {e}", path.display())))?;
        warn_if_readable_by_others(path);
        serde_json::from_str(&text)
            .map_err(|e| AgentError::State(format!("{} is not a valid state file: {e}", path.display())))
    }

    /// Write the state file atomically: a temporary file (mode 0600) in the
    /// same directory, flushed to disk, then renamed over `path`.
    pub fn save(&self, path: &Path) -> Result<(), AgentError> {
        let dir = parent_dir(path);
        let fail =
            |what: &str, e: &dyn std::fmt::Display| AgentError::State(format!("cannot {what} {}: {e}", path.display()));
        let mut json = serde_json::to_vec_pretty(self).map_err(|e| fail("serialize", &e))?;
        json.push(b'\n');
        // tempfile creates the file with mode 0600 on Unix.
        let mut tmp = tempfile::Builder::new()
            .prefix(".tether-agent-state.")
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(|e| fail("create a temporary file next to", &e))?;
        tmp.write_all(&json).map_err(|e| fail("write", &e))?;
        tmp.as_file().sync_all().map_err(|e| fail("flush", &e))?;
        tmp.persist(path).map_err(|e| fail("replace", &e.error))?;
        sync_dir(&dir);
        Ok(())
    }

    /// Check that a state file could be written at `path` (the directory
    /// exists and is writable) without touching `path` itself. `enroll` calls
    /// this before consuming the one-time token.
    pub fn check_writable(path: &Path) -> Result<(), AgentError> {
        let dir = parent_dir(path);
        tempfile::Builder::new()
            .prefix(".tether-agent-state.")
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map(drop)
            .map_err(|e| AgentError::State(format!("cannot write a state file in {}: {e}", dir.display())))
    }

    /// Restore the authenticator this state describes.
    pub fn authenticator(&self) -> Result<Box<dyn Authenticator>, AgentError> {
        restore_authenticator(&self.backend, &self.authenticator_state)
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) {
    // Makes the rename durable; failure only weakens durability, not correctness.
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) {}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "the state file holds the device's private key but is readable by other users; chmod 600 it"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AgentState {
        AgentState {
            server: "http://127.0.0.1:50051".into(),
            device_id: "dev_1".into(),
            credential_id: "Y3JlZA".into(),
            backend: "softkey".into(),
            authenticator_state: serde_json::json!({"sign_count": 7, "key": "secret"}),
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let state = sample();
        state.save(&path).unwrap();
        assert_eq!(AgentState::load(&path).unwrap(), state);
    }

    #[test]
    fn save_replaces_and_leaves_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut state = sample();
        state.save(&path).unwrap();
        state.authenticator_state = serde_json::json!({"sign_count": 8});
        state.save(&path).unwrap();
        assert_eq!(AgentState::load(&path).unwrap(), state);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[cfg(unix)]
    #[test]
    fn saved_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        sample().save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn relative_file_name_saves_in_current_directory_form() {
        assert_eq!(parent_dir(Path::new("state.json")), PathBuf::from("."));
        assert_eq!(parent_dir(Path::new("/a/b.json")), PathBuf::from("/a"));
    }

    #[test]
    fn load_reports_missing_and_invalid_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        let err = AgentState::load(&missing).unwrap_err();
        assert!(matches!(err, AgentError::State(_)), "{err}");
        let invalid = dir.path().join("invalid.json");
        std::fs::write(&invalid, "{ not json").unwrap();
        let err = AgentState::load(&invalid).unwrap_err();
        assert!(err.to_string().contains("not a valid state file"), "{err}");
    }

    #[test]
    fn check_writable_rejects_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(AgentState::check_writable(&dir.path().join("s.json")).is_ok());
        assert!(AgentState::check_writable(&dir.path().join("nope/s.json")).is_err());
    }

    #[test]
    fn unknown_backend_is_refused() {
        let mut state = sample();
        state.backend = "hsm".into();
        let err = state.authenticator().err().unwrap();
        assert!(err.to_string().contains("unknown authenticator backend"), "{err}");
        // A TPM state file needs an agent built with the `tpm` feature; with it, a valid state.
        state.backend = "tpm".into();
        let err = state.authenticator().err().unwrap();
        #[cfg(not(feature = "tpm"))]
        assert!(err.to_string().contains("without the `tpm` feature"), "{err}");
        #[cfg(feature = "tpm")]
        assert!(err.to_string().contains("cannot restore the TPM key"), "{err}");
    }
}

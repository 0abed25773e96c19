//! The desired config on disk: `desired.json` in the state directory, holding the config
//! and its generation. Writes are atomic (temp file, fsync, rename, fsync of the
//! directory) so a crash leaves either the old or the new file. A file that cannot be
//! read back is reported and left in place, never replaced by an empty config.
//!
//! The file holds CHAP secrets, so it is created mode 0600 (owner only) and the directory
//! 0700 when this creates it; a state file found readable by others is narrowed to 0600
//! when it is opened.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tgt_proto::Config;

/// Name of the state file inside the state directory.
pub const STATE_FILE: &str = "desired.json";

/// Mode of the state file: it holds CHAP secrets, so only its owner may read it.
pub const STATE_FILE_MODE: u32 = 0o600;

/// Mode of a state directory this creates.
pub const STATE_DIR_MODE: u32 = 0o700;

/// What is persisted: the desired config and its generation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Desired {
    /// Generation of the config; every accepted change increments it.
    pub generation: u64,
    /// The config as the operator wrote it.
    pub config: Config,
}

/// Why the state could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O error on the state directory or file.
    #[error("state file {path}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The state file exists but is not a valid desired config; it is left untouched.
    #[error("state file {path} is corrupt (left untouched; fix or move it away): {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the state directory and loads the desired config; a
    /// missing file means generation 0 with an empty config.
    pub fn open(dir: &Path) -> Result<(Self, Desired), StoreError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { path, source }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(STATE_DIR_MODE)
            .create(dir)
            .map_err(io(dir))?;
        let store = Self {
            dir: dir.to_path_buf(),
        };
        let path = store.path();
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((store, Desired::default()))
            }
            Err(e) => return Err(io(&path)(e)),
        };
        // Written by an older version, or copied in by hand: narrow it before it is used.
        let mode = std::fs::metadata(&path)
            .map_err(io(&path))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(STATE_FILE_MODE))
                .map_err(io(&path))?;
        }
        let corrupt = |message: String| StoreError::Corrupt {
            path: path.clone(),
            message,
        };
        let desired: Desired = serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
        if let Err(e) = desired.config.clone().validate() {
            return Err(corrupt(e.to_string().replace('\n', "; ")));
        }
        Ok((store, desired))
    }

    /// The state file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Replaces the state file atomically. Blocking: call it off the network threads.
    pub fn save(&self, desired: &Desired) -> Result<(), StoreError> {
        let path = self.path();
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let err = |p: &Path| {
            let p = p.to_path_buf();
            move |source| StoreError::Io { path: p, source }
        };
        let mut body = serde_json::to_vec_pretty(desired).map_err(|e| StoreError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        body.push(b'\n');
        // A temp file left by a crash may have any mode: start from none.
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(&tmp)(e)),
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(STATE_FILE_MODE)
            .open(&tmp)
            .map_err(err(&tmp))?;
        // The umask can only narrow the mode; set it exactly all the same.
        f.set_permissions(std::fs::Permissions::from_mode(STATE_FILE_MODE))
            .map_err(err(&tmp))?;
        f.write_all(&body).map_err(err(&tmp))?;
        f.sync_all().map_err(err(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(err(&path))?;
        // The rename is durable only once the directory entry is.
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(err(&self.dir))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("tgt-cp-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn saves_and_restores_the_desired_config() {
        let d = dir("roundtrip");
        let (store, first) = Store::open(&d).unwrap();
        assert_eq!(first, Desired::default());
        let desired = Desired {
            generation: 3,
            config: serde_json::from_str(r#"{"iscsiportals":[{"id":1,"portal":"127.0.0.1:0"}]}"#)
                .unwrap(),
        };
        store.save(&desired).unwrap();
        let (_, back) = Store::open(&d).unwrap();
        assert_eq!(back, desired);
        assert!(!d.join("desired.json.tmp").exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_state_file_is_private_to_its_owner_and_replaced_atomically() {
        let d = dir("mode");
        let (store, _) = Store::open(&d).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&d), STATE_DIR_MODE);
        // A temp file left by a crash, readable by all, does not lend its mode.
        std::fs::write(d.join("desired.json.tmp"), b"junk").unwrap();
        std::fs::set_permissions(
            d.join("desired.json.tmp"),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        let desired = Desired {
            generation: 1,
            config: serde_json::from_str(
                r#"{"discovery":{"auth":{"chap":{"username":"u","secret":"secret-12345"}}}}"#,
            )
            .unwrap(),
        };
        store.save(&desired).unwrap();
        assert_eq!(mode(&store.path()), STATE_FILE_MODE);
        assert!(!d.join("desired.json.tmp").exists());
        assert_eq!(Store::open(&d).unwrap().1, desired);
        // A file made readable by others is narrowed when opened.
        std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        Store::open(&d).unwrap();
        assert_eq!(mode(&store.path()), STATE_FILE_MODE);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn reports_a_corrupt_file_and_leaves_it_alone() {
        let d = dir("corrupt");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(STATE_FILE), b"{\"generation\": 1, \"config\": ").unwrap();
        let err = Store::open(&d).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert_eq!(
            std::fs::read(d.join(STATE_FILE)).unwrap(),
            b"{\"generation\": 1, \"config\": "
        );
        std::fs::write(
            d.join(STATE_FILE),
            br#"{"generation":1,"config":{"storages":[{"deviceID":1,"path":""}]}}"#,
        )
        .unwrap();
        let err = Store::open(&d).unwrap_err().to_string();
        assert!(err.contains("storages[0].path"), "{err}");
        let _ = std::fs::remove_dir_all(&d);
    }
}

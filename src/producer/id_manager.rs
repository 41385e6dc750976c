//! ProducerIdManager: hands out producer ids that are never reused, even across restarts. Ids
//! come in blocks; the end of the current block is made durable before any id in it is given
//! out, so a crash skips at most the rest of one block.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::log::checkpoint;
use crate::log::LogError;

pub const FILE_NAME: &str = "producer-id-block";
const BLOCK: i64 = 1000;

pub struct ProducerIdManager {
    path: PathBuf,
    /// (next id to give, first id of the next block not yet reserved on disk).
    next: Mutex<(i64, i64)>,
}

impl ProducerIdManager {
    pub fn load(dir: &Path) -> Result<Self, LogError> {
        let path = dir.join(FILE_NAME);
        let reserved_end = match std::fs::read_to_string(&path) {
            Ok(t) => t.trim().parse::<i64>().map_err(|_| LogError::CorruptFile {
                path: path.display().to_string(),
                reason: "not a number".into(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(LogError::io(&path, e)),
        };
        // Everything below the reserved end may have been handed out before the restart.
        Ok(Self {
            path,
            next: Mutex::new((reserved_end, reserved_end)),
        })
    }

    pub fn next_id(&self) -> Result<i64, LogError> {
        let mut guard = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let (next, reserved_end) = *guard;
        if next >= reserved_end {
            let new_end = reserved_end + BLOCK;
            checkpoint::write_atomically(&self.path, new_end.to_string().as_bytes())?;
            guard.1 = new_end;
        }
        guard.0 = next + 1;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_reused_after_restart() {
        let dir = tempfile::tempdir().expect("tmp");
        let m = ProducerIdManager::load(dir.path()).expect("load");
        let first: Vec<i64> = (0..3).map(|_| m.next_id().expect("id")).collect();
        assert_eq!(first, vec![0, 1, 2]);
        drop(m);
        let m = ProducerIdManager::load(dir.path()).expect("reload");
        assert!(m.next_id().expect("id") > 2);
    }
}

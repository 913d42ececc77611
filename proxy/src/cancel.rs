//! Query cancellation: pgseal gives each client its own BackendKeyData and remembers which
//! server backend it stands for, so that a CancelRequest reaches the right backend and a
//! client can only cancel what its own key names.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rand::{Rng, RngCore};
use subtle::ConstantTimeEq;

/// The server backend a pgseal key stands for.
#[derive(Clone, Debug)]
pub struct BackendKey {
    /// The server's process id.
    pub pid: i32,
    /// The server's secret key.
    pub secret: Bytes,
    /// The upstream host the backend runs on (its index in the `--upstream` list).
    pub host: usize,
}

struct Entry {
    secret: Bytes,
    backend: BackendKey,
    cancelled: Arc<AtomicBool>,
}

/// The keys handed out to live sessions.
#[derive(Default)]
pub struct CancelRegistry {
    entries: Mutex<HashMap<i32, Entry>>,
}

/// A session's registration; dropping it forgets the key.
pub struct Registration {
    registry: Arc<CancelRegistry>,
    /// The process id given to the client.
    pub pid: i32,
    /// The secret key given to the client.
    pub secret: Bytes,
    /// Set when the client asks to cancel: a statement pgseal itself holds back (an export
    /// paced by its budget) must hear of it, since the server's answer waits behind the rows.
    pub cancelled: Arc<AtomicBool>,
    /// The server backend it stands for (pgseal cancels it itself when it ends a statement the
    /// server is still running, so the server's state matches what the client is told).
    pub backend: BackendKey,
}

impl CancelRegistry {
    /// Registers a session's server backend and returns the key to give the client instead.
    ///
    /// The client's key has the same length as the server's (4 bytes in protocol 3.0, longer in
    /// 3.2), and its process id is random, so keys say nothing about pgseal's sessions.
    pub fn register(self: &Arc<Self>, backend: BackendKey) -> Registration {
        let mut rng = rand::rng();
        let mut secret = vec![0u8; backend.secret.len()];
        rng.fill_bytes(&mut secret);
        let secret = Bytes::from(secret);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let pid = loop {
            let candidate = rng.random_range(1..i32::MAX);
            if !entries.contains_key(&candidate) {
                break candidate;
            }
        };
        let cancelled = Arc::new(AtomicBool::new(false));
        let backend_key = backend.clone();
        entries.insert(
            pid,
            Entry {
                secret: secret.clone(),
                backend,
                cancelled: Arc::clone(&cancelled),
            },
        );
        Registration {
            registry: Arc::clone(self),
            pid,
            secret,
            cancelled,
            backend: backend_key,
        }
    }

    /// The server backend for a client's cancel key, if the key is one pgseal handed out (and
    /// then marks its session cancelled). The secret is compared in constant time.
    pub fn lookup(&self, pid: i32, secret: &[u8]) -> Option<BackendKey> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.get(&pid)?;
        let matches = entry.secret.len() == secret.len() && bool::from(entry.secret.ct_eq(secret));
        if matches {
            entry.cancelled.store(true, Ordering::Release);
        }
        matches.then(|| entry.backend.clone())
    }

    /// How many sessions are registered.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no session is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut entries = self
            .registry
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        entries.remove(&self.pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_finds_its_backend_and_only_with_its_secret() {
        let registry = Arc::new(CancelRegistry::default());
        let backend = BackendKey {
            pid: 1234,
            secret: Bytes::from_static(&[1, 2, 3, 4]),
            host: 0,
        };
        let registration = registry.register(backend);
        assert_eq!(registration.secret.len(), 4);
        let found = registry
            .lookup(registration.pid, &registration.secret)
            .unwrap();
        assert_eq!(found.pid, 1234);
        assert!(registry.lookup(registration.pid, &[0, 0, 0, 0]).is_none());
        assert!(
            registry
                .lookup(registration.pid, &registration.secret[..3])
                .is_none()
        );
        let pid = registration.pid;
        drop(registration);
        assert!(registry.lookup(pid, &[1, 2, 3, 4]).is_none());
        assert!(registry.is_empty());
    }

    #[test]
    fn long_protocol_3_2_secrets_keep_their_length() {
        let registry = Arc::new(CancelRegistry::default());
        let registration = registry.register(BackendKey {
            pid: 1,
            secret: Bytes::from(vec![7u8; 32]),
            host: 1,
        });
        assert_eq!(registration.secret.len(), 32);
    }
}

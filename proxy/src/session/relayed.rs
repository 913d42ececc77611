//! A session relayed unprotected because no policy names its database
//! (`--unprotected-databases relay`), watched for reloads: when a reload gives its database a
//! policy (or stops relaying such databases), the session ends at its next statement (57P01)
//! rather than go on writing plaintext into columns that are now sealed. Frames pass as they
//! came; only the starts of statements are looked at, for one atomic load.

use std::sync::Arc;

use bytes::BytesMut;

use crate::error::SessionError;
use crate::protect::set::{ForDatabase, InForce};
use crate::session::relay::{Filter, Flow};

/// The client → server filter of a relayed session.
pub struct RelayedWatch {
    in_force: Arc<InForce>,
    generation: u64,
    database: String,
}

impl RelayedWatch {
    /// Watches a session on `database`, relayed under generation `generation` of `in_force`.
    pub fn new(in_force: Arc<InForce>, generation: u64, database: String) -> Self {
        RelayedWatch {
            in_force,
            generation,
            database,
        }
    }
}

impl Filter for RelayedWatch {
    fn inspects(&mut self, tag: u8) -> bool {
        matches!(tag, b'Q' | b'P' | b'B' | b'F') && self.in_force.generation() != self.generation
    }

    fn on_frame(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<Flow, SessionError> {
        let set = self.in_force.current();
        match set.for_database(&self.database) {
            ForDatabase::Relay => self.generation = set.generation(),
            ForDatabase::Protected(_) | ForDatabase::Refuse => {
                return Err(SessionError::PolicyAdded(self.database.clone()));
            }
        }
        out.extend_from_slice(frame);
        Ok(Flow::Done)
    }
}

//! A protected session: the relay's two filters, [`Frontend`] (client → server) and
//! [`Backend`] (server → client), sharing one [`state::Shared`].

mod accounting;
mod backend;
mod copy;
mod frontend;
mod plan;
mod state;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

pub use accounting::SessionInfo;
pub use backend::Backend;
pub use frontend::Frontend;

use crate::protect::Protection;

/// The two filters of a session of `role` on `database`.
pub fn filters(
    protection: &Arc<Protection>,
    session: SessionInfo,
    lexing: crate::session::auth::LexingSettings,
) -> (Frontend, Backend) {
    let session = Arc::new(session);
    let database = session.database.as_str();
    let state = Arc::new(Mutex::new(state::Shared {
        statements: HashMap::new(),
        pending_statements: HashMap::new(),
        portals: HashMap::new(),
        expected: VecDeque::new(),
        catalog: protection.catalogs.get(database),
        catalog_stale: false,
        server_skipping: false,
        lexing,
        end_users: crate::enduser::EndUserState::new(),
    }));
    (
        Frontend::new(
            Arc::clone(protection),
            Arc::clone(&state),
            Arc::clone(&session),
        ),
        Backend::new(Arc::clone(protection), state, session),
    )
}

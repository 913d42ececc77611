//! A protected session: the relay's two filters, [`Frontend`] (client → server) and
//! [`Backend`] (server → client), sharing one [`state::Shared`].

mod accounting;
mod backend;
mod copy;
mod cursors;
mod evaluated;
mod evaluating;
mod frontend;
mod inert;
mod paging;
mod parallel;
mod params;
mod plan;
#[cfg(test)]
mod properties;
mod state;
mod txevents;

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;

pub use accounting::SessionInfo;
pub use backend::Backend;
pub use frontend::Frontend;
pub use inert::InertTexts;

use crate::protect::Protection;

/// Cancels the statement a session's server backend is running, when pgseal ends a statement
/// on its own (a budget block, a value that fails to open): the server must fail it too, so
/// that what follows it in the transaction or pipeline is rolled back as the client is told.
pub struct Canceller {
    context: Arc<crate::session::Context>,
    backend: crate::cancel::BackendKey,
}

impl Canceller {
    /// A canceller for one session's backend.
    pub fn new(context: Arc<crate::session::Context>, backend: crate::cancel::BackendKey) -> Self {
        Canceller { context, backend }
    }

    /// Sends the cancel request in the background; the flag turns true once the server has
    /// received it, and `wake` is then notified.
    pub fn cancel(&self, wake: Arc<tokio::sync::Notify>) -> Arc<std::sync::atomic::AtomicBool> {
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (context, backend, flag) = (
            Arc::clone(&self.context),
            self.backend.clone(),
            Arc::clone(&done),
        );
        tokio::spawn(async move {
            crate::session::cancel_backend(&context, &backend).await;
            flag.store(true, std::sync::atomic::Ordering::Release);
            wake.notify_one();
        });
        done
    }
}

/// The policies a protected session starts with, and the set it follows on reload.
pub struct Policies {
    in_force: Arc<crate::protect::set::InForce>,
    generation: u64,
    protection: Arc<Protection>,
}

impl Policies {
    /// The session's `protection`, from generation `generation` of the sets `in_force` holds.
    pub fn new(
        in_force: Arc<crate::protect::set::InForce>,
        generation: u64,
        protection: Arc<Protection>,
    ) -> Self {
        Policies {
            in_force,
            generation,
            protection,
        }
    }
}

/// The two filters of a session of `role` on `database`.
pub fn filters(
    policies: Policies,
    session: SessionInfo,
    settings: crate::session::auth::ServerSettings,
    canceller: Canceller,
    cancelled: Arc<std::sync::atomic::AtomicBool>,
) -> (Frontend, Backend) {
    let session = Arc::new(session);
    let Policies {
        in_force,
        generation,
        protection,
    } = policies;
    let state = shared_state(&protection, generation, &session.database, settings);
    (
        Frontend::new(
            Arc::clone(&protection),
            in_force,
            Arc::clone(&state),
            Arc::clone(&session),
        ),
        Backend::new(protection, state, session, canceller, cancelled),
    )
}

/// The state a session's two filters share, as it starts.
fn shared_state(
    protection: &Arc<Protection>,
    generation: u64,
    database: &str,
    settings: crate::session::auth::ServerSettings,
) -> state::SharedState {
    Arc::new(Mutex::new(state::Shared {
        statements: Default::default(),
        pending_statements: Default::default(),
        portals: Default::default(),
        expected: VecDeque::new(),
        catalog: protection.catalogs.get(database),
        catalog_stale: false,
        catalog_load_failed: false,
        server_skipping: false,
        lexing: settings.lexing,
        dates: Arc::new(settings.dates),
        dates_changing: false,
        end_users: crate::enduser::EndUserState::new(),
        end_users_sent: crate::enduser::EndUserState::new(),
        runs_sent: 0,
        groups_sent: 0,
        gate: None,
        failed_group: None,
        cancel_in_flight: None,
        wake_frontend: Arc::new(tokio::sync::Notify::new()),
        transaction: b'I',
        group_open: false,
        protection: (generation, Arc::clone(protection)),
        cursors: Default::default(),
        paging: None,
    }))
}

/// The flow of a frame a filter handled, given whether it marked the frame as going on as it
/// came (then the relay forwards the frame itself, without a copy).
fn unchanged_flow(
    flow: crate::session::relay::Flow,
    unchanged: bool,
) -> crate::session::relay::Flow {
    use crate::session::relay::Flow;
    debug_assert!(
        !(unchanged && matches!(flow, Flow::Hold(_))),
        "a held frame is offered again: it cannot also go on now"
    );
    match flow {
        Flow::Done if unchanged => Flow::Unchanged,
        flow => flow,
    }
}

//! The PostgreSQL wire protocol as pgseal sees it: frame headers, the untagged packets of the
//! startup phase, and the few messages pgseal writes itself.
//!
//! After startup every message is a type byte and a big-endian 4-byte length that counts itself
//! but not the type byte. pgseal forwards most frames as bytes; only the ones it must change are
//! decoded, with pgwire's message types, after their length has been checked here.

pub mod extended;
pub mod frame;
pub mod messages;
pub mod startup;

pub use frame::{FrameError, FrameHeader};

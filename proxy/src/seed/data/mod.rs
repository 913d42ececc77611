//! The embedded lists the generator draws from, as Rust constants: nothing is read at run
//! time, and the lists are fixed for a given pgseal version (so is a seed's output).
//!
//! All of it is common knowledge — frequent names, real communes with their postal and INSEE
//! codes, CIM-10 codes — arranged into records that belong to nobody.

pub mod communes;
pub mod conditions;
pub mod names;
pub mod streets;

//! The end-to-end test harness: a throwaway PostgreSQL cluster and helpers to run pgseal in front
//! of it.

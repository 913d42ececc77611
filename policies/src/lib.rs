//! `pgseal-policies`: the policy model — which columns are sealed and how, what each database
//! role sees of them, and how many rows each may take out.
//!
//! It knows nothing of the wire protocol; the proxy only reads its compiled form.

//! HTTP plumbing shared by the CRM destinations (HighLevel, Twenty): secrets
//! that never format ([`secret`]). Each destination keeps what is its own —
//! endpoints, error bodies, what a response means — and plugs it into these.

pub mod secret;

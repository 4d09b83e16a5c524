//! HTTP plumbing shared by the CRM destinations (HighLevel, Twenty): secrets
//! that never format ([`secret`]), the request budget with its optional daily
//! cap, server feedback and adaptive pace ([`budget`]), and the retry plumbing — a trait each
//! destination implements to classify its responses, `Retry-After`, full-jitter
//! back-off ([`retry`]). Each destination keeps what is its own —
//! endpoints, error bodies, what a response means — and plugs it into these.

pub mod budget;
pub mod retry;
pub mod secret;

//! promo-policy: a policy-as-code gate for environment promotion. A promotion request
//! goes in; a fail-closed, explained decision comes out (see ARCHITECTURE.md).

pub mod attest;
pub mod audit;
pub mod batch;
pub mod collect;
pub mod decision;
pub mod digest;
pub mod error_chain;
pub mod evaluator;
pub mod explain;
pub mod fsio;
pub mod identity;
pub mod input;
pub mod plugin;
pub mod policy;
pub mod pool;
#[cfg(feature = "audit")]
pub mod report;
pub mod request;
#[cfg(feature = "server")]
pub mod server;
pub mod sign;
pub mod slo;
pub mod testing;
pub mod textsafe;
pub mod trace;

pub use decision::{Decision, Violation};
pub use evaluator::{Engine, EngineConfig, Error, Evaluator};
pub use policy::PolicyBundle;
pub use request::{PromotionRequest, RequestError};

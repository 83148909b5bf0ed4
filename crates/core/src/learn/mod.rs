//! The learning loop's pure parts: observation (`observe`, on the decision path), features, the
//! isolation forest, the policy and the actions it produces, and the `learner` that ties them
//! together once a minute. Nothing here does I/O or reads a clock; the server and the replay tool
//! drive it.

pub mod actions;
pub mod baselines;
mod classify;
mod client_minute;
pub mod failure_window;
pub mod features;
pub mod fleet_minute;
pub mod forest;
pub mod learner;
pub mod lists;
pub mod observe;
pub mod policy;
pub mod routes;
pub mod steady;

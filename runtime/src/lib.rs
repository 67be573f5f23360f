//! The stage runtime, written once for every command: a [`Stage`] is a transformation with
//! a [`StageContext`] that says when to stop and where to report readiness; a [`Pipeline`]
//! runs stages together, stops them all when one fails or the process is asked to stop, and
//! bounds how long they may take to flush; [`signals`] turns SIGINT and SIGTERM into that
//! request (a second signal exits at once); [`http`] serves /metrics, /healthz and /readyz
//! with the metrics of [`catalogue`];
//! [`RetryPolicy`] and [`Backoff`] are how every stage retries a transient failure, and
//! [`Streak`] how it reads again after a failed read;
//! [`fault`] holds the test suite's fault points.

mod backoff;
pub mod catalogue;
pub mod fault;
pub mod http;
mod pipeline;
pub mod signals;
mod stage;
mod stats;

pub use backoff::{sleep_until, Backoff, Class, RetryPolicy, Streak};
pub use pipeline::Pipeline;
pub use stage::{Health, Refused, Role, Stage, StageContext, Timeouts};
pub use stats::StageStats;

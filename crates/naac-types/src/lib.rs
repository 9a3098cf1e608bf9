//! Plain data shared by every naac crate: content ids, job ids, task limits and outcomes,
//! the job file (`job.toml`) with its parser and sweep expansion, and the owner's policy
//! file, both reporting errors through [`diag`]. No IO beyond reading those files, no
//! async, no network.

pub mod diag;
pub mod host;
mod ids;
pub mod job;
pub mod money;
mod outcome;
pub mod policy;
pub mod record;
pub mod sig;
pub mod units;
pub mod verify;

pub use ids::{ContentId, JobId, hex, unhex, unhex_vec};
pub use job::{Budget, Job, JobError, TaskParams};
pub use money::{Credits, Price};
pub use outcome::{FailureKind, Limits, Outcome};
pub use record::ResultRecord;
pub use verify::VerifyPolicy;

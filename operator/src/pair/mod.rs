//! The pure core: `decide(pair, observation, now) -> decision`. No client, no clock.
//!
//! This is where the pair's safety lives (docs/design.md section 3):
//! 1. the client Service selects at most one member, never a stale or fenced one;
//! 2. data flows only from the authoritative member to the other;
//! 3. a member is promoted only after the old active one is fenced or confirmed down;
//! 4. no automatic failover while paused, to a member under maintenance, or (async) past the
//!    lag bound; in synchronous mode only to the standby status promises is synchronous;
//! 5. every transition is idempotent and resumable from status.
//!
//! "When do we fail over" is answered in one place: [`failover`](self::failover) (module docs).

mod backups;
mod bootstrap;
mod checks;
mod conditions;
mod context;
mod decide;
mod decision;
mod desired;
mod failover;
mod health;
mod jobs;
mod last_check;
mod observation;
mod phase;
mod promotion;
mod realign;
mod requests;
mod rolling;
mod spec_error;
mod switchover;
mod synchronous;
mod transitions;

pub use conditions::{condition, is_true};
pub use context::{format_lsn, parse_lsn, FAST};
pub use decide::decide;
pub use decision::*;
pub use jobs::{backoff, mounts_pvc};
pub use last_check::{verdict, CHECK_ERROR};
pub use observation::*;
pub use realign::discarded;
pub use spec_error::{
    ready_reason, requeue_after, SpecProblem, MISSING_OBJECT_REQUEUE, SPEC_ERROR_REQUEUE,
};
pub use switchover::{DETACH_GRACE, REPLAY_TIMEOUT};
pub use synchronous::CAUGHT_UP_BYTES;

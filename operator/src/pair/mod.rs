//! The pure core: `decide(pair, observation, now) -> decision`. No client, no clock.
//!
//! This is where the pair's safety lives (DESIGN section 3):
//! 1. the client Service selects at most one member, never a stale or fenced one;
//! 2. data flows only from the authoritative member to the other;
//! 3. a member is promoted only after the old active one is fenced or confirmed down;
//! 4. no automatic failover while paused, to a member under maintenance, or (async) past the
//!    lag bound;
//! 5. every transition is idempotent and resumable from status.

mod decide;
mod decision;
mod observation;

pub use decide::decide;
pub use decision::*;
pub use observation::*;

//! The scenarios: the runbooks' situations, replayed with a client writing throughout. Each is
//! a function from a bootstrapped [`World`] to "done" (or an error); the shared setup and
//! verdict live in [`crate::harness`].

mod crash;
mod drain;
mod drift;
mod gitops;
mod nodes;
mod planned;
mod restart;
mod steps;

use std::future::Future;
use std::pin::Pin;

use anyhow::Result;
use receiptdb_operator::crd::ReceiptDbPairSpec;

use crate::harness::{Options, World};
use crate::report::ScenarioReport;

type Body = for<'a> fn(&'a mut World) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// A named scenario.
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    pub spec: fn() -> ReceiptDbPairSpec,
    pub body: Body,
}

/// Every scenario, in the order `all` runs them.
pub fn all() -> Vec<Scenario> {
    let mut v = crash::scenarios();
    v.extend(restart::scenarios());
    v.extend(planned::scenarios());
    v.extend(drift::scenarios());
    v.extend(nodes::scenarios());
    v.extend(gitops::scenarios());
    v.extend(drain::scenarios());
    v
}

/// The scenario called `name`.
pub fn find(name: &str) -> Option<Scenario> {
    all().into_iter().find(|s| s.name == name)
}

/// Run one scenario from scratch to its report.
pub async fn run(s: &Scenario, opts: &Options) -> ScenarioReport {
    let mut spec = (s.spec)();
    spec.tls.enabled &= opts.tls;
    let mut world = match World::create(s.name, spec, opts).await {
        Ok(w) => w,
        Err(e) => return ScenarioReport::setup_failed(s.name, format!("{e:#}")),
    };
    let outcome = match world.bootstrap().await {
        Ok(()) => (s.body)(&mut world).await,
        Err(e) => Err(e.context("bootstrap")),
    };
    let failure = outcome.err().map(|e| format!("{e:#}"));
    world.finish(s.name, failure).await
}

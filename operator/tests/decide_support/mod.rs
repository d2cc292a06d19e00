//! Test support for `decide`: fixtures and a small model world that plays the controller loop
//! (apply desired, run actions, advance Jobs and replication) so tests can drive a pair through
//! failures and check the safety rules at every pass.

#![allow(dead_code)]

use jiff::{SignedDuration, Timestamp};
use kube::api::ObjectMeta;
use receiptdb_operator::crd::{
    Member, ReceiptDbPair, ReceiptDbPairSpec, ReceiptDbPairStatus, ReplicationMode,
};
use receiptdb_operator::pair::{
    decide, Action, Decision, JobKind, JobObservation, JobState, MemberObservation, Observation,
    PodObservation, Reported, Requests, ServerProbe, StandbyObservation, SyncRequest,
};
use receiptdb_postgres::actions::Lsn;
use receiptdb_postgres::compare::Method;
use receiptdb_postgres::job_report::{
    BackupReport, CheckReport, CloneReport, InitdbReport, JobReport, Lost, RejoinMethod,
    RejoinReport, RestoreReport, SyncReport,
};
use receiptdb_postgres::sync::SyncMode;

/// A pair named `orca` with the given spec tweaks.
pub fn pair(f: impl FnOnce(&mut ReceiptDbPairSpec)) -> ReceiptDbPair {
    let mut spec = ReceiptDbPairSpec::default();
    spec.consistency_check.interval_seconds = 0;
    f(&mut spec);
    ReceiptDbPair {
        metadata: ObjectMeta {
            name: Some("orca".into()),
            namespace: Some("db".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec,
        status: None,
    }
}

pub fn t0() -> Timestamp {
    Timestamp::from_second(1_700_000_000).unwrap()
}

/// One member of the model world.
#[derive(Clone, Debug, Default)]
pub struct Node {
    /// Data directory: None when empty.
    pub data: Option<Data>,
    /// StatefulSet replicas as last applied.
    pub replicas: Option<i32>,
    /// A pod exists (it lingers one pass after scale-down, like a terminating pod).
    pub pod: bool,
    pub pod_lingers: bool,
    /// The server process crashed (pod not ready, no probe).
    pub crashed: bool,
    /// Reachable by clients and replication but not by the operator's probe.
    pub partitioned: bool,
    pub read_only: bool,
    /// `synchronous_standby_names` names the other member.
    pub sync_names: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Data {
    pub timeline: u32,
    /// WAL position; a standby's is its replay position.
    pub lsn: u64,
    pub in_recovery: bool,
    /// Every LSN this member's history contains up to `lsn` is from this lineage.
    pub lineage: u64,
}

impl Node {
    pub fn running(&self) -> bool {
        self.pod && !self.crashed && self.data.is_some()
    }
}

/// The model world around one pair.
pub struct World {
    pub pair: ReceiptDbPair,
    pub nodes: [Node; 2],
    pub service: Option<Option<Member>>,
    /// Every change of the Service's selector: (when, what it selects).
    pub service_changes: Vec<(Timestamp, Option<Member>)>,
    pub jobs: Vec<JobObservation>,
    pub now: Timestamp,
    pub requests: Requests,
    pub job_seq: u32,
    /// Jobs fail instead of succeeding.
    pub jobs_fail: bool,
    /// Commits acknowledged to clients: (lineage, lsn).
    pub acked: Vec<(u64, u64)>,
    pub next_lineage: u64,
    pub decisions: Vec<Decision>,
    /// Highest LSN any standby may lag (async replication delay per pass).
    pub replication_delay: u64,
    pub data_lost: [bool; 2],
    /// Timeline forks: (new lineage, parent lineage, position where it forked).
    pub forks: Vec<(u64, u64, u64)>,
    /// Each member's node is cordoned (`kubectl drain` has begun).
    pub cordoned: [bool; 2],
}

pub fn idx(m: Member) -> usize {
    match m {
        Member::Primary => 0,
        Member::Secondary => 1,
    }
}

impl World {
    pub fn new(pair: ReceiptDbPair) -> Self {
        World {
            pair,
            nodes: [Node::default(), Node::default()],
            service: None,
            service_changes: Vec::new(),
            jobs: Vec::new(),
            now: t0(),
            requests: Requests::default(),
            job_seq: 0,
            jobs_fail: false,
            acked: Vec::new(),
            next_lineage: 1,
            decisions: Vec::new(),
            replication_delay: 0,
            data_lost: [false, false],
            forks: Vec::new(),
            cordoned: [false, false],
        }
    }

    pub fn node(&mut self, m: Member) -> &mut Node {
        &mut self.nodes[idx(m)]
    }

    pub fn status(&self) -> ReceiptDbPairStatus {
        self.pair.status.clone().unwrap_or_default()
    }

    /// What the controller would observe now.
    pub fn observe(&self) -> Observation {
        let member = |m: Member| {
            let n = &self.nodes[idx(m)];
            let other = &self.nodes[idx(m.other())];
            let pod = n.pod.then(|| PodObservation {
                ready: n.running(),
                terminating: n.pod_lingers,
                restarts: 0,
            });
            let probe = if !n.pod {
                None
            } else if !n.running() {
                Some(Err("connection refused".to_string()))
            } else if n.partitioned {
                Some(Err("timeout".to_string()))
            } else {
                let d = n.data.as_ref().unwrap();
                let streaming = d.in_recovery && self.streams(m.other(), m);
                let mut standbys = Vec::new();
                if !d.in_recovery && self.streams(m, m.other()) {
                    let od = other.data.as_ref().unwrap();
                    standbys.push(StandbyObservation {
                        application_name: m.other().as_str().to_string(),
                        streaming: true,
                        synchronous: n.sync_names,
                        replay_lag_bytes: d.lsn.saturating_sub(od.lsn),
                    });
                }
                Some(Ok(ServerProbe {
                    in_recovery: d.in_recovery,
                    lsn: d.lsn,
                    receive_lsn: None,
                    timeline: d.timeline,
                    system_identifier: 7,
                    streaming,
                    standbys,
                    synchronous_standby_names: if n.sync_names {
                        m.other().as_str().to_string()
                    } else {
                        String::new()
                    },
                    read_only: n.read_only,
                }))
            };
            MemberObservation {
                replicas: n.replicas,
                pod,
                probe,
                data_lost: self.data_lost[idx(m)],
                node_cordoned: n.pod.then_some(self.cordoned[idx(m)]),
            }
        };
        Observation {
            generation: 1,
            spec_problems: Vec::new(),
            primary: member(Member::Primary),
            secondary: member(Member::Secondary),
            service_selects: self.service,
            jobs: self.jobs.clone(),
            requests: self.requests.clone(),
            last_backup_job: None,
            // The model's probes answer at once.
            probed_at: Some(self.now),
        }
    }

    /// `from` is a running primary and `to` a running standby of the same lineage.
    pub fn streams(&self, from: Member, to: Member) -> bool {
        let (a, b) = (&self.nodes[idx(from)], &self.nodes[idx(to)]);
        match (a.running(), b.running(), &a.data, &b.data) {
            (true, true, Some(x), Some(y)) => {
                !x.in_recovery && y.in_recovery && x.lineage == y.lineage && y.lsn <= x.lsn
            }
            _ => false,
        }
    }

    /// One controller pass: decide, apply desired, run a prefix of the actions (all unless
    /// `crash_after` says where the operator died), persist status unless `lose_status`.
    pub fn pass(&mut self, crash_after: Option<usize>, lose_status: bool) -> Decision {
        let obs = self.observe();
        let d = decide(&self.pair, &obs, self.now);
        if let Some(desired) = &d.desired {
            for m in Member::ALL {
                let r = desired.replicas(m);
                let n = self.node(m);
                n.replicas = Some(r);
                if r == 0 && n.pod {
                    if n.pod_lingers {
                        n.pod = false;
                        n.pod_lingers = false;
                    } else {
                        n.pod_lingers = true;
                    }
                } else if r == 1 && !n.pod {
                    n.pod = true;
                    n.pod_lingers = false;
                    n.crashed = n.data.is_none();
                }
            }
            if self.service != Some(desired.service_selects) {
                self.service_changes
                    .push((self.now, desired.service_selects));
            }
            self.service = Some(desired.service_selects);
        }
        let n = crash_after.unwrap_or(d.actions.len()).min(d.actions.len());
        for a in &d.actions[..n] {
            self.act(a);
        }
        if !lose_status {
            self.pair.status = Some(d.status.clone());
        }
        self.decisions.push(d.clone());
        d
    }

    fn act(&mut self, a: &Action) {
        match a {
            Action::CreateJob { kind, member } => {
                if !self
                    .jobs
                    .iter()
                    .any(|j| j.kind == *kind && j.member == *member)
                {
                    self.job_seq += 1;
                    self.jobs.push(JobObservation {
                        kind: *kind,
                        member: *member,
                        name: format!("orca-{member}-{}-{}", kind.as_str(), self.job_seq),
                        state: JobState::Running,
                        report: None,
                    });
                }
            }
            Action::DeleteJob { name } => self.jobs.retain(|j| j.name != *name),
            Action::Promote { member } => {
                let lineage = self.next_lineage;
                let n = self.node(*member);
                if n.running() {
                    let d = n.data.as_mut().unwrap();
                    if d.in_recovery {
                        d.in_recovery = false;
                        d.timeline += 1;
                        let fork = (lineage, d.lineage, d.lsn);
                        d.lineage = lineage;
                        self.next_lineage += 1;
                        self.forks.push(fork);
                    }
                }
            }
            Action::FenceWrites { member } => self.node(*member).read_only = true,
            Action::UnfenceWrites { member } => self.node(*member).read_only = false,
            Action::SetSynchronousStandby { on, standby } => {
                self.node(*on).sync_names = standby.is_some()
            }
            Action::ClearAnnotation { key } => {
                if key.ends_with("switchover-to") {
                    self.requests.switchover_to = None;
                } else {
                    self.requests.sync = None;
                }
            }
            Action::Event { .. } => {}
        }
    }

    /// The environment between passes: Jobs finish, clients write, standbys replay, time passes.
    pub fn tick(&mut self, ms: i64, writes: bool) {
        self.now += SignedDuration::from_millis(ms);
        self.finish_jobs();
        if writes {
            self.write();
        }
        self.replicate();
    }

    fn finish_jobs(&mut self) {
        let auth = self.status().authoritative_member;
        for i in 0..self.jobs.len() {
            if self.jobs[i].state != JobState::Running {
                continue;
            }
            let (kind, m) = (self.jobs[i].kind, self.jobs[i].member);
            let fail = self.jobs_fail;
            let (state, report) = if fail {
                (
                    JobState::Failed,
                    JobReport::failed(kind.entrypoint(), "boom"),
                )
            } else {
                self.job_effect(kind, m, auth)
            };
            self.jobs[i].state = state;
            // Through the termination message, as the operator reads it.
            let message = report.to_line();
            self.jobs[i].report = Some(Reported::parse(kind.entrypoint(), &message));
        }
    }

    fn job_effect(
        &mut self,
        kind: JobKind,
        m: Member,
        _auth: Option<Member>,
    ) -> (JobState, JobReport) {
        let source = self.nodes[idx(m.other())].data.clone();
        match kind {
            JobKind::Initdb => {
                let lineage = self.next_lineage;
                self.next_lineage += 1;
                self.node(m).data = Some(Data {
                    timeline: 1,
                    lsn: 100,
                    in_recovery: false,
                    lineage,
                });
                self.data_lost[idx(m)] = false;
                let r = InitdbReport {
                    ok: true,
                    initialized: true,
                    ..Default::default()
                };
                (JobState::Succeeded, r.into())
            }
            JobKind::Clone | JobKind::Rejoin => match source {
                Some(s) if self.nodes[idx(m.other())].running() => {
                    // What the member had past the source's position is thrown away.
                    let mine = self.nodes[idx(m)].data.clone();
                    let fork = mine.as_ref().and_then(|d| {
                        if d.lineage == s.lineage {
                            Some(s.lsn)
                        } else {
                            let f = self
                                .forks
                                .iter()
                                .find(|f| f.0 == s.lineage && f.1 == d.lineage);
                            f.map(|f| f.2)
                        }
                    });
                    let lost = match (&mine, fork) {
                        (Some(d), Some(at)) if d.lsn > at => Lost {
                            from: Some(Lsn(at)),
                            to: Some(Lsn(d.lsn)),
                            bytes: d.lsn - at,
                        },
                        _ => Lost::default(),
                    };
                    self.node(m).data = Some(Data {
                        in_recovery: true,
                        ..s
                    });
                    self.data_lost[idx(m)] = false;
                    let report: JobReport = if kind == JobKind::Clone {
                        CloneReport {
                            ok: true,
                            timeline: Some(s.timeline),
                            ..Default::default()
                        }
                        .into()
                    } else {
                        RejoinReport {
                            ok: true,
                            method: Some(RejoinMethod::Rewind),
                            stale_timeline: mine.map(|d| d.timeline),
                            lost,
                            ..Default::default()
                        }
                        .into()
                    };
                    (JobState::Succeeded, report)
                }
                _ => (
                    JobState::Failed,
                    JobReport::failed(kind.entrypoint(), "source down"),
                ),
            },
            JobKind::Restore => {
                if let Some(d) = self.node(m).data.as_mut() {
                    d.lsn += 1000;
                }
                let r = RestoreReport {
                    ok: true,
                    ..Default::default()
                };
                (JobState::Succeeded, r.into())
            }
            JobKind::Sync => {
                if let Some(s) = source {
                    let lsn = s.lsn;
                    if let Some(d) = self.node(m).data.as_mut() {
                        d.lsn = lsn;
                    }
                }
                let r = SyncReport {
                    ok: true,
                    mode: Some(SyncMode::Tables),
                    ..Default::default()
                };
                (JobState::Succeeded, r.into())
            }
            JobKind::Check | JobKind::Backup => {
                let a = self.nodes[0].data.as_ref().map(|d| d.lsn);
                let b = self.nodes[1].data.as_ref().map(|d| d.lsn);
                let equal = a == b;
                let state = if equal {
                    JobState::Succeeded
                } else {
                    JobState::Failed
                };
                let differing: Vec<String> = if equal {
                    Vec::new()
                } else {
                    vec!["public.receipts".to_string()]
                };
                let report: JobReport = if kind == JobKind::Check {
                    CheckReport {
                        ok: true,
                        method: Some(Method::Checksums),
                        equal: Some(equal),
                        tables_compared: 1,
                        differing_count: differing.len(),
                        differing_tables: differing,
                        ..Default::default()
                    }
                    .into()
                } else {
                    BackupReport {
                        ok: true,
                        ..Default::default()
                    }
                    .into()
                };
                (state, report)
            }
        }
    }

    /// A client writes through the Service; acknowledged per synchronous_commit semantics.
    fn write(&mut self) {
        let Some(Some(m)) = self.service else { return };
        let sync_blocks = {
            let n = &self.nodes[idx(m)];
            n.sync_names && !self.streams(m, m.other())
        };
        let n = &self.nodes[idx(m)];
        if !n.running() || n.read_only || sync_blocks {
            return;
        }
        let sync = n.sync_names;
        let d = self.node(m).data.as_mut().unwrap();
        if d.in_recovery {
            return;
        }
        d.lsn += 100;
        let (lineage, lsn) = (d.lineage, d.lsn);
        if sync {
            // Commit waits for the standby: it has the WAL before the client hears back.
            if let Some(o) = self.node(m.other()).data.as_mut() {
                o.lsn = lsn;
            }
        }
        self.acked.push((lineage, lsn));
    }

    fn replicate(&mut self) {
        for m in Member::ALL {
            if self.streams(m, m.other()) {
                let lsn = self.nodes[idx(m)].data.as_ref().unwrap().lsn;
                let delay = self.replication_delay;
                let d = self.node(m.other()).data.as_mut().unwrap();
                d.lsn = d.lsn.max(lsn.saturating_sub(delay));
            }
        }
    }

    /// The members a client's new connection may reach now: kube-proxy programs a change of
    /// the Service up to `lag_ms` after it (its `minSyncPeriod`), so the selection in force
    /// `lag_ms` ago and every one since.
    pub fn reachable(&self, lag_ms: i64) -> Vec<Member> {
        let horizon = self.now - SignedDuration::from_millis(lag_ms);
        let settled = self
            .service_changes
            .iter()
            .take_while(|(t, _)| *t <= horizon)
            .last()
            .into_iter();
        let recent = self.service_changes.iter().filter(|(t, _)| *t > horizon);
        settled.chain(recent).filter_map(|(_, m)| *m).collect()
    }

    /// Members a client may reach (see [`World::reachable`]) that would give it a session on a
    /// running primary whose writes are fenced: every write there fails with 25006, which the
    /// client guide does not tell clients to retry.
    pub fn read_only_sessions(&self, lag_ms: i64) -> Vec<Member> {
        self.reachable(lag_ms)
            .into_iter()
            .filter(|&m| {
                let n = &self.nodes[idx(m)];
                n.running() && n.read_only && n.data.as_ref().is_some_and(|d| !d.in_recovery)
            })
            .collect()
    }

    /// Run passes (with writes) until `done` holds or `max` passes went by.
    pub fn run_until(&mut self, max: usize, done: impl Fn(&World) -> bool) -> bool {
        for _ in 0..max {
            if done(self) {
                return true;
            }
            self.pass(None, false);
            self.tick(500, true);
        }
        done(self)
    }

    /// Crash a member's server (its data stays).
    pub fn crash(&mut self, m: Member) {
        self.node(m).crashed = true;
    }

    /// Bring a crashed member back.
    pub fn repair(&mut self, m: Member) {
        let n = self.node(m);
        n.crashed = n.data.is_none();
    }

    /// Whether any acknowledged commit is missing on `m`'s data.
    pub fn lost_on(&self, m: Member) -> usize {
        let Some(d) = &self.nodes[idx(m)].data else {
            return self.acked.len();
        };
        self.acked
            .iter()
            .filter(|&&(l, lsn)| !self.contains(d.lineage, d.lsn, l, lsn))
            .count()
    }

    /// Whether history (lineage `have` up to `upto`) contains commit (`l`, `lsn`).
    fn contains(&self, have: u64, upto: u64, l: u64, lsn: u64) -> bool {
        if have == l {
            return lsn <= upto;
        }
        match self.forks.iter().find(|f| f.0 == have) {
            Some(&(_, parent, at)) => self.contains(parent, at.min(upto), l, lsn),
            None => false,
        }
    }

    pub fn request_sync(&mut self, r: SyncRequest) {
        self.requests.sync = Some(Ok(r));
    }

    pub fn request_switchover(&mut self, m: Member) {
        self.requests.switchover_to = Some(Ok(m));
    }
}

/// A world already bootstrapped to Healthy (both members streaming).
pub fn healthy_world(f: impl FnOnce(&mut ReceiptDbPairSpec)) -> World {
    let mut w = World::new(pair(f));
    let ok = w.run_until(80, |w| {
        let s = w.status();
        s.phase == Some(receiptdb_operator::crd::Phase::Healthy)
            && (w.pair.spec.replication.mode == ReplicationMode::External
                || !w.pair.spec.replication.synchronous()
                || s.synchronous_standby.is_some())
    });
    assert!(ok, "bootstrap did not reach Healthy: {:#?}", w.status());
    w
}

/// Actions of one kind in a decision.
pub fn has(d: &Decision, f: impl Fn(&Action) -> bool) -> bool {
    d.actions.iter().any(f)
}

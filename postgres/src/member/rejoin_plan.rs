//! The rejoin decision, from facts alone: how a stale member is re-aligned as a standby of the
//! authoritative one (pg_rewind, only the standby settings, or a fresh clone), why, and which
//! of its WAL that throws away. [`rejoin()`](super::rejoin()) gathers the [`RejoinFacts`] (the
//! stale directory's control data and WAL, the source over SQL) and carries out the plan.

use super::controldata::walfile_name;
use super::timeline::{ancestry, diverge, Divergence};
use crate::actions::Lsn;
use crate::job_report::{Lost, RejoinMethod};

/// What the stale data directory says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StaleFacts {
    pub system_identifier: String,
    /// `pg_controldata`'s cluster state (reported, not decided on).
    pub state: String,
    /// The newest timeline its control file knows of.
    pub timeline: u32,
    /// Its timeline history file's entries (empty on timeline 1, or when the file is missing).
    pub history: Vec<(u32, Lsn)>,
    /// End of its WAL on that timeline (after the last valid record).
    pub end_of_wal: Lsn,
}

/// The authoritative member, as seen over SQL after a `CHECKPOINT`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SourceFacts {
    pub system_identifier: String,
    pub timeline: u32,
    /// Its current WAL position (a standby's: last received).
    pub lsn: Lsn,
    pub segment_size: u64,
    /// Its timeline history file's entries (empty on timeline 1).
    pub history: Vec<(u32, Lsn)>,
}

/// Everything the decision rests on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RejoinFacts {
    /// The data directory is in place. False: at most `<pgdata>.stale` is left, by an
    /// interrupted clone fallback, and only a clone can make the data directory again.
    pub in_place: bool,
    /// The directory analysed (the data directory, else `<pgdata>.stale`), when there is one.
    pub stale: Option<StaleFacts>,
    pub source: SourceFacts,
    /// The source still has the WAL segment of the fork point ([`fork_segment`]); true when
    /// there is no fork to ask about.
    pub source_has_fork_wal: bool,
    /// The source still has the WAL segment the member would resume streaming from, the one
    /// holding its end of WAL ([`resume_segment`]); true when there is none to ask about.
    pub source_has_resume_wal: bool,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RejoinPlan {
    /// `Rewind`; `None`: only the standby settings are written; `Clone`: moved aside, cloned.
    pub method: RejoinMethod,
    /// Why, for the report.
    pub reason: String,
    /// The timeline both shared last, and where they parted (when they forked).
    pub fork_timeline: Option<u32>,
    pub fork_point: Option<Lsn>,
    /// The stale member's WAL that re-alignment discards.
    pub lost: Lost,
}

impl RejoinPlan {
    fn new(method: RejoinMethod, reason: String) -> Self {
        RejoinPlan {
            method,
            reason,
            fork_timeline: None,
            fork_point: None,
            lost: Lost::default(),
        }
    }
}

/// WAL from `from` to `to`.
fn lost(from: Lsn, to: Lsn) -> Lost {
    Lost {
        from: Some(from),
        to: Some(to),
        bytes: to.bytes_since(from),
    }
}

/// Where the two members' histories part, when the stale member is a copy of the source.
fn divergence(stale: &StaleFacts, source: &SourceFacts) -> Option<Divergence> {
    (stale.system_identifier == source.system_identifier).then(|| {
        diverge(
            &ancestry(&stale.history, stale.timeline),
            &ancestry(&source.history, source.timeline),
        )
    })
}

/// The source's WAL segment the re-aligned standby needs first, when they forked: the one
/// holding the fork point, on the timeline the source continued on.
pub(crate) fn fork_segment(stale: &StaleFacts, source: &SourceFacts) -> Option<String> {
    match divergence(stale, source)? {
        Divergence::Forked {
            tli,
            at,
            source_next,
        } => Some(segment_at(source_next.unwrap_or(tli), at, source)),
        Divergence::SameTimeline | Divergence::NoCommonHistory => None,
    }
}

fn segment_at(timeline: u32, at: Lsn, source: &SourceFacts) -> String {
    walfile_name(timeline, at, source.segment_size)
}

/// The source's WAL segment a member that keeps its data (plan `None`) needs first: the one
/// holding its end of WAL, where its streaming resumes. A standby that stayed away past the
/// source's WAL retention (`max_slot_wal_keep_size`, a dropped or invalidated slot) needs a
/// segment the source removed, and would wait for it forever.
pub(crate) fn resume_segment(stale: &StaleFacts, source: &SourceFacts) -> Option<String> {
    match divergence(stale, source)? {
        Divergence::SameTimeline | Divergence::Forked { .. } => {
            let end = stale.end_of_wal;
            Some(segment_at(file_timeline(end, source), end, source))
        }
        Divergence::NoCommonHistory => None,
    }
}

/// The timeline of the source's WAL file holding position `pos`: the timeline the source was
/// on at `pos`, except in the segment where that timeline ended, which the next timeline's
/// file holds (a promotion copies the old timeline's last segment, up to the switch point, into
/// the new timeline's first one, and the old file is renamed or removed).
fn file_timeline(pos: Lsn, source: &SourceFacts) -> u32 {
    let segment = |l: Lsn| l.0 / source.segment_size.max(1);
    let mut ended = source.history.clone();
    ended.sort_unstable();
    for (i, &(tli, switch)) in ended.iter().enumerate() {
        if pos < switch {
            if segment(pos) == segment(switch) {
                return ended.get(i + 1).map_or(source.timeline, |next| next.0);
            }
            return tli;
        }
    }
    source.timeline
}

/// Decide how to re-align. A directory that is not in place is always cloned (the reason
/// still says what its analysis found).
pub(crate) fn plan(facts: &RejoinFacts) -> RejoinPlan {
    let mut plan = match &facts.stale {
        None => RejoinPlan::new(RejoinMethod::Clone, "no data directory to rewind".into()),
        Some(stale) => decide(stale, &facts.source, facts),
    };
    if !facts.in_place && facts.stale.is_some() {
        plan.method = RejoinMethod::Clone;
        plan.reason = format!(
            "finishing an interrupted clone (only <pgdata>.stale is left; it had: {})",
            plan.reason
        );
    }
    plan
}

fn decide(stale: &StaleFacts, src: &SourceFacts, facts: &RejoinFacts) -> RejoinPlan {
    let source_has_fork_wal = facts.source_has_fork_wal;
    let resume_gone = || {
        let needed = resume_segment(stale, src).unwrap_or_default();
        format!(
            "the source no longer has the WAL this member would resume from ({}, segment {needed} is gone)",
            stale.end_of_wal
        )
    };
    let (tli, end) = (stale.timeline, stale.end_of_wal);
    let Some(divergence) = divergence(stale, src) else {
        return RejoinPlan::new(
            RejoinMethod::Clone,
            format!(
                "different system identifier ({} here, {} on the source): not a copy of it",
                stale.system_identifier, src.system_identifier
            ),
        );
    };
    match divergence {
        Divergence::NoCommonHistory => RejoinPlan::new(
            RejoinMethod::Clone,
            format!(
                "no timeline in common (here {tli}, source {})",
                src.timeline
            ),
        ),
        Divergence::SameTimeline if end > src.lsn => RejoinPlan {
            lost: lost(src.lsn, end),
            ..RejoinPlan::new(
                RejoinMethod::Clone,
                format!(
                    "ahead of the source on the same timeline {tli} ({end} > {})",
                    src.lsn
                ),
            )
        },
        Divergence::SameTimeline if !facts.source_has_resume_wal => {
            RejoinPlan::new(RejoinMethod::Clone, resume_gone())
        }
        Divergence::SameTimeline => RejoinPlan::new(
            RejoinMethod::None,
            format!("same timeline {tli}, at or behind the source"),
        ),
        Divergence::Forked {
            tli: common,
            at,
            source_next,
        } => {
            let (method, reason) = if !source_has_fork_wal {
                let needed = segment_at(source_next.unwrap_or(common), at, src);
                (
                    RejoinMethod::Clone,
                    format!("the source no longer has WAL from the fork point {at} (segment {needed} is gone)"),
                )
            } else if end > at {
                (
                    RejoinMethod::Rewind,
                    format!("diverged from timeline {common} at {at}; WAL here ends at {end}"),
                )
            } else if !facts.source_has_resume_wal {
                (RejoinMethod::Clone, resume_gone())
            } else {
                (
                    RejoinMethod::None,
                    format!(
                        "WAL here ends at {end}, not past the fork point {at}: nothing to rewind"
                    ),
                )
            };
            RejoinPlan {
                method,
                reason,
                fork_timeline: Some(common),
                fork_point: Some(at),
                lost: if end > at {
                    lost(at, end)
                } else {
                    Lost::default()
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RejoinMethod as M;

    const SEG: u64 = 16 << 20;

    fn l(s: &str) -> Lsn {
        s.parse().unwrap()
    }

    fn history(h: &[(u32, &str)]) -> Vec<(u32, Lsn)> {
        h.iter().map(|&(t, at)| (t, l(at))).collect()
    }

    fn stale(system: &str, timeline: u32, h: &[(u32, &str)], end: &str) -> Option<StaleFacts> {
        Some(StaleFacts {
            system_identifier: system.into(),
            state: "shut down".into(),
            timeline,
            history: history(h),
            end_of_wal: l(end),
        })
    }

    fn source(timeline: u32, h: &[(u32, &str)], lsn: &str) -> SourceFacts {
        SourceFacts {
            system_identifier: "7000".into(),
            timeline,
            lsn: l(lsn),
            segment_size: SEG,
            history: history(h),
        }
    }

    /// A failover: the source was promoted to timeline 2 at 0/3000148.
    fn promoted() -> SourceFacts {
        source(2, &[(1, "0/3000148")], "0/4000000")
    }

    fn facts(stale: Option<StaleFacts>, source: SourceFacts) -> RejoinFacts {
        RejoinFacts {
            in_place: true,
            stale,
            source,
            source_has_fork_wal: true,
            source_has_resume_wal: true,
        }
    }

    /// The expected plan: method, reason, fork (timeline, point), lost (from, to, bytes).
    fn want(
        method: RejoinMethod,
        reason: &str,
        fork: Option<(u32, &str)>,
        lost: Option<(&str, &str, u64)>,
    ) -> RejoinPlan {
        RejoinPlan {
            method,
            reason: reason.into(),
            fork_timeline: fork.map(|f| f.0),
            fork_point: fork.map(|f| l(f.1)),
            lost: lost.map_or_else(Lost::default, |(from, to, bytes)| Lost {
                from: Some(l(from)),
                to: Some(l(to)),
                bytes,
            }),
        }
    }

    #[test]
    fn rejoin_plans() {
        let gone = RejoinFacts {
            source_has_fork_wal: false,
            ..facts(stale("7000", 1, &[], "0/3000500"), promoted())
        };
        let set_aside = RejoinFacts {
            in_place: false,
            ..facts(stale("7000", 1, &[], "0/3000500"), promoted())
        };
        let cases: Vec<(&str, RejoinFacts, RejoinPlan)> = vec![
            (
                "another system in its place",
                facts(stale("9999", 1, &[], "0/3000500"), promoted()),
                want(
                    M::Clone,
                    "different system identifier (9999 here, 7000 on the source): not a copy of it",
                    None,
                    None,
                ),
            ),
            (
                "no timeline in common (its history file is gone)",
                facts(stale("7000", 2, &[], "0/5000000"), promoted()),
                want(M::Clone, "no timeline in common (here 2, source 2)", None, None),
            ),
            (
                "same timeline, behind the source (a standby that fell behind)",
                facts(
                    stale("7000", 1, &[], "0/3000000"),
                    source(1, &[], "0/5000000"),
                ),
                want(
                    M::None,
                    "same timeline 1, at or behind the source",
                    None,
                    None,
                ),
            ),
            (
                "same timeline, behind, but the source removed the WAL it would resume from",
                RejoinFacts {
                    source_has_resume_wal: false,
                    ..facts(
                        stale("7000", 1, &[], "0/3000000"),
                        source(1, &[], "0/9000000"),
                    )
                },
                want(
                    M::Clone,
                    "the source no longer has the WAL this member would resume from \
                     (0/3000000, segment 000000010000000000000003 is gone)",
                    None,
                    None,
                ),
            ),
            (
                "ended before the fork point, the source removed the WAL it would resume from",
                RejoinFacts {
                    source_has_resume_wal: false,
                    ..facts(stale("7000", 1, &[], "0/2000100"), promoted())
                },
                want(
                    M::Clone,
                    "the source no longer has the WAL this member would resume from \
                     (0/2000100, segment 000000010000000000000002 is gone)",
                    Some((1, "0/3000148")),
                    None,
                ),
            ),
            (
                "same timeline, exactly where the source is",
                facts(
                    stale("7000", 1, &[], "0/5000000"),
                    source(1, &[], "0/5000000"),
                ),
                want(
                    M::None,
                    "same timeline 1, at or behind the source",
                    None,
                    None,
                ),
            ),
            (
                "same timeline but ahead of the source: what the source never had is lost",
                facts(
                    stale("7000", 1, &[], "0/5000100"),
                    source(1, &[], "0/5000000"),
                ),
                want(
                    M::Clone,
                    "ahead of the source on the same timeline 1 (0/5000100 > 0/5000000)",
                    None,
                    Some(("0/5000000", "0/5000100", 0x100)),
                ),
            ),
            (
                "diverged after a failover, the source has the WAL since the fork",
                facts(stale("7000", 1, &[], "0/3000500"), promoted()),
                want(
                    M::Rewind,
                    "diverged from timeline 1 at 0/3000148; WAL here ends at 0/3000500",
                    Some((1, "0/3000148")),
                    Some(("0/3000148", "0/3000500", 0x3B8)),
                ),
            ),
            (
                "diverged, the source's WAL since the fork is gone",
                gone,
                want(
                    M::Clone,
                    "the source no longer has WAL from the fork point 0/3000148 \
                     (segment 000000020000000000000003 is gone)",
                    Some((1, "0/3000148")),
                    Some(("0/3000148", "0/3000500", 0x3B8)),
                ),
            ),
            (
                "a cleanly switched-over former primary: ended exactly at the fork",
                facts(stale("7000", 1, &[], "0/3000148"), promoted()),
                want(
                    M::None,
                    "WAL here ends at 0/3000148, not past the fork point 0/3000148: nothing to rewind",
                    Some((1, "0/3000148")),
                    None,
                ),
            ),
            (
                "ended before the fork point",
                facts(stale("7000", 1, &[], "0/3000000"), promoted()),
                want(
                    M::None,
                    "WAL here ends at 0/3000000, not past the fork point 0/3000148: nothing to rewind",
                    Some((1, "0/3000148")),
                    None,
                ),
            ),
            (
                "both left timeline 1, the stale member later: the fork is the source's switch",
                facts(
                    stale("7000", 3, &[(1, "0/5000000")], "0/6000000"),
                    source(2, &[(1, "0/4000000")], "0/7000000"),
                ),
                want(
                    M::Rewind,
                    "diverged from timeline 1 at 0/4000000; WAL here ends at 0/6000000",
                    Some((1, "0/4000000")),
                    Some(("0/4000000", "0/6000000", 0x200_0000)),
                ),
            ),
            (
                "only the stale member moved on (it promoted itself), the source stayed",
                facts(
                    stale("7000", 2, &[(1, "0/3000148")], "0/3000500"),
                    source(1, &[], "0/3500000"),
                ),
                want(
                    M::Rewind,
                    "diverged from timeline 1 at 0/3000148; WAL here ends at 0/3000500",
                    Some((1, "0/3000148")),
                    Some(("0/3000148", "0/3000500", 0x3B8)),
                ),
            ),
            (
                "no data directory at all",
                RejoinFacts {
                    in_place: false,
                    ..facts(None, promoted())
                },
                want(M::Clone, "no data directory to rewind", None, None),
            ),
            (
                "only <pgdata>.stale is left: cloned, the reason says so and what it had",
                set_aside,
                want(
                    M::Clone,
                    "finishing an interrupted clone (only <pgdata>.stale is left; it had: \
                     diverged from timeline 1 at 0/3000148; WAL here ends at 0/3000500)",
                    Some((1, "0/3000148")),
                    Some(("0/3000148", "0/3000500", 0x3B8)),
                ),
            ),
        ];
        for (name, facts, want) in cases {
            assert_eq!(plan(&facts), want, "{name}");
        }
    }

    #[test]
    fn the_segment_asked_for_is_the_fork_points_on_the_sources_new_timeline() {
        let failover = stale("7000", 1, &[], "0/3000500").unwrap();
        assert_eq!(
            fork_segment(&failover, &promoted()).as_deref(),
            Some("000000020000000000000003")
        );
        // The source stayed on timeline 1: its own segment of the fork point.
        let promoted_itself = stale("7000", 2, &[(1, "0/3000148")], "0/3000500").unwrap();
        assert_eq!(
            fork_segment(&promoted_itself, &source(1, &[], "0/3500000")).as_deref(),
            Some("000000010000000000000003")
        );
        // No fork, nothing to ask.
        assert_eq!(fork_segment(&failover, &source(1, &[], "0/4000000")), None);
        let other = stale("9999", 1, &[], "0/3000500").unwrap();
        assert_eq!(fork_segment(&other, &promoted()), None);
    }

    #[test]
    fn the_resume_segment_is_on_the_timeline_whose_file_holds_the_end_of_wal() {
        let seg = |end: &str, src: SourceFacts| {
            resume_segment(&stale("7000", 1, &[], end).unwrap(), &src)
        };
        // Same timeline: the segment holding the end.
        assert_eq!(
            seg("0/3000000", source(1, &[], "0/9000000")).as_deref(),
            Some("000000010000000000000003")
        );
        // Before the segment of the switch: still the old timeline's file.
        assert_eq!(
            seg("0/2FFFFFF", promoted()).as_deref(),
            Some("000000010000000000000002")
        );
        // In the segment of the switch (before or at it): the new timeline's copy.
        for end in ["0/3000000", "0/3000148"] {
            assert_eq!(
                seg(end, promoted()).as_deref(),
                Some("000000020000000000000003"),
                "{end}"
            );
        }
        // Two promotions: 1 ended at 0/3000148, 2 at 0/5000010.
        let twice = source(3, &[(1, "0/3000148"), (2, "0/5000010")], "0/6000000");
        assert_eq!(
            seg("0/4000000", twice.clone()).as_deref(),
            Some("000000020000000000000004")
        );
        assert_eq!(
            seg("0/5000000", twice).as_deref(),
            Some("000000030000000000000005")
        );
        // Another system: nothing to ask.
        assert_eq!(
            resume_segment(&stale("9999", 1, &[], "0/3000000").unwrap(), &promoted()),
            None
        );
    }
}

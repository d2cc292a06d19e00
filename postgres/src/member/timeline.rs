//! Timeline histories and where two members' histories diverge (the fork point), computed the
//! way pg_rewind does, so the rejoin report can say what the stale member had that the
//! authoritative one lacks before anything is discarded.

use crate::actions::Lsn;

/// One timeline in a member's ancestry and where the member left it (None: still on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub tli: u32,
    pub end: Option<Lsn>,
}

/// Parse a timeline history file (`00000003.history`): lines `parentTLI<TAB>switchpoint<TAB>reason`.
pub(crate) fn parse_history(text: &str) -> Vec<(u32, Lsn)> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let tli = f.next()?.parse().ok()?;
            let lsn = f.next()?.parse().ok()?;
            Some((tli, lsn))
        })
        .collect()
}

/// A member's ancestry: the history file's entries, then its current timeline (open-ended).
pub(crate) fn ancestry(history: &[(u32, Lsn)], current: u32) -> Vec<Span> {
    let mut v: Vec<Span> = history
        .iter()
        .map(|&(tli, end)| Span {
            tli,
            end: Some(end),
        })
        .collect();
    v.push(Span {
        tli: current,
        end: None,
    });
    v
}

/// How two ancestries relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Divergence {
    /// Both are on the same timeline with the same history: no fork; one may be behind.
    SameTimeline,
    /// They share timeline `tli` up to `at`, where at least one of them left it. `source_next`
    /// is the timeline the source continued on (None when only the stale member moved on).
    Forked {
        tli: u32,
        at: Lsn,
        source_next: Option<u32>,
    },
    /// No timeline in common (never the same cluster, or histories lost).
    NoCommonHistory,
}

/// Compare the stale member's ancestry with the source's.
pub(crate) fn diverge(stale: &[Span], source: &[Span]) -> Divergence {
    let mut last_common = None;
    for (i, (a, b)) in stale.iter().zip(source.iter()).enumerate() {
        if a.tli != b.tli {
            break;
        }
        last_common = Some(i);
        if a.end != b.end {
            break;
        }
    }
    let Some(i) = last_common else {
        return Divergence::NoCommonHistory;
    };
    let (a, b) = (stale[i], source[i]);
    match (a.end, b.end) {
        (None, None) => Divergence::SameTimeline,
        (x, y) => {
            let at = match (x, y) {
                (Some(x), Some(y)) => x.min(y),
                (Some(x), None) | (None, Some(x)) => x,
                (None, None) => Lsn(0),
            };
            Divergence::Forked {
                tli: a.tli,
                at,
                source_next: source.get(i + 1).map(|s| s.tli),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(s: &str) -> Lsn {
        s.parse().unwrap()
    }

    #[test]
    fn parses_history_files() {
        let h = parse_history("1\t0/3000148\tno recovery target specified\n\n2\t0/5000000\tx\n");
        assert_eq!(h, vec![(1, l("0/3000148")), (2, l("0/5000000"))]);
    }

    #[test]
    fn failover_fork() {
        let stale = ancestry(&[], 1);
        let source = ancestry(&[(1, l("0/3000148"))], 2);
        assert_eq!(
            diverge(&stale, &source),
            Divergence::Forked {
                tli: 1,
                at: l("0/3000148"),
                source_next: Some(2)
            }
        );
    }

    #[test]
    fn same_timeline_and_unrelated() {
        assert_eq!(
            diverge(&ancestry(&[], 1), &ancestry(&[], 1)),
            Divergence::SameTimeline
        );
        assert_eq!(
            diverge(&ancestry(&[], 2), &ancestry(&[], 1)),
            Divergence::NoCommonHistory
        );
    }

    #[test]
    fn both_moved_on_from_a_common_timeline() {
        // stale left tli 1 at 0/5000000 (promoted itself), source left it at 0/4000000.
        let stale = ancestry(&[(1, l("0/5000000"))], 3);
        let source = ancestry(&[(1, l("0/4000000"))], 2);
        assert_eq!(
            diverge(&stale, &source),
            Divergence::Forked {
                tli: 1,
                at: l("0/4000000"),
                source_next: Some(2)
            }
        );
        // source is a descendant of the stale member's history: stale on 2, source on 3.
        let stale = ancestry(&[(1, l("0/4000000"))], 2);
        let source = ancestry(&[(1, l("0/4000000")), (2, l("0/6000000"))], 3);
        assert_eq!(
            diverge(&stale, &source),
            Divergence::Forked {
                tli: 2,
                at: l("0/6000000"),
                source_next: Some(3)
            }
        );
    }
}

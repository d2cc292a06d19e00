//! What the agent knows about a pod's containers, and the pod status it reports from that:
//! phase, conditions (PodReadyToStartContainers, Initialized, ContainersReady, Ready; the
//! scheduler's and other writers' conditions are kept), addresses, start time and every
//! container's state, restart count, readiness and termination message.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

/// A container's state, as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Timestamp,
    },
    Terminated {
        exit_code: i32,
        signal: Option<i32>,
        reason: String,
        message: Option<String>,
        started_at: Timestamp,
        finished_at: Timestamp,
    },
}

impl State {
    fn json(&self) -> Value {
        let t = |ts: &Timestamp| ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        match self {
            State::Waiting { reason, message } => {
                json!({"waiting": {"reason": reason, "message": message}})
            }
            State::Running { started_at } => json!({"running": {"startedAt": t(started_at)}}),
            State::Terminated {
                exit_code,
                signal,
                reason,
                message,
                started_at,
                finished_at,
            } => json!({"terminated": {
                "exitCode": exit_code, "signal": signal, "reason": reason, "message": message,
                "startedAt": t(started_at), "finishedAt": t(finished_at),
            }}),
        }
    }
}

/// One container's record.
#[derive(Debug, Clone)]
pub struct ContainerRecord {
    pub name: String,
    pub image: String,
    pub state: State,
    pub last: Option<State>,
    pub restart_count: i32,
    /// Readiness (probe, or running without one).
    pub ready: bool,
    /// Past its startup probe (or running without one).
    pub started: bool,
    /// `<runtime>://<node>/<pid>` of the running (or last) process.
    pub container_id: Option<String>,
    /// Will not run again (terminated for good under the pod's restart policy).
    pub done: bool,
}

impl ContainerRecord {
    /// A container that has not started.
    pub fn waiting(name: &str, image: &str, reason: &str) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            state: State::Waiting {
                reason: reason.into(),
                message: None,
            },
            last: None,
            restart_count: 0,
            ready: false,
            started: false,
            container_id: None,
            done: false,
        }
    }

    fn json(&self, terminal: bool) -> Value {
        let mut v = json!({
            "name": self.name,
            "image": self.image,
            "imageID": format!("localcluster://{}", self.image),
            "ready": self.ready && !terminal,
            "started": self.started && matches!(self.state, State::Running { .. }),
            "restartCount": self.restart_count,
            "state": self.state.json(),
        });
        if let Some(id) = &self.container_id {
            v["containerID"] = json!(id);
        }
        v["lastState"] = self.last.as_ref().map(State::json).unwrap_or(json!({}));
        v
    }

    fn succeeded(&self) -> bool {
        matches!(self.state, State::Terminated { exit_code: 0, .. })
    }
}

/// Everything known about a pod's run on this node.
#[derive(Debug, Clone, Default)]
pub struct PodRecord {
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub start_time: Option<Timestamp>,
    /// The sandbox (network, volumes) is ready.
    pub sandbox_ready: bool,
    pub init: Vec<ContainerRecord>,
    pub main: Vec<ContainerRecord>,
    /// Every init container succeeded.
    pub initialized: bool,
    /// An init container failed for good (restartPolicy Never).
    pub init_failed: bool,
    /// Transition times of the conditions this agent owns.
    pub transitions: BTreeMap<String, (bool, Timestamp)>,
}

/// The pod's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }

    /// No container will run again.
    pub fn terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

impl PodRecord {
    /// The phase, by the kubelet's rules.
    pub fn phase(&self) -> Phase {
        if self.init_failed {
            return Phase::Failed;
        }
        if !self.initialized || self.main.is_empty() {
            return Phase::Pending;
        }
        let never_started = self.main.iter().any(|c| {
            matches!(c.state, State::Waiting { .. }) && c.last.is_none() && c.restart_count == 0
        });
        if never_started {
            return Phase::Pending;
        }
        if self.main.iter().all(|c| c.done) {
            return if self.main.iter().all(ContainerRecord::succeeded) {
                Phase::Succeeded
            } else {
                Phase::Failed
            };
        }
        Phase::Running
    }

    fn condition(&mut self, type_: &str, ok: bool, now: Timestamp) -> Value {
        let entry = self
            .transitions
            .entry(type_.to_string())
            .or_insert((ok, now));
        if entry.0 != ok {
            *entry = (ok, now);
        }
        json!({
            "type": type_,
            "status": if ok { "True" } else { "False" },
            "lastProbeTime": null,
            "lastTransitionTime": entry.1.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        })
    }

    /// The status to write (a JSON merge patch's `status`): conditions of other writers on
    /// `pod` are kept.
    pub fn status(&mut self, pod: &Pod, now: Timestamp) -> Value {
        let phase = self.phase();
        let terminal = phase.terminal();
        let containers_ready = !terminal
            && self.initialized
            && !self.main.is_empty()
            && self.main.iter().all(|c| c.ready);
        let sandbox = self.sandbox_ready && !terminal;
        let initialized = self.initialized;
        let mut conditions: Vec<Value> = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !OWNED.contains(&c.type_.as_str()))
            .filter_map(|c| serde_json::to_value(c).ok())
            .collect();
        conditions.push(self.condition("PodReadyToStartContainers", sandbox, now));
        conditions.push(self.condition("Initialized", initialized, now));
        conditions.push(self.condition("ContainersReady", containers_ready, now));
        conditions.push(self.condition("Ready", containers_ready, now));
        let mut s = json!({
            "phase": phase.as_str(),
            "conditions": conditions,
            "hostIP": self.host_ip,
            "hostIPs": [{"ip": self.host_ip}],
            "initContainerStatuses": self.init.iter().map(|c| c.json(terminal)).collect::<Vec<_>>(),
            "containerStatuses": self.main.iter().map(|c| c.json(terminal)).collect::<Vec<_>>(),
            "qosClass": pod.status.as_ref().and_then(|s| s.qos_class.clone()),
        });
        if let Some(ip) = &self.pod_ip {
            s["podIP"] = json!(ip);
            s["podIPs"] = json!([{"ip": ip}]);
        }
        if let Some(t) = self.start_time {
            s["startTime"] = json!(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
        s
    }
}

/// The conditions this agent writes.
const OWNED: [&str; 4] = [
    "PodReadyToStartContainers",
    "Initialized",
    "ContainersReady",
    "Ready",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn term(code: i32) -> State {
        State::Terminated {
            exit_code: code,
            signal: None,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: Timestamp::UNIX_EPOCH,
            finished_at: Timestamp::UNIX_EPOCH,
        }
    }

    fn record(states: &[(State, bool)]) -> PodRecord {
        PodRecord {
            initialized: true,
            sandbox_ready: true,
            main: states
                .iter()
                .enumerate()
                .map(|(i, (s, done))| ContainerRecord {
                    state: s.clone(),
                    done: *done,
                    ..ContainerRecord::waiting(&format!("c{i}"), "img", "ContainerCreating")
                })
                .collect(),
            ..PodRecord::default()
        }
    }

    #[test]
    fn phases() {
        let running = State::Running {
            started_at: Timestamp::UNIX_EPOCH,
        };
        assert_eq!(PodRecord::default().phase(), Phase::Pending);
        assert_eq!(record(&[(running.clone(), false)]).phase(), Phase::Running);
        assert_eq!(record(&[(term(0), true)]).phase(), Phase::Succeeded);
        assert_eq!(
            record(&[(term(0), true), (term(3), true)]).phase(),
            Phase::Failed
        );
        // Exited, but restarting (restartPolicy Always or OnFailure).
        assert_eq!(record(&[(term(3), false)]).phase(), Phase::Running);
        let mut r = record(&[(running, false)]);
        r.init_failed = true;
        assert_eq!(r.phase(), Phase::Failed);
    }

    #[test]
    fn status_keeps_other_conditions_and_nulls_other_states() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "status": {"conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True"},
            ]},
        }))
        .unwrap();
        let mut r = record(&[(term(0), true)]);
        r.main[0].ready = true;
        let s = r.status(&pod, Timestamp::UNIX_EPOCH);
        let types: Vec<&str> = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "PodScheduled",
                "PodReadyToStartContainers",
                "Initialized",
                "ContainersReady",
                "Ready"
            ]
        );
        assert_eq!(s["phase"], "Succeeded");
        assert_eq!(
            s["conditions"][4]["status"], "False",
            "a finished pod is not ready"
        );
        assert_eq!(
            s["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            0
        );
        assert!(s["containerStatuses"][0]["state"].get("running").is_none());
    }
}

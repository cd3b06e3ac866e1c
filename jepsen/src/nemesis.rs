//! The nemesis: faults on a schedule drawn from the run's seed, each
//! applied, held for a jittered interval and healed, and recorded in
//! `nemesis.jsonl` as it was actually applied.
//!
//! Two lanes run at once, each with its own seeded generator:
//! - *faults*: partitions (nftables drops, verified with an open and a new
//!   TCP connection across the cut), process kills and pauses, one at a
//!   time;
//! - *operations*: membership changes (add a node, remove a replica) and
//!   switchover requests, which therefore land while faults are in force.
//!
//! Targets that depend on the cluster's state (the primary, a replica) are
//! chosen when the fault is applied, from the daemons' HTTP API. A fault
//! that cannot be applied (no primary to isolate) is skipped and logged,
//! not recorded. Every fault is undone by [`Nemesis::heal_all`] at the end,
//! whatever the lanes were doing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use nix::sys::signal::Signal;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::hosts::{Cluster, children_of, signal};
use crate::net;
use crate::record::Fault;
use crate::workload::{Lines, Recorder};

/// One kind of fault or operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// The primary cut off from every other member.
    PartitionPrimary,
    /// One replica cut off from every other member.
    PartitionReplica,
    /// The members split at random into a minority and a majority.
    PartitionHalves,
    /// The primary hears the others, they do not hear it.
    PartitionOneWay,
    /// Five or more members: each sees a different majority.
    PartitionMajoritiesRing,
    /// Five or more members: two halves that only one member joins.
    PartitionBridge,
    /// SIGKILL the primary's daemon and postmaster; both restart at heal.
    KillPrimary,
    /// SIGKILL the primary's postmaster only; its daemon restarts it.
    KillPostmaster,
    /// SIGKILL the primary's daemon and postmaster, then the daemon of the
    /// member elected in its place as soon as the election shows.
    KillPromotion,
    /// SIGSTOP the primary's daemon; SIGCONT at heal.
    PauseDaemon,
    /// SIGSTOP the primary's postmaster and its children (a hung server).
    PausePostmaster,
    /// Add a fresh member on a free host.
    AddNode,
    /// Remove a replica and stop it.
    RemoveNode,
    /// `raftctl switchover`.
    Switchover,
}

use Kind::*;

pub const ALL: [Kind; 14] = [
    PartitionPrimary,
    PartitionReplica,
    PartitionHalves,
    PartitionOneWay,
    PartitionMajoritiesRing,
    PartitionBridge,
    KillPrimary,
    KillPostmaster,
    KillPromotion,
    PauseDaemon,
    PausePostmaster,
    AddNode,
    RemoveNode,
    Switchover,
];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            PartitionPrimary => "partition-primary",
            PartitionReplica => "partition-replica",
            PartitionHalves => "partition-halves",
            PartitionOneWay => "partition-one-way",
            PartitionMajoritiesRing => "partition-majorities-ring",
            PartitionBridge => "partition-bridge",
            KillPrimary => "kill-primary",
            KillPostmaster => "kill-postmaster",
            KillPromotion => "kill-promotion",
            PauseDaemon => "pause-daemon",
            PausePostmaster => "pause-postmaster",
            AddNode => "add-node",
            RemoveNode => "remove-node",
            Switchover => "switchover",
        }
    }

    pub fn family(self) -> &'static str {
        match self {
            PartitionPrimary
            | PartitionReplica
            | PartitionHalves
            | PartitionOneWay
            | PartitionMajoritiesRing
            | PartitionBridge => "partition",
            KillPrimary | KillPostmaster | KillPromotion => "kill",
            PauseDaemon | PausePostmaster => "pause",
            AddNode | RemoveNode => "membership",
            Switchover => "switchover",
        }
    }

    /// Faults run one at a time in the fault lane; membership changes and
    /// switchovers in the operations lane.
    pub fn is_operation(self) -> bool {
        matches!(self.family(), "membership" | "switchover")
    }

    /// Members the kind needs.
    fn min_members(self) -> usize {
        match self {
            PartitionMajoritiesRing | PartitionBridge => 5,
            _ => 2,
        }
    }
}

/// Parses `--nemesis`: families (`partition`, `kill`, `pause`,
/// `membership`, `switchover`), single kinds (`partition-primary`, …),
/// `all` or `none`, comma-separated.
pub fn parse_kinds(spec: &str) -> anyhow::Result<BTreeSet<Kind>> {
    let mut kinds = BTreeSet::new();
    for word in spec.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        match word {
            "none" => {}
            "all" => kinds.extend(ALL),
            w => {
                let matched: Vec<Kind> = ALL.iter().copied().filter(|k| k.family() == w || k.name() == w).collect();
                if matched.is_empty() {
                    let names: Vec<&str> = ALL.iter().map(|k| k.name()).collect();
                    bail!(
                        "unknown nemesis {w:?}: families are partition, kill, pause, membership, switchover; \
                         kinds are {}",
                        names.join(", ")
                    );
                }
                kinds.extend(matched);
            }
        }
    }
    Ok(kinds)
}

/// A directed cut: `receiver` drops every packet from `sender` (slots).
pub type Cut = (usize, usize);

/// The cuts of a partition kind over `members` (slots), given the primary,
/// and the members it targets (the isolated one, the minority, the bridge);
/// `None` when the kind does not apply. Symmetric cuts appear both ways.
pub fn cuts(
    kind: Kind,
    members: &[usize],
    primary: Option<usize>,
    rng: &mut impl Rng,
) -> Option<(Vec<Cut>, Vec<usize>)> {
    let both = |a: &[usize], b: &[usize]| {
        let mut cuts = Vec::new();
        for &x in a {
            for &y in b {
                cuts.push((x, y));
                cuts.push((y, x));
            }
        }
        cuts
    };
    if members.len() < kind.min_members() {
        return None;
    }
    let others = |x: usize| members.iter().copied().filter(|m| *m != x).collect::<Vec<_>>();
    let (cuts, targets) = match kind {
        PartitionPrimary => {
            let p = primary?;
            (both(&[p], &others(p)), vec![p])
        }
        PartitionReplica => {
            let replicas: Vec<usize> = members.iter().copied().filter(|m| Some(*m) != primary).collect();
            let r = *replicas.choose(rng)?;
            (both(&[r], &others(r)), vec![r])
        }
        PartitionHalves => {
            let mut shuffled = members.to_vec();
            shuffled.shuffle(rng);
            let (minority, majority) = shuffled.split_at(members.len() / 2);
            (both(minority, majority), minority.to_vec())
        }
        PartitionOneWay => {
            let p = primary?;
            (others(p).into_iter().map(|x| (x, p)).collect(), vec![p])
        }
        PartitionMajoritiesRing => {
            let mut ring = members.to_vec();
            ring.shuffle(rng);
            let n = ring.len();
            let majority = n / 2 + 1;
            // Each member sees the `reach` nearest on either side: itself
            // and those make at least a majority, different for each.
            let reach = majority / 2;
            let mut cuts = Vec::new();
            for i in 0..n {
                for j in 0..n {
                    let d = (i + n - j) % n;
                    let d = d.min(n - d);
                    if i != j && d > reach {
                        cuts.push((ring[i], ring[j]));
                    }
                }
            }
            (cuts, ring)
        }
        PartitionBridge => {
            let mut shuffled = members.to_vec();
            shuffled.shuffle(rng);
            let rest = &shuffled[1..];
            let (a, b) = rest.split_at(rest.len() / 2);
            (both(a, b), vec![shuffled[0]])
        }
        _ => return None,
    };
    (!cuts.is_empty()).then_some((cuts, targets))
}

/// How to undo a fault.
#[derive(Debug)]
enum Undo {
    /// Remove the `inet jepsen` table from these slots' namespaces.
    Heal(Vec<usize>),
    /// Start the daemons of these slots again.
    Restart(Vec<usize>),
    /// SIGCONT these pids (and forget them on their slot).
    Resume(usize, Vec<i32>),
    Nothing,
}

/// A fault in force.
#[derive(Debug)]
struct Active {
    id: u64,
    fault: Fault,
    undo: Undo,
    slots: Vec<usize>,
}

/// The nemesis of one run.
pub struct Nemesis {
    cluster: Arc<Cluster>,
    recorder: Arc<Recorder>,
    out: Arc<Lines>,
    /// Where HAProxy's configuration lives (re-rendered after membership
    /// changes).
    run_dir: std::path::PathBuf,
    kinds: BTreeSet<Kind>,
    interval: Duration,
    active: Mutex<Vec<Active>>,
    next_id: AtomicU64,
    /// Faults applied so far, by kind.
    pub applied: Mutex<BTreeMap<String, u64>>,
}

fn jitter(rng: &mut impl Rng, interval: Duration) -> Duration {
    interval.mul_f64(rng.random_range(0.5..1.5))
}

impl Nemesis {
    pub fn new(
        cluster: Arc<Cluster>,
        recorder: Arc<Recorder>,
        out: Arc<Lines>,
        run_dir: std::path::PathBuf,
        kinds: BTreeSet<Kind>,
        interval: Duration,
    ) -> Nemesis {
        Nemesis {
            cluster,
            recorder,
            out,
            run_dir,
            kinds,
            interval,
            active: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            applied: Mutex::new(BTreeMap::new()),
        }
    }

    /// What is in force now, for the progress line.
    pub fn current(&self) -> Vec<String> {
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|a| format!("{} {}", a.fault.kind, a.fault.targets.join("+")))
            .collect()
    }

    /// Runs both lanes until `stop`; faults still in force stay for
    /// [`Nemesis::heal_all`].
    pub async fn run(self: Arc<Self>, seed: u64, stop: tokio::sync::watch::Receiver<bool>) {
        let faults: Vec<Kind> = self.kinds.iter().copied().filter(|k| !k.is_operation()).collect();
        let ops: Vec<Kind> = self.kinds.iter().copied().filter(|k| k.is_operation()).collect();
        let a = {
            let me = Arc::clone(&self);
            let stop = stop.clone();
            tokio::spawn(async move { me.fault_lane(faults, ChaCha8Rng::seed_from_u64(seed), stop).await })
        };
        let b = {
            let me = Arc::clone(&self);
            let rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6f70_6572_6174_696f);
            tokio::spawn(async move { me.operation_lane(ops, rng, stop).await })
        };
        let _ = a.await;
        let _ = b.await;
    }

    /// Sleeps `d`; false when `stop` came first.
    async fn sleep(stop: &mut tokio::sync::watch::Receiver<bool>, d: Duration) -> bool {
        if *stop.borrow() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => !*stop.borrow(),
            _ = stop.changed() => false,
        }
    }

    async fn fault_lane(&self, kinds: Vec<Kind>, mut rng: ChaCha8Rng, mut stop: tokio::sync::watch::Receiver<bool>) {
        if kinds.is_empty() {
            return;
        }
        loop {
            if !Self::sleep(&mut stop, jitter(&mut rng, self.interval)).await {
                return;
            }
            let members = self.cluster.members().len();
            let fits: Vec<Kind> = kinds.iter().copied().filter(|k| members >= k.min_members()).collect();
            let Some(&kind) = fits.choose(&mut rng) else { continue };
            let id = match self.apply(kind, &mut rng).await {
                Ok(Some(id)) => id,
                Ok(None) => continue,
                Err(e) => {
                    eprintln!("nemesis: failed to apply {}: {e:#}", kind.name());
                    continue;
                }
            };
            let held = Self::sleep(&mut stop, jitter(&mut rng, self.interval)).await;
            if !held {
                // The final phase heals it.
                return;
            }
            self.heal(id).await;
        }
    }

    async fn operation_lane(
        &self,
        kinds: Vec<Kind>,
        mut rng: ChaCha8Rng,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        if kinds.is_empty() {
            return;
        }
        let membership = kinds.contains(&AddNode) || kinds.contains(&RemoveNode);
        let switchover = kinds.contains(&Switchover);
        loop {
            if !Self::sleep(&mut stop, jitter(&mut rng, self.interval.mul_f64(1.5))).await {
                return;
            }
            let do_membership = membership && (!switchover || rng.random_bool(0.5));
            let kind = if do_membership {
                if self.cluster.members().len() > self.cluster.nodes { RemoveNode } else { AddNode }
            } else {
                Switchover
            };
            if !self.kinds.contains(&kind) {
                continue;
            }
            let result = match kind {
                AddNode => self.add_node().await,
                RemoveNode => self.remove_node(&mut rng).await,
                _ => self.switchover(&mut rng).await,
            };
            if let Err(e) = result {
                eprintln!("nemesis: {} failed: {e:#}", kind.name());
            }
        }
    }

    fn names(&self, slots: &[usize]) -> Vec<String> {
        slots.iter().map(|s| self.cluster.host(*s).name().unwrap_or_else(|| format!("slot{s}"))).collect()
    }

    fn skip(&self, kind: Kind, why: &str) {
        eprintln!("nemesis: {} skipped: {why}", kind.name());
    }

    fn count(&self, kind: Kind) {
        *self.applied.lock().unwrap_or_else(|e| e.into_inner()).entry(kind.name().to_string()).or_default() += 1;
    }

    fn set_busy(&self, slots: &[usize], busy: bool) {
        for s in slots {
            self.cluster.host(*s).state().busy = busy;
        }
    }

    fn push(&self, fault: Fault, undo: Undo, slots: Vec<usize>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        eprintln!(
            "nemesis: {} {} {}{}",
            fault.kind,
            fault.targets.join(","),
            fault.detail,
            match fault.verified {
                Some(true) => " (verified)",
                Some(false) => " (NOT verified)",
                None => "",
            }
        );
        self.active.lock().unwrap_or_else(|e| e.into_inner()).push(Active { id, fault, undo, slots });
        id
    }

    /// Applies `kind` to the cluster as it is now; the id of the fault in
    /// force, `None` when skipped.
    async fn apply(&self, kind: Kind, rng: &mut ChaCha8Rng) -> anyhow::Result<Option<u64>> {
        let members: Vec<usize> =
            self.cluster.members().iter().filter(|(h, _)| !h.state().busy).map(|(h, _)| h.slot).collect();
        // Right after a heal there may be no primary for a moment.
        let mut primary = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while primary.is_none() && tokio::time::Instant::now() < deadline {
            primary = self.cluster.primary().await.filter(|p| members.contains(p));
            if primary.is_none() {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        if kind.family() == "partition" {
            let Some((cuts, targets)) = cuts(kind, &members, primary, rng) else {
                self.skip(kind, "no primary, or too few members");
                return Ok(None);
            };
            return self.partition(kind, cuts, targets).await.map(Some);
        }
        let Some(p) = primary else {
            self.skip(kind, "no primary");
            return Ok(None);
        };
        let host = self.cluster.host(p);
        let start = self.recorder.now();
        let daemon = host.state().daemon;
        let postmaster = host.postmaster();
        let fault = |detail: String, targets: Vec<String>| Fault {
            start,
            end: None,
            kind: kind.name().to_string(),
            targets,
            detail,
            verified: None,
        };
        self.count(kind);
        let id = match kind {
            KillPrimary => {
                self.set_busy(&[p], true);
                let d = daemon.map(|pid| signal(pid, Signal::SIGKILL));
                let m = postmaster.map(|pid| signal(pid, Signal::SIGKILL));
                self.cluster.wait_daemon_gone(p, Duration::from_secs(5)).await;
                let detail =
                    format!("SIGKILL daemon {daemon:?} ({d:?}), postmaster {postmaster:?} ({m:?}); restart at heal");
                self.push(fault(detail, self.names(&[p])), Undo::Restart(vec![p]), vec![p])
            }
            KillPostmaster => {
                let Some(pm) = postmaster else {
                    self.skip(kind, "no postmaster");
                    return Ok(None);
                };
                signal(pm, Signal::SIGKILL);
                self.push(
                    fault(format!("SIGKILL postmaster {pm}; the daemon restarts it"), self.names(&[p])),
                    Undo::Nothing,
                    vec![],
                )
            }
            KillPromotion => {
                self.set_busy(&[p], true);
                let old_id = host.member().map(|m| m.id);
                daemon.map(|pid| signal(pid, Signal::SIGKILL));
                postmaster.map(|pid| signal(pid, Signal::SIGKILL));
                self.cluster.wait_daemon_gone(p, Duration::from_secs(5)).await;
                let next = self.new_primary(p, old_id, Duration::from_secs(20)).await;
                match next {
                    Some((q, pid)) => {
                        signal(pid, Signal::SIGKILL);
                        self.set_busy(&[q], true);
                        self.cluster.wait_daemon_gone(q, Duration::from_secs(5)).await;
                        let detail = format!(
                            "SIGKILL daemon {daemon:?} and postmaster {postmaster:?} of the primary, then daemon \
                             {pid} of the member elected next; restart both at heal"
                        );
                        self.push(fault(detail, self.names(&[p, q])), Undo::Restart(vec![p, q]), vec![p, q])
                    }
                    None => {
                        let detail = format!(
                            "SIGKILL daemon {daemon:?} and postmaster {postmaster:?} of the primary; no election \
                             seen within 20 s; restart at heal"
                        );
                        self.push(fault(detail, self.names(&[p])), Undo::Restart(vec![p]), vec![p])
                    }
                }
            }
            PauseDaemon => {
                let Some(pid) = daemon else {
                    self.skip(kind, "no daemon");
                    return Ok(None);
                };
                self.set_busy(&[p], true);
                signal(pid, Signal::SIGSTOP);
                host.state().stopped.push(pid);
                self.push(fault(format!("SIGSTOP daemon {pid}"), self.names(&[p])), Undo::Resume(p, vec![pid]), vec![p])
            }
            PausePostmaster => {
                let Some(pm) = postmaster else {
                    self.skip(kind, "no postmaster");
                    return Ok(None);
                };
                self.set_busy(&[p], true);
                signal(pm, Signal::SIGSTOP);
                let mut pids = vec![pm];
                pids.extend(children_of(pm));
                for pid in &pids[1..] {
                    signal(*pid, Signal::SIGSTOP);
                }
                host.state().stopped.extend(pids.iter().copied());
                let detail = format!("SIGSTOP postmaster {pm} and its {} children", pids.len() - 1);
                self.push(fault(detail, self.names(&[p])), Undo::Resume(p, pids), vec![p])
            }
            _ => return Ok(None),
        };
        Ok(Some(id))
    }

    /// Waits for a member other than `old` to be named primary (by the
    /// replicated state any daemon reports, or by its own role); its slot
    /// and daemon pid.
    async fn new_primary(&self, old: usize, old_id: Option<u64>, timeout: Duration) -> Option<(usize, i32)> {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            for (slot, doc) in self.cluster.statuses().await {
                let Some(doc) = doc else { continue };
                let named = doc["raftgres"]["primary"].as_u64().filter(|id| Some(*id) != old_id);
                let own = (doc["role"].as_str() == Some("primary") && slot != old).then_some(slot);
                let target = named
                    .and_then(|id| self.cluster.members().into_iter().find(|(_, m)| m.id == id).map(|(h, _)| h.slot))
                    .or(own);
                if let Some(q) = target.filter(|q| *q != old)
                    && let Some(pid) = self.cluster.host(q).state().daemon
                {
                    return Some((q, pid));
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Installs `cuts` and checks them.
    async fn partition(&self, kind: Kind, cuts: Vec<Cut>, targets: Vec<usize>) -> anyhow::Result<u64> {
        let mut from: BTreeMap<usize, Vec<std::net::Ipv4Addr>> = BTreeMap::new();
        let mut to: BTreeMap<usize, Vec<std::net::Ipv4Addr>> = BTreeMap::new();
        for &(r, s) in &cuts {
            from.entry(r).or_default().push(self.cluster.host(s).addr);
            to.entry(s).or_default().push(self.cluster.host(r).addr);
        }
        let slots: Vec<usize> = from.keys().chain(to.keys()).copied().collect::<BTreeSet<_>>().into_iter().collect();
        self.set_busy(&slots, true);
        // Connections opened before the cut, one per directed pair: the
        // sender connects to the receiver's echo listener.
        let hosts: Vec<(String, SocketAddr)> = cuts
            .iter()
            .map(|&(r, s)| {
                (self.cluster.host(s).ns.clone(), SocketAddr::from((self.cluster.host(r).addr, net::ECHO_PORT)))
            })
            .collect();
        let before = tokio::task::spawn_blocking({
            let hosts = hosts.clone();
            move || {
                hosts
                    .iter()
                    .map(|(ns, to)| {
                        let mut s = net::connect_from(ns, *to, Duration::from_secs(2)).ok()?;
                        net::echoes(&mut s, Duration::from_secs(2)).then_some(s)
                    })
                    .collect::<Vec<_>>()
            }
        })
        .await?;
        let mut rules = Vec::new();
        for slot in &slots {
            let f = from.get(slot).cloned().unwrap_or_default();
            let t = to.get(slot).cloned().unwrap_or_default();
            net::nft(&self.cluster.host(*slot).ns, &net::partition_ruleset(&f, &t))?;
            rules.push(format!(
                "{}: drop from [{}] to [{}]",
                self.names(&[*slot])[0],
                f.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" "),
                t.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" ")
            ));
        }
        let start = self.recorder.now();
        self.count(kind);
        // Both checks on every pair at once: the open connection must not
        // echo, and a new one must not connect, within 2 s.
        let checks: Vec<_> = hosts
            .into_iter()
            .zip(before)
            .map(|((ns, to), open)| {
                tokio::task::spawn_blocking(move || {
                    let open_cut = match open {
                        Some(mut s) => !net::echoes(&mut s, Duration::from_secs(2)),
                        None => false,
                    };
                    let new_cut = net::connect_from(&ns, to, Duration::from_secs(2)).is_err();
                    open_cut && new_cut
                })
            })
            .collect();
        let mut verified = true;
        for c in checks {
            verified &= c.await.unwrap_or(false);
        }
        let fault = Fault {
            start,
            end: None,
            kind: kind.name().to_string(),
            targets: self.names(&targets),
            detail: format!(
                "{}; cuts (receiver<-sender): {}",
                rules.join("; "),
                cuts.iter()
                    .map(|(r, s)| format!("{}<-{}", self.names(&[*r])[0], self.names(&[*s])[0]))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            verified: Some(verified),
        };
        Ok(self.push(fault, Undo::Heal(slots.clone()), slots))
    }

    /// Undoes fault `id` and records it.
    async fn heal(&self, id: u64) {
        let active = {
            let mut all = self.active.lock().unwrap_or_else(|e| e.into_inner());
            let Some(pos) = all.iter().position(|a| a.id == id) else { return };
            all.remove(pos)
        };
        self.undo(active).await;
    }

    async fn undo(&self, mut active: Active) {
        match &active.undo {
            Undo::Heal(slots) => {
                for s in slots {
                    if let Err(e) = net::nft(&self.cluster.host(*s).ns, net::HEAL_RULESET) {
                        eprintln!("nemesis: failed to heal slot {s}: {e:#}");
                    }
                }
            }
            Undo::Restart(slots) => {
                for s in slots {
                    if self.cluster.host(*s).member().is_some()
                        && let Err(e) = self.cluster.start_daemon(*s)
                    {
                        eprintln!("nemesis: failed to restart slot {s}: {e:#}");
                    }
                }
            }
            Undo::Resume(slot, pids) => {
                for pid in pids {
                    signal(*pid, Signal::SIGCONT);
                }
                self.cluster.host(*slot).state().stopped.retain(|p| !pids.contains(p));
            }
            Undo::Nothing => {}
        }
        self.set_busy(&active.slots, false);
        active.fault.end = Some(self.recorder.now());
        eprintln!("nemesis: healed {} {}", active.fault.kind, active.fault.targets.join(","));
        self.out.write(&active.fault);
    }

    /// Heals everything: every fault in force, then, whatever happened,
    /// drops every host's `inet jepsen` table, resumes every stopped process
    /// and starts every member's daemon that is not running.
    pub async fn heal_all(&self) {
        let all: Vec<Active> = std::mem::take(&mut *self.active.lock().unwrap_or_else(|e| e.into_inner()));
        for a in all {
            self.undo(a).await;
        }
        for host in &self.cluster.hosts {
            let _ = net::nft(&host.ns, net::HEAL_RULESET);
            let stopped = std::mem::take(&mut host.state().stopped);
            for pid in stopped {
                signal(pid, Signal::SIGCONT);
            }
            host.state().busy = false;
            if host.member().is_some() && host.state().daemon.is_none() {
                let _ = self.cluster.start_daemon(host.slot);
            }
        }
    }

    /// Writes the faults still in force, with no end (an interrupted run).
    pub fn record_unhealed(&self) {
        for a in self.active.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            self.out.write(&a.fault);
        }
    }

    /// Records an operation that has run (start to now).
    fn operation(&self, kind: Kind, start: u64, targets: Vec<String>, detail: String) {
        self.count(kind);
        let fault = Fault {
            start,
            end: Some(self.recorder.now()),
            kind: kind.name().to_string(),
            targets,
            detail,
            verified: None,
        };
        eprintln!("nemesis: {} {}: {}", fault.kind, fault.targets.join(","), fault.detail);
        self.out.write(&fault);
    }

    /// Starts a fresh member on a free host and adds it as a voter.
    async fn add_node(&self) -> anyhow::Result<()> {
        let Some(slot) = self.cluster.hosts.iter().find(|h| h.member().is_none() && !h.state().busy).map(|h| h.slot)
        else {
            self.skip(AddNode, "no free host");
            return Ok(());
        };
        let start = self.recorder.now();
        let _ = net::nft(&self.cluster.host(slot).ns, net::HEAL_RULESET);
        let member = self.cluster.place(slot)?;
        self.cluster.write_config(slot, true)?;
        self.cluster.start_daemon(slot)?;
        let host = self.cluster.host(slot);
        let id = member.id.to_string();
        let (raft, api) = (host.raft_addr(), host.api_url());
        // The leader must reach the new node's Raft port: wait until its
        // daemon answers.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while crate::hosts::http_get(host.addr, "/liveness", Duration::from_millis(500)).await.is_err()
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let args = ["member", "add", "--id", &id, "--name", &member.name, "--raft-addr", &raft, "--api-url", &api];
        let mut args = args.to_vec();
        args.push("--voter");
        let (code, out) = self.cluster.raftctl_except(Some(slot), &args, Duration::from_secs(120)).await?;
        let first = out.lines().collect::<Vec<_>>().join(" | ");
        if code != 0 {
            // Not a member: stop it and free the host.
            self.cluster.stop_daemon(slot, Duration::from_secs(20)).await;
            self.cluster.vacate(slot);
            self.operation(AddNode, start, vec![member.name], format!("refused ({code}): {first}"));
            return Ok(());
        }
        self.operation(AddNode, start, vec![member.name], format!("added as voter: {first}"));
        if let Err(e) = self.cluster.haproxy(&self.run_dir).await {
            eprintln!("nemesis: failed to reload HAProxy: {e:#}");
        }
        Ok(())
    }

    /// Removes a replica from the cluster and stops it.
    async fn remove_node(&self, rng: &mut ChaCha8Rng) -> anyhow::Result<()> {
        let statuses = self.cluster.statuses().await;
        let replicas: Vec<usize> = statuses
            .iter()
            .filter(|(slot, doc)| {
                !self.cluster.host(**slot).state().busy
                    && doc.as_ref().and_then(|d| d["role"].as_str()) == Some("replica")
            })
            .map(|(slot, _)| *slot)
            .collect();
        let Some(&slot) = replicas.choose(rng) else {
            self.skip(RemoveNode, "no replica free of faults");
            return Ok(());
        };
        let name = self.cluster.host(slot).name().unwrap_or_default();
        let start = self.recorder.now();
        self.set_busy(&[slot], true);
        let (code, out) = self.cluster.raftctl(&["member", "remove", &name], Duration::from_secs(30)).await?;
        let first = out.lines().collect::<Vec<_>>().join(" | ");
        if code != 0 {
            self.set_busy(&[slot], false);
            self.operation(RemoveNode, start, vec![name], format!("refused ({code}): {first}"));
            return Ok(());
        }
        self.cluster.stop_daemon(slot, Duration::from_secs(30)).await;
        self.cluster.vacate(slot);
        self.set_busy(&[slot], false);
        self.operation(RemoveNode, start, vec![name], format!("removed and stopped: {first}"));
        if let Err(e) = self.cluster.haproxy(&self.run_dir).await {
            eprintln!("nemesis: failed to reload HAProxy: {e:#}");
        }
        Ok(())
    }

    /// Requests a switchover, to a random member or to the cluster's choice.
    async fn switchover(&self, rng: &mut ChaCha8Rng) -> anyhow::Result<()> {
        let start = self.recorder.now();
        let statuses = self.cluster.statuses().await;
        let replicas: Vec<String> = statuses
            .iter()
            .filter(|(_, doc)| doc.as_ref().and_then(|d| d["role"].as_str()) == Some("replica"))
            .filter_map(|(slot, _)| self.cluster.host(*slot).name())
            .collect();
        let mut args = vec!["switchover", "--force"];
        let to = if rng.random_bool(0.5) { replicas.choose(rng).cloned() } else { None };
        if let Some(to) = &to {
            args.push("--to");
            args.push(to);
        }
        let (code, out) = self.cluster.raftctl(&args, Duration::from_secs(30)).await?;
        let first = out.lines().collect::<Vec<_>>().join(" | ");
        let targets = to.into_iter().collect();
        self.operation(Switchover, start, targets, format!("exit {code}: {first}"));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(1)
    }

    fn symmetric(cuts: &[Cut]) -> bool {
        cuts.iter().all(|(a, b)| cuts.contains(&(*b, *a)))
    }

    #[test]
    fn families_and_kinds_parse() {
        assert_eq!(parse_kinds("none").unwrap(), BTreeSet::new());
        assert_eq!(parse_kinds("all").unwrap().len(), ALL.len());
        assert_eq!(parse_kinds("pause").unwrap(), BTreeSet::from([PauseDaemon, PausePostmaster]));
        assert_eq!(parse_kinds("partition-primary,kill").unwrap().len(), 4);
        assert!(parse_kinds("partition-everything").is_err());
    }

    #[test]
    fn isolating_the_primary_cuts_it_from_every_other_member_both_ways() {
        let (cuts, targets) = cuts(PartitionPrimary, &[1, 2, 3], Some(2), &mut rng()).unwrap();
        assert_eq!(targets, vec![2]);
        assert!(symmetric(&cuts));
        assert_eq!(cuts.len(), 4);
        assert!(cuts.iter().all(|(a, b)| *a == 2 || *b == 2));
        assert!(super::cuts(PartitionPrimary, &[1, 2, 3], None, &mut rng()).is_none());
    }

    #[test]
    fn one_way_leaves_the_primary_hearing_the_others() {
        let (cuts, _) = cuts(PartitionOneWay, &[1, 2, 3], Some(1), &mut rng()).unwrap();
        assert_eq!(cuts, vec![(2, 1), (3, 1)]);
    }

    #[test]
    fn halves_split_into_a_minority_and_a_majority() {
        for seed in 0..20 {
            let (cuts, minority) =
                cuts(PartitionHalves, &[1, 2, 3, 4, 5], None, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
            assert_eq!(minority.len(), 2);
            assert!(symmetric(&cuts));
            assert_eq!(cuts.len(), 2 * 2 * 3);
        }
    }

    #[test]
    fn in_a_majorities_ring_every_member_sees_a_different_majority() {
        let members = [1, 2, 3, 4, 5];
        let (cuts, _) = cuts(PartitionMajoritiesRing, &members, None, &mut rng()).unwrap();
        assert!(symmetric(&cuts));
        let mut views = BTreeSet::new();
        for m in members {
            let seen: BTreeSet<usize> =
                members.iter().copied().filter(|o| *o == m || !cuts.contains(&(m, *o))).collect();
            assert_eq!(seen.len(), 3, "{m} sees {seen:?}");
            views.insert(seen);
        }
        assert_eq!(views.len(), 5);
        assert!(super::cuts(PartitionMajoritiesRing, &[1, 2, 3], None, &mut rng()).is_none());
    }

    #[test]
    fn a_bridge_member_talks_to_both_halves() {
        let members = [1, 2, 3, 4, 5];
        let (cuts, bridge) = cuts(PartitionBridge, &members, None, &mut rng()).unwrap();
        let touched: BTreeSet<usize> = cuts.iter().map(|(a, _)| *a).collect();
        assert_eq!(touched.len(), 4);
        assert!(!touched.contains(&bridge[0]));
        assert_eq!(cuts.len(), 8);
    }
}

//! Finding and naming cycles in the dependency graph.
//!
//! Tarjan's algorithm (petgraph) splits the graph into strongly connected
//! components; every component of two or more transactions holds a cycle,
//! which strict serializability forbids. In each component we look for a
//! short witness, trying edge sets from the most telling to the least, and
//! stop at the first found:
//!
//! for each order-edge allowance in {none, +process, +process+realtime}:
//! 1. `ww` only (G0),
//! 2. `ww`+`wr` (G1c),
//! 3. exactly one `rw` edge closed by a `ww`/`wr` path (G-single),
//! 4. any data edge (G2-item or G-nonadjacent).
//!
//! Each search is a breadth-first search for the shortest cycle through each
//! start, restricted to a sub-component of the allowed edges. The witness is
//! then named by its edges, as Elle's `cycle-explainer` does: no `rw` and
//! only `ww` = G0, some `wr` = G1c; exactly one `rw` = G-single; two or more
//! with two adjacent = G2-item, none adjacent = G-nonadjacent. The suffix is
//! `-realtime` if any step is a realtime edge, else `-process` if any is a
//! process edge.
//!
//! Each refined search has a twelfth of the step budget per component and,
//! when it runs out, keeps the best witness found so far. If none of them
//! finds one, a last search for any cycle through the component's first
//! transaction gets the whole budget again; a component too large even for
//! that is reported as `cycle-search-timeout` (verdict unknown) with its
//! size: it must hold a cycle, but we cannot name one.

use super::graph::{Graph, Rel};
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{HashMap, VecDeque};

const DATA: u8 = Rel::Ww.bit() | Rel::Wr.bit() | Rel::Rw.bit();

/// A witness: `steps[i]` goes from `nodes[i]` to `nodes[(i + 1) % len]`.
#[derive(Clone, Debug)]
pub struct Cycle {
    pub nodes: Vec<usize>,
    pub steps: Vec<Rel>,
}

impl Cycle {
    /// The anomaly's name, from the kinds of its steps.
    pub fn name(&self) -> String {
        let rw = self.steps.iter().filter(|r| **r == Rel::Rw).count();
        let n = self.steps.len();
        let adjacent_rw = (0..n).any(|i| self.steps[i] == Rel::Rw && self.steps[(i + 1) % n] == Rel::Rw);
        let base = match rw {
            0 if self.steps.contains(&Rel::Wr) => "G1c",
            0 => "G0",
            1 => "G-single",
            _ if adjacent_rw => "G2-item",
            _ => "G-nonadjacent",
        };
        let suffix = if self.steps.contains(&Rel::Realtime) {
            "-realtime"
        } else if self.steps.contains(&Rel::Process) {
            "-process"
        } else {
            ""
        };
        format!("{base}{suffix}")
    }
}

/// What the search of one component gave.
#[derive(Debug)]
pub enum Found {
    /// A witness; `true` when a search ran out of budget first, so a
    /// stronger anomaly may hide in the component.
    Cycle(Cycle, bool),
    /// The budget ran out first; the component's transactions.
    Timeout(Vec<usize>),
}

/// The components of two or more transactions.
pub fn components(n: usize, graph: &Graph) -> Vec<Vec<usize>> {
    let mut g: DiGraph<(), ()> = DiGraph::with_capacity(n, graph.edges.len());
    for _ in 0..n {
        g.add_node(());
    }
    for &(a, b) in graph.edges.keys() {
        g.add_edge(NodeIndex::new(a), NodeIndex::new(b), ());
    }
    let mut out: Vec<Vec<usize>> = tarjan_scc(&g)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| {
            let mut c: Vec<usize> = c.into_iter().map(|n| n.index()).collect();
            c.sort_unstable();
            c
        })
        .collect();
    out.sort();
    out
}

/// Search one component for a witness within `budget` edge visits.
pub fn search(graph: &Graph, component: &[usize], budget: u64) -> Found {
    let local = Local::new(graph, component);
    // Twelve refined searches share the budget; the fallback has its own.
    let share = (budget / 12).max(1);
    let mut cut = false;
    for extra in [0, Rel::Process.bit(), Rel::Process.bit() | Rel::Realtime.bit()] {
        for step in 0..4 {
            let mut left = share;
            let (found, exhausted) = match step {
                0 => local.shortest(Rel::Ww.bit() | extra, &mut left, false),
                1 => local.shortest(Rel::Ww.bit() | Rel::Wr.bit() | extra, &mut left, false),
                2 => local.single_rw(Rel::Ww.bit() | Rel::Wr.bit() | extra, &mut left),
                _ => local.shortest(DATA | extra, &mut left, false),
            };
            cut |= exhausted;
            if let Some(c) = found {
                return Found::Cycle(local.global(c), cut);
            }
        }
    }
    // Every component has a cycle through its first node over all edges.
    let mut left = budget;
    match local.shortest(DATA | Rel::Process.bit() | Rel::Realtime.bit(), &mut left, true) {
        (Some(c), _) => Found::Cycle(local.global(c), true),
        (None, _) => Found::Timeout(component.to_vec()),
    }
}

struct Exhausted;

/// A component with local node numbers.
struct Local<'a> {
    nodes: &'a [usize],
    adj: Vec<Vec<(usize, u8)>>,
}

impl<'a> Local<'a> {
    fn new(graph: &Graph, nodes: &'a [usize]) -> Local<'a> {
        let index: HashMap<usize, usize> = nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let mut adj = vec![Vec::new(); nodes.len()];
        for (&(a, b), edge) in &graph.edges {
            if let (Some(&la), Some(&lb)) = (index.get(&a), index.get(&b)) {
                adj[la].push((lb, edge.mask));
            }
        }
        for a in &mut adj {
            a.sort_unstable();
        }
        Local { nodes, adj }
    }

    fn global(&self, c: LocalCycle) -> Cycle {
        Cycle { nodes: c.nodes.iter().map(|n| self.nodes[*n]).collect(), steps: c.steps }
    }

    /// The sub-components of the edges in `allowed`, of two or more nodes.
    fn sub_components(&self, allowed: u8) -> Vec<Vec<usize>> {
        let mut g: DiGraph<(), ()> = DiGraph::with_capacity(self.adj.len(), 0);
        for _ in 0..self.adj.len() {
            g.add_node(());
        }
        for (a, out) in self.adj.iter().enumerate() {
            for &(b, mask) in out {
                if mask & allowed != 0 {
                    g.add_edge(NodeIndex::new(a), NodeIndex::new(b), ());
                }
            }
        }
        tarjan_scc(&g).into_iter().filter(|c| c.len() > 1).map(|c| c.into_iter().map(|n| n.index()).collect()).collect()
    }

    /// The shortest cycle using only `allowed` edges (through the first
    /// node only, when `first_only`), and whether the budget ran out: then
    /// the best found so far.
    fn shortest(&self, allowed: u8, left: &mut u64, first_only: bool) -> (Option<LocalCycle>, bool) {
        let subs = if first_only { vec![(0..self.adj.len()).collect()] } else { self.sub_components(allowed) };
        let mut best: Option<Vec<usize>> = None;
        let mut exhausted = false;
        'subs: for sub in subs {
            let mut member = vec![false; self.adj.len()];
            for &n in &sub {
                member[n] = true;
            }
            let starts = if first_only { &sub[..1] } else { &sub[..] };
            for &start in starts {
                match self.bfs(start, start, allowed, &member, left) {
                    Ok(Some(path)) if best.as_ref().is_none_or(|b| path.len() < b.len()) => {
                        let done = path.len() == 2;
                        best = Some(path);
                        if done {
                            break 'subs;
                        }
                    }
                    Ok(_) => {}
                    Err(Exhausted) => {
                        exhausted = true;
                        break 'subs;
                    }
                }
            }
        }
        (best.map(|nodes| self.label(nodes, allowed, None)), exhausted)
    }

    /// The shortest cycle made of one `rw` edge and a path of `allowed`
    /// (non-`rw`) edges back to its start; as [`Self::shortest`].
    fn single_rw(&self, allowed: u8, left: &mut u64) -> (Option<LocalCycle>, bool) {
        let all = vec![true; self.adj.len()];
        let mut best: Option<Vec<usize>> = None;
        let mut exhausted = false;
        'edges: for (a, out) in self.adj.iter().enumerate() {
            for &(b, mask) in out {
                if mask & Rel::Rw.bit() == 0 {
                    continue;
                }
                // A path b → … → a; the cycle is a, b, …
                match self.bfs(b, a, allowed, &all, left) {
                    Ok(Some(path)) => {
                        let mut nodes = vec![a];
                        nodes.extend(path.into_iter().take_while(|n| *n != a));
                        if best.as_ref().is_none_or(|best| nodes.len() < best.len()) {
                            let done = nodes.len() == 2;
                            best = Some(nodes);
                            if done {
                                break 'edges;
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(Exhausted) => {
                        exhausted = true;
                        break 'edges;
                    }
                }
            }
        }
        (best.map(|nodes| self.label(nodes, allowed, Some(Rel::Rw))), exhausted)
    }

    /// A shortest path from `from` to `to` (which may equal `from`: then a
    /// cycle) over `allowed` edges among `member` nodes: the nodes from
    /// `from` up to the last before `to`, so a cycle's nodes in order.
    fn bfs(
        &self,
        from: usize,
        to: usize,
        allowed: u8,
        member: &[bool],
        left: &mut u64,
    ) -> Result<Option<Vec<usize>>, Exhausted> {
        let mut parent: Vec<usize> = vec![usize::MAX; self.adj.len()];
        let mut queue = VecDeque::from([from]);
        parent[from] = from;
        while let Some(u) = queue.pop_front() {
            for &(v, mask) in &self.adj[u] {
                *left = left.checked_sub(1).ok_or(Exhausted)?;
                if mask & allowed == 0 || !member[v] {
                    continue;
                }
                if v == to {
                    let mut path = vec![u];
                    let mut x = u;
                    while x != from {
                        x = parent[x];
                        path.push(x);
                    }
                    path.reverse();
                    if from != to {
                        path.push(to);
                    }
                    return Ok(Some(path));
                }
                if parent[v] == usize::MAX {
                    parent[v] = u;
                    queue.push_back(v);
                }
            }
        }
        Ok(None)
    }

    /// Name each step of a cycle by its preferred allowed kind; the first
    /// step is `first` when given.
    fn label(&self, nodes: Vec<usize>, allowed: u8, first: Option<Rel>) -> LocalCycle {
        let n = nodes.len();
        let steps = (0..n)
            .map(|i| {
                if i == 0
                    && let Some(r) = first
                {
                    return r;
                }
                let (a, b) = (nodes[i], nodes[(i + 1) % n]);
                let mask = self.adj[a].iter().find(|(x, _)| *x == b).map_or(0, |(_, m)| *m);
                Rel::first_in(mask & allowed).unwrap_or(Rel::Realtime)
            })
            .collect();
        LocalCycle { nodes, steps }
    }
}

struct LocalCycle {
    nodes: Vec<usize>,
    steps: Vec<Rel>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cycle(steps: &[Rel]) -> Cycle {
        Cycle { nodes: (0..steps.len()).collect(), steps: steps.to_vec() }
    }

    #[test]
    fn cycles_are_named_by_their_edges() {
        use Rel::*;
        assert_eq!(cycle(&[Ww, Ww]).name(), "G0");
        assert_eq!(cycle(&[Ww, Wr]).name(), "G1c");
        assert_eq!(cycle(&[Rw, Wr]).name(), "G-single");
        assert_eq!(cycle(&[Rw, Realtime]).name(), "G-single-realtime");
        assert_eq!(cycle(&[Rw, Process, Wr]).name(), "G-single-process");
        assert_eq!(cycle(&[Rw, Process, Realtime]).name(), "G-single-realtime");
        assert_eq!(cycle(&[Rw, Rw]).name(), "G2-item");
        assert_eq!(cycle(&[Rw, Ww, Rw]).name(), "G2-item", "the last and first steps are adjacent");
        assert_eq!(cycle(&[Rw, Ww, Rw, Ww]).name(), "G-nonadjacent");
    }
}

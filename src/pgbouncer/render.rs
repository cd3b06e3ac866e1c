//! The pure part of following the primary: which target the replicated
//! state names ([`Target::of`]), and the `[databases]` file a template
//! renders for it ([`render_databases`]). No I/O here.

use std::fmt;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use raftgres_storage::ClusterState;
use serde::Serialize;

/// The variables a template may use.
pub const VARIABLES: [&str; 5] = ["host", "port", "name", "epoch", "cluster"];

/// Where PgBouncer sends its clients: the primary's PostgreSQL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// The primary member's name.
    pub name: String,
    /// The epoch the primary was elected in.
    pub epoch: u64,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}:{} (epoch {})", self.name, self.host, self.port, self.epoch)
    }
}

impl Target {
    /// The primary the state names, once it can take writes: elected, and
    /// its promotion recorded in the same epoch (as `/primary` requires).
    /// `None` while no primary can take writes (none elected, a handover
    /// under way, a member without an address); the caller then keeps its
    /// last target rather than render a file with nowhere to go.
    pub fn of(state: &ClusterState) -> Option<Target> {
        let p = state.primary.as_ref()?;
        let t = state.timeline.as_ref()?;
        if t.epoch != p.epoch || t.node != p.node || state.epoch != p.epoch {
            return None;
        }
        let m = state.member(p.node)?;
        if m.pg_host.is_empty() || m.pg_port == 0 {
            return None;
        }
        Some(Target { host: m.pg_host.clone(), port: m.pg_port, name: m.name.clone(), epoch: p.epoch })
    }
}

/// Why a template cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the template uses unknown variable(s) {}; it may use {}", .0.join(", "), VARIABLES.join(", "))]
    Unknown(Vec<String>),
    #[error("{0}")]
    Template(#[from] minijinja::Error),
    #[error("the rendered text holds a section header ({0:?}): the template gives the [databases] lines only")]
    Section(String),
}

/// The lines of the `[databases]` section for `target`, from `template`.
pub fn render_databases(template: &str, cluster: &str, target: &Target) -> Result<String, RenderError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_keep_trailing_newline(true);
    env.add_template("databases_template", template)?;
    let tmpl = env.get_template("databases_template")?;
    let mut unknown: Vec<String> =
        tmpl.undeclared_variables(false).into_iter().filter(|v| !VARIABLES.contains(&v.as_str())).collect();
    if !unknown.is_empty() {
        unknown.sort();
        return Err(RenderError::Unknown(unknown));
    }
    let text = tmpl.render(minijinja::context! {
        host => target.host,
        port => target.port,
        name => target.name,
        epoch => target.epoch,
        cluster => cluster,
    })?;
    if let Some(line) = text.lines().map(str::trim).find(|l| l.starts_with('[')) {
        return Err(RenderError::Section(line.to_string()));
    }
    Ok(text)
}

/// The whole file: a header naming what wrote it, the `[databases]`
/// section header, and the rendered lines.
pub fn databases_file(template: &str, cluster: &str, target: &Target) -> Result<String, RenderError> {
    let lines = render_databases(template, cluster, target)?;
    let mut text = format!(
        ";; Written by raftgres for cluster {cluster}: primary {target}.\n\
         ;; Rewritten whenever the primary changes; edit the template in raftgres's configuration instead.\n\
         [databases]\n{lines}"
    );
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use raftgres_storage::{ElectionReason, Member, Primary, TimelineRecord};

    use super::*;

    fn target() -> Target {
        Target { host: "10.0.0.2".into(), port: 5433, name: "pg2".into(), epoch: 7 }
    }

    #[test]
    fn the_template_sees_the_primary_and_the_cluster() {
        let t = "app = host={{ host }} port={{ port }} dbname=app\n; {{ cluster }} {{ name }} {{ epoch }}";
        let text = databases_file(t, "pg-main", &target()).expect("renders");
        assert!(text.contains("[databases]\napp = host=10.0.0.2 port=5433 dbname=app\n; pg-main pg2 7\n"), "{text}");
        assert!(text.starts_with(";; Written by raftgres for cluster pg-main: primary pg2 at 10.0.0.2:5433"));
    }

    #[test]
    fn unknown_variables_syntax_errors_and_sections_are_refused() {
        let e = render_databases("a = host={{ hots }} {{ prt }}", "c", &target()).expect_err("unknown");
        assert!(e.to_string().contains("hots, prt"), "{e}");
        assert!(render_databases("a = {% if %}", "c", &target()).is_err());
        let e = render_databases("[pgbouncer]\nlisten_port = 1", "c", &target()).expect_err("section");
        assert!(e.to_string().contains("[pgbouncer]"), "{e}");
        // Loops and filters work: it is a template language.
        let text =
            render_databases("{% for d in ['a', 'b'] %}{{ d }} = host={{ host|upper }}\n{% endfor %}", "c", &target())
                .expect("renders");
        assert_eq!(text, "a = host=10.0.0.2\nb = host=10.0.0.2\n");
    }

    #[test]
    fn the_target_is_a_primary_whose_promotion_is_recorded() {
        let mut s = ClusterState::default();
        assert_eq!(Target::of(&s), None, "no primary");
        let mut m = Member::new(2, "pg2");
        m.pg_host = "10.0.0.2".into();
        m.pg_port = 5433;
        s.members.insert(2, m);
        s.epoch = 7;
        s.primary = Some(Primary { node: 2, epoch: 7, reason: ElectionReason::Switchover, since_ms: 0 });
        assert_eq!(Target::of(&s), None, "elected, not yet promoted");
        s.timeline = Some(TimelineRecord { epoch: 6, node: 1, timeline: 2, switchpoint: 0 });
        assert_eq!(Target::of(&s), None, "the recorded promotion is the previous primary's");
        s.timeline = Some(TimelineRecord { epoch: 7, node: 2, timeline: 3, switchpoint: 0 });
        assert_eq!(Target::of(&s), Some(target()));
        s.primary = None;
        assert_eq!(Target::of(&s), None, "released: no target, the last one stays");
    }
}

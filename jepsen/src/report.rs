//! `report.html`: one self-contained page per run (inline CSS and SVG, no
//! script, no external URL) that a reader opens to see what happened.
//!
//! In order: the overall verdict, seed and settings; each checker's verdict
//! and summary; latency over time, throughput by outcome, and the per-node
//! lane of roles and accepted writes, all with the fault windows shaded;
//! the anomalies each checker found with the records involved; the fault
//! schedule. The report only presents: every verdict comes from the
//! [`Results`] it is given.

mod plot;

use crate::checker::call::{self, Call, Calls};
use crate::checker::{Anomaly, availability};
use crate::history::{F, Mop, Op, OpType, Value};
use crate::record::{Fault, Results, RoleSample, Verdict};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io;
use std::path::Path;

/// Anomalies shown per type and checker; the rest are counted.
const SHOWN_PER_TYPE: usize = 8;
/// One-line anomalies listed per type and checker.
const COMPACT_LINES: usize = 25;

/// Write `report.html` into `dir`.
pub fn write_html(
    dir: &Path,
    results: &Results,
    history: &[Op],
    faults: &[Fault],
    roles: &[RoleSample],
) -> io::Result<()> {
    let html = render_html(results, history, faults, roles)?;
    std::fs::write(dir.join("report.html"), html)
}

/// The page as a string.
pub fn render_html(results: &Results, history: &[Op], faults: &[Fault], roles: &[RoleSample]) -> io::Result<String> {
    let calls = call::pair(history);
    let end_ns = history
        .iter()
        .map(|o| o.time)
        .chain(faults.iter().flat_map(|f| [Some(f.start), f.end]).flatten())
        .chain(roles.iter().map(|r| r.time))
        .max()
        .unwrap_or(0);
    let frame = plot::Frame::new(end_ns as f64 / 1e9 * 1.01, faults);
    let mut h = String::with_capacity(1 << 20);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>raftgres chaos run, seed {seed}: {verdict}</title><style>{CSS}</style></head><body>\n",
        seed = results.seed,
        verdict = verdict_word(results.verdict),
    );
    header(&mut h, results);
    checkers(&mut h, results);

    h.push_str("<h2>Latency</h2>\n");
    let ops = calls.calls.iter().filter(|c| c.f() != F::Probe && c.complete_time().is_some()).count();
    if ops == 0 {
        h.push_str("<p class=\"empty\">No completed workload operation to plot.</p>\n");
    } else {
        let (svg, thinned) = plot::latency(&calls, &frame)?;
        legend(&mut h, &[("ok", plot::OK), ("fail", plot::FAIL), ("info (indeterminate)", plot::INFO)], faults);
        figure(&mut h, &svg);
        let _ = writeln!(
            h,
            "<p class=\"note\">Each dot is one completed operation (probes excluded): x = when it completed, \
             y = how long it took.{}</p>",
            if thinned > 0 {
                format!(" {thinned} points were thinned out evenly to keep the page small.")
            } else {
                String::new()
            }
        );
        h.push_str("<h2>Throughput</h2>\n");
        legend(&mut h, &[("ok", plot::OK), ("fail", plot::FAIL), ("info (indeterminate)", plot::INFO)], faults);
        figure(&mut h, &plot::throughput(&calls, &frame)?);
    }

    h.push_str("<h2>Roles and accepted writes per node</h2>\n");
    if roles.is_empty() && !history.iter().any(|o| o.f == F::Probe) {
        h.push_str("<p class=\"empty\">No role sample and no probe recorded.</p>\n");
    } else {
        legend(
            &mut h,
            &[
                ("primary", plot::PRIMARY),
                ("replica", plot::REPLICA),
                ("down", plot::DOWN),
                ("other role", plot::OTHER_ROLE),
                ("accepted probe writes (definite)", plot::ACCEPT_DEFINITE),
                ("probe windows", plot::ACCEPT_WINDOW),
            ],
            faults,
        );
        figure(&mut h, &plot::lanes(&calls, roles, &frame)?);
        h.push_str(
            "<p class=\"note\">Upper bar: the role the node's daemon reported (each sample holds until the next). \
             Lower bar: when direct probe writes to the node's PostgreSQL succeeded; dark where the node certainly \
             accepted writes throughout. A coloured line along a lane's top: a fault aimed at that node.</p>\n",
        );
    }

    anomalies(&mut h, results, &calls);
    schedule(&mut h, faults, &calls);
    h.push_str("</body></html>\n");
    Ok(h)
}

const CSS: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1240px;color:#222;padding:0 16px}
h1{font-size:24px;margin:0 0 8px}h2{font-size:19px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:16px;margin:18px 0 6px}
table{border-collapse:collapse;margin:6px 0 12px;font-size:14px}
td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f4f4f4}
.badge{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff;font-weight:600}
.valid{background:#1a7f37}.invalid{background:#cf222e}.unknown{background:#b46900}
.big{font-size:20px;padding:4px 14px}
.legend{font-size:13px;margin:4px 0}.legend span{display:inline-block;margin-right:14px}
.sw{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:5px;vertical-align:-1px}
.note{font-size:13px;color:#555;margin:2px 0 10px}.empty{color:#777;font-style:italic}
figure{margin:0}svg{max-width:100%;height:auto}
code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px}
ol{margin:4px 0 8px;padding-left:22px}li{margin:2px 0}
.anomaly{border-left:3px solid #cf222e;padding:2px 0 2px 12px;margin:10px 0}
.anomaly.unknown-kind{border-left-color:#b46900}
td.value{word-break:break-all;max-width:640px}
a{color:#0550ae}
";

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// An in-page anchor for a checker's anomaly type.
fn anchor(checker: &str, kind: &str) -> String {
    format!("{checker}-{kind}").chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Valid => "valid",
        Verdict::Invalid => "invalid",
        Verdict::Unknown => "unknown",
    }
}

fn badge(v: Verdict, extra: &str) -> String {
    let w = verdict_word(v);
    format!("<span class=\"badge {w} {extra}\">{}</span>", w.to_uppercase())
}

fn header(h: &mut String, results: &Results) {
    let _ = writeln!(h, "<h1>raftgres chaos run {}</h1>", badge(results.verdict, "big"));
    let _ = write!(h, "<table><tr><th>seed</th><td class=\"mono\">{}</td></tr>", results.seed);
    if let serde_json::Value::Object(config) = &results.config {
        for (k, v) in config {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let _ = write!(h, "<tr><th>{}</th><td class=\"mono\">{}</td></tr>", esc(k), esc(&v));
        }
    } else if !results.config.is_null() {
        let _ = write!(h, "<tr><th>config</th><td class=\"mono\">{}</td></tr>", esc(&results.config.to_string()));
    }
    h.push_str("</table>\n");
}

fn checkers(h: &mut String, results: &Results) {
    h.push_str("<h2>Checkers</h2>\n<table><tr><th>checker</th><th>verdict</th><th>summary</th></tr>\n");
    for (name, r) in &results.checkers {
        let first =
            r.details.get("anomalies").and_then(|a| a.get(0)).and_then(|a| a.get("type")).and_then(|t| t.as_str());
        let name_cell = match first {
            Some(kind) => format!("<a href=\"#{}\">{}</a>", anchor(name, kind), esc(name)),
            None => esc(name),
        };
        let _ =
            writeln!(h, "<tr><td>{name_cell}</td><td>{}</td><td>{}</td></tr>", badge(r.verdict, ""), esc(&r.summary));
    }
    h.push_str("</table>\n");
}

fn legend(h: &mut String, items: &[(&str, plot::RGBColor)], faults: &[Fault]) {
    h.push_str("<div class=\"legend\">");
    for (name, c) in items {
        let _ = write!(h, "<span><i class=\"sw\" style=\"background:{}\"></i>{}</span>", plot::hex(*c), esc(name));
    }
    for (kind, c) in plot::fault_colours(faults) {
        let _ = write!(
            h,
            "<span><i class=\"sw\" style=\"background:{};opacity:.45\"></i>fault: {}</span>",
            plot::hex(c),
            esc(&kind)
        );
    }
    h.push_str("</div>\n");
}

fn figure(h: &mut String, svg: &str) {
    h.push_str("<figure>");
    // plotters writes an XML-free SVG element; inline it as is.
    h.push_str(svg);
    h.push_str("</figure>\n");
}

fn anomalies(h: &mut String, results: &Results, calls: &Calls) {
    let by_index: HashMap<u64, &Call> = calls
        .calls
        .iter()
        .flat_map(|c| c.invoke.iter().chain(c.completion.iter()).map(move |o| (o.index, c)))
        .collect();
    h.push_str("<h2>Anomalies</h2>\n");
    let mut any = false;
    for (name, r) in &results.checkers {
        let Some(list) = r.details.get("anomalies").and_then(|a| a.as_array()) else { continue };
        let parsed: Vec<Anomaly> = list.iter().filter_map(|a| serde_json::from_value(a.clone()).ok()).collect();
        if parsed.is_empty() {
            continue;
        }
        any = true;
        let mut by_type: BTreeMap<&str, Vec<&Anomaly>> = BTreeMap::new();
        for a in &parsed {
            by_type.entry(&a.kind).or_default().push(a);
        }
        for (kind, list) in by_type {
            let _ = writeln!(h, "<h3 id=\"{}\">{}: {} ({})</h3>", anchor(name, kind), esc(name), esc(kind), list.len());
            let class = if r.verdict == Verdict::Invalid { "anomaly" } else { "anomaly unknown-kind" };
            if list.iter().all(|a| a.explanation.len() == 1) {
                // One line each (lost elements, say): one list, one table.
                let _ = write!(h, "<div class=\"{class}\"><ul>");
                for a in list.iter().take(COMPACT_LINES) {
                    let _ = write!(h, "<li>{}</li>", esc(&a.explanation[0]));
                }
                h.push_str("</ul>");
                let ops: Vec<u64> = list.iter().take(SHOWN_PER_TYPE).flat_map(|a| a.ops.iter().copied()).collect();
                records(h, &ops, &by_index);
                h.push_str("</div>\n");
                more(h, list.len(), COMPACT_LINES);
                continue;
            }
            for a in list.iter().take(SHOWN_PER_TYPE) {
                let _ = write!(h, "<div class=\"{class}\"><ol>");
                for line in &a.explanation {
                    let _ = write!(h, "<li>{}</li>", esc(line));
                }
                h.push_str("</ol>");
                records(h, &a.ops, &by_index);
                h.push_str("</div>\n");
            }
            more(h, list.len(), SHOWN_PER_TYPE);
        }
    }
    if !any {
        h.push_str("<p class=\"empty\">None found.</p>\n");
    }
}

fn more(h: &mut String, total: usize, shown: usize) {
    if total > shown {
        let _ = writeln!(h, "<p class=\"note\">… and {} more of this type in results.json.</p>", total - shown);
    }
}

/// The calls behind an anomaly's record indexes, as a small table.
fn records(h: &mut String, ops: &[u64], by_index: &HashMap<u64, &Call>) {
    let mut seen = Vec::new();
    for i in ops {
        if let Some(c) = by_index.get(i)
            && !seen.iter().any(|s: &&Call| s.index() == c.index())
        {
            seen.push(c);
        }
    }
    if seen.is_empty() {
        return;
    }
    let errors = seen.iter().any(|c| c.error().is_some());
    h.push_str(
        "<table class=\"mono\"><tr><th>op</th><th>process</th><th>node</th><th>invoked (s)</th>\
         <th>completed (s)</th><th>outcome</th><th>value</th>",
    );
    h.push_str(if errors { "<th>error</th></tr>" } else { "</tr>" });
    for c in seen.iter().take(12) {
        let secs = |t: Option<u64>| t.map_or("—".to_string(), |t| format!("{:.3}", t as f64 / 1e9));
        let outcome = match c.outcome() {
            OpType::Ok => "ok",
            OpType::Fail => "fail",
            _ if c.completion.is_none() => "never completed",
            _ => "info",
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{outcome}</td><td class=\"value\">{}</td>",
            c.index(),
            c.process(),
            esc(c.node().unwrap_or("")),
            secs(c.invoke_time()),
            secs(c.complete_time()),
            esc(&short_value(c.value())),
        );
        if errors {
            let _ = write!(h, "<td>{}</td>", esc(c.error().unwrap_or("")));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
}

/// A value as a reader wants it: micro-operations spelled out, long lists
/// cut to their ends (a read's tail is what the explanations talk about).
fn short_value(v: &Value) -> String {
    fn list(l: &[i64], keep_head: usize, keep_tail: usize) -> String {
        if l.len() <= keep_head + keep_tail + 1 {
            return format!("{l:?}");
        }
        let head: Vec<String> = l[..keep_head].iter().map(i64::to_string).collect();
        let tail: Vec<String> = l[l.len() - keep_tail..].iter().map(i64::to_string).collect();
        let mut parts = head;
        parts.push("…".to_string());
        parts.extend(tail);
        format!("[{}] ({} elements)", parts.join(", "), l.len())
    }
    match v {
        Value::None => "—".to_string(),
        Value::Int(i) => i.to_string(),
        Value::Ints(l) => list(l, 3, 3),
        Value::Txn(mops) => mops
            .iter()
            .map(|m| match m {
                Mop::Append(k, e) => format!("append {k} {e}"),
                Mop::Read(k, None) => format!("r {k} ?"),
                Mop::Read(k, Some(l)) => format!("r {k} {}", list(l, 0, 5)),
            })
            .collect::<Vec<_>>()
            .join("; "),
    }
}

fn schedule(h: &mut String, faults: &[Fault], calls: &Calls) {
    h.push_str("<h2>Fault schedule</h2>\n");
    if faults.is_empty() {
        h.push_str("<p class=\"empty\">No fault was applied.</p>\n");
        return;
    }
    h.push_str(
        "<table><tr><th>#</th><th>kind</th><th>targets</th><th>start (s)</th><th>end (s)</th>\
         <th>duration (s)</th><th>verified</th><th>first write after start (s)</th>\
         <th>first write after heal (s)</th><th>detail</th></tr>\n",
    );
    let mut order: Vec<&Fault> = faults.iter().collect();
    order.sort_by_key(|f| f.start);
    let secs = |ns: u64| format!("{:.3}", ns as f64 / 1e9);
    for (i, f) in order.iter().enumerate() {
        let after = |t: u64| {
            availability::first_write_after(calls, t).map_or("none".to_string(), |w| secs(w.saturating_sub(t)))
        };
        let verified = match f.verified {
            Some(true) => "yes",
            Some(false) => "<b style=\"color:#cf222e\">no</b>",
            None => "—",
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{verified}</td>\
             <td>{}</td><td>{}</td><td class=\"mono\">{}</td></tr>",
            i + 1,
            esc(&f.kind),
            esc(&f.targets.join(", ")),
            secs(f.start),
            f.end.map_or("never healed".to_string(), secs),
            f.end.map_or("—".to_string(), |e| secs(e.saturating_sub(f.start))),
            after(f.start),
            f.end.map_or("—".to_string(), after),
            esc(&f.detail),
        );
    }
    h.push_str("</table>\n");
}

#[cfg(test)]
mod tests;

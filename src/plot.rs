//! The `--svg` plot: per server, how many objects it differs from the
//! converged directory by, over simulated time, with fault and convergence
//! markers.
//!
//! "The converged directory" is, for each stretch of the run, the directory
//! the next `converge` step ended with (as held by the first running
//! server): the target each server was heading for.

use std::collections::HashMap;

use plotters::prelude::*;

use crate::core::Guid;
use crate::run::RunReport;
use crate::shell::observe::ChangeKind;

/// A plot that could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the plot: {0}")]
pub struct PlotError(String);

type Table = HashMap<Guid, u128>;

/// Per server, (sim ms, distance) points; `None` while it is down.
pub type Series = Vec<Vec<(u64, Option<usize>)>>;

/// What replaying the change log shows at each point.
enum Ev<'a> {
    /// Before the changes at this time (and once at the end, `u64::MAX`).
    At(u64, &'a [Option<Table>]),
    /// One server's table changed: (guid, old hash, new hash) when one object did.
    Changed(
        u64,
        usize,
        &'a Option<Table>,
        Option<(Guid, Option<u128>, Option<u128>)>,
    ),
}

fn replay(r: &RunReport, mut f: impl FnMut(Ev<'_>)) {
    let mut tables: Vec<Option<Table>> = vec![Some(Table::new()); r.names.len()];
    for c in &r.changes {
        f(Ev::At(c.sim_ms, &tables));
        let t = &mut tables[c.server];
        let delta = match c.kind {
            ChangeKind::Put(g, h) => {
                Some((g, t.get_or_insert_with(Table::new).insert(g, h), Some(h)))
            }
            ChangeKind::Remove(g) => Some((g, t.get_or_insert_with(Table::new).remove(&g), None)),
            ChangeKind::Down => {
                *t = None;
                None
            }
            ChangeKind::Reset => {
                *t = Some(Table::new());
                None
            }
        };
        f(Ev::Changed(c.sim_ms, c.server, &tables[c.server], delta));
    }
    f(Ev::At(u64::MAX, &tables));
}

fn diff(t: &Table, rf: &Table) -> usize {
    t.iter().filter(|(g, h)| rf.get(g) != Some(h)).count()
        + rf.keys().filter(|g| !t.contains_key(g)).count()
}

/// Distances from the converged directory over time, per server.
pub fn series(r: &RunReport) -> Series {
    let n = r.names.len();
    // Pass 1: the directory at the end of each converge step.
    let mut ends: Vec<u64> = r
        .steps
        .iter()
        .filter(|s| s.action == "converge")
        .map(|s| s.sim_ms)
        .collect();
    ends.push(r.sim_ms);
    let mut refs: Vec<(u64, Table)> = Vec::new();
    replay(r, |ev| {
        if let Ev::At(t, tables) = ev {
            while refs.len() < ends.len() && t > ends[refs.len()] {
                let first = tables.iter().flatten().next().cloned().unwrap_or_default();
                refs.push((ends[refs.len()], first));
            }
        }
    });
    if refs.is_empty() {
        return vec![Vec::new(); n];
    }
    // Pass 2: each server's distance from the reference of its stretch.
    let mut out: Series = vec![vec![(0, Some(refs[0].1.len()))]; n];
    let mut dist: Vec<Option<usize>> = vec![Some(refs[0].1.len()); n];
    let mut cur = 0;
    replay(r, |ev| match ev {
        Ev::At(t, tables) => {
            while cur + 1 < refs.len() && t > refs[cur].0 {
                cur += 1;
                for s in 0..n {
                    dist[s] = tables[s].as_ref().map(|tb| diff(tb, &refs[cur].1));
                    out[s].push((refs[cur - 1].0, dist[s]));
                }
            }
        }
        Ev::Changed(t, s, table, delta) => {
            let rf = &refs[cur].1;
            dist[s] = match (table, delta, dist[s]) {
                (None, _, _) => None,
                (Some(_), Some((g, old, new)), Some(d)) => {
                    let want = rf.get(&g).copied();
                    Some((d + (new != want) as usize).saturating_sub((old != want) as usize))
                }
                (Some(tb), _, _) => Some(diff(tb, rf)),
            };
            if out[s].last().map(|p| p.1) != Some(dist[s]) {
                out[s].push((t, dist[s]));
            }
        }
    });
    for (s, d) in dist.iter().enumerate() {
        out[s].push((r.sim_ms, *d));
    }
    out
}

/// The SVG document.
pub fn svg(r: &RunReport) -> Result<String, PlotError> {
    let data = series(r);
    let span = r.sim_ms.max(1);
    let (unit, div) = match span {
        s if s <= 2 * 3_600_000 => ("minutes", 60_000.0),
        s if s <= 3 * 86_400_000 => ("hours", 3_600_000.0),
        _ => ("days", 86_400_000.0),
    };
    let xmax = span as f64 / div;
    let ymax = data
        .iter()
        .flatten()
        .filter_map(|p| p.1)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (1100, 560)).into_drawing_area();
        let e = |e: &dyn std::fmt::Display| PlotError(e.to_string());
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&r.scenario, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..xmax * 1.02, (1f64..(ymax + 1.0) * 2.0).log_scale())
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc(format!("simulated time ({unit})"))
            .y_desc("objects differing from the converged directory")
            .y_label_formatter(&|v| format!("{}", (*v - 1.0).round()))
            .draw()
            .map_err(|x| e(&x))?;
        for s in &r.steps {
            let color = match s.action.as_str() {
                "crash" => RED,
                "restore" => GREEN,
                "partition" | "heal" => MAGENTA,
                "delete_connector" => BLACK,
                "converge" if s.ok => BLUE,
                "converge" => RGBColor(200, 120, 0),
                _ => continue,
            };
            let x = s.sim_ms as f64 / div;
            chart
                .draw_series(LineSeries::new(
                    [(x, 1.0), (x, (ymax + 1.0) * 2.0)],
                    color.stroke_width(1),
                ))
                .map_err(|x| e(&x))?;
            let label = if s.action == "converge" {
                "converge".to_string()
            } else {
                s.action.clone()
            };
            chart
                .draw_series(std::iter::once(Text::new(
                    label,
                    (x, (ymax + 1.0) * 1.6),
                    ("sans-serif", 11).into_font().color(&color),
                )))
                .map_err(|x| e(&x))?;
        }
        for (i, pts) in data.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            // A step line: a distance holds until the next change; gaps while down.
            let mut segs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
            let mut last: Option<f64> = None;
            for (t, d) in pts {
                let x = *t as f64 / div;
                match d {
                    Some(d) => {
                        if let Some(prev) = last {
                            segs.last_mut().expect("a segment").push((x, prev));
                        }
                        segs.last_mut()
                            .expect("a segment")
                            .push((x, *d as f64 + 1.0));
                        last = Some(*d as f64 + 1.0);
                    }
                    None => {
                        segs.push(Vec::new());
                        last = None;
                    }
                }
            }
            let mut first = true;
            for seg in segs.into_iter().filter(|s| !s.is_empty()) {
                let s = chart
                    .draw_series(LineSeries::new(seg, color.stroke_width(2)))
                    .map_err(|x| e(&x))?;
                if first {
                    s.label(r.names[i].clone()).legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2))
                    });
                    first = false;
                }
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|x| e(&x))?;
        root.present().map_err(|x| e(&x))?;
    }
    Ok(buf)
}

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
            // Changes at one instant (a restore loading a whole table) show
            // as their result, not as the steps in between.
            match out[s].last_mut() {
                Some(p) if p.0 == t => p.1 = dist[s],
                Some(p) if p.1 == dist[s] => {}
                _ => out[s].push((t, dist[s])),
            }
        }
    });
    for (s, d) in dist.iter().enumerate() {
        out[s].push((r.sim_ms, *d));
    }
    out
}

fn unit(span: u64) -> (&'static str, f64) {
    match span {
        s if s <= 2 * 3_600_000 => ("minutes", 60_000.0),
        s if s <= 3 * 86_400_000 => ("hours", 3_600_000.0),
        _ => ("days", 86_400_000.0),
    }
}

/// Draws one panel: the distances within `[from, to]` ms.
fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    r: &RunReport,
    data: &Series,
    (from, to): (u64, u64),
    caption: &str,
) -> Result<(), PlotError> {
    let e = |e: &dyn std::fmt::Display| PlotError(e.to_string());
    let span = (to - from).max(1);
    let (unit, div) = unit(span);
    let x0 = from as f64 / div;
    let x1 = to as f64 / div + span as f64 / div * 0.02;
    let inside = |t: u64| t >= from && t <= to;
    // The value each server holds at `from`, then its changes inside.
    let mut clipped: Vec<Vec<(u64, Option<usize>)>> = Vec::new();
    for pts in data {
        let mut v = Vec::new();
        if let Some(p) = pts.iter().rev().find(|p| p.0 <= from) {
            v.push((from, p.1));
        }
        v.extend(pts.iter().filter(|p| inside(p.0) && p.0 > from).copied());
        clipped.push(v);
    }
    let ymax = clipped
        .iter()
        .flatten()
        .filter_map(|p| p.1)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    // Log scale so that one lost object shows next to a thousand loaded;
    // zero sits on the baseline.
    let y = |d: usize| if d == 0 { 0.5 } else { d as f64 };
    let ytop = ymax * 3.0;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, (0.5f64..ytop).log_scale())
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc(format!("simulated time ({unit})"))
        .y_desc("objects differing")
        .y_label_formatter(&|v| {
            if *v < 0.9 {
                "0".into()
            } else {
                format!("{}", v.round())
            }
        })
        .draw()
        .map_err(|x| e(&x))?;
    let mut label_row = 0;
    for s in r.steps.iter().filter(|s| inside(s.sim_ms)) {
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
                [(x, 0.5), (x, ytop)],
                color.stroke_width(1),
            ))
            .map_err(|x| e(&x))?;
        // Markers at the same instant stack their labels instead of overprinting.
        label_row = (label_row + 1) % 4;
        let ly = ytop / 1.6f64.powi(label_row + 1);
        let label = if s.action == "converge" && !s.ok {
            "not converged".into()
        } else {
            s.action.clone()
        };
        chart
            .draw_series(std::iter::once(Text::new(
                label,
                (x, ly),
                ("sans-serif", 11).into_font().color(&color),
            )))
            .map_err(|x| e(&x))?;
    }
    for (i, pts) in clipped.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        // A step line: a distance holds until the next change; gaps while down.
        let mut segs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        let mut last: Option<f64> = None;
        for (t, d) in pts {
            let x = *t as f64 / div;
            let seg = segs.last_mut().expect("a segment");
            match d {
                Some(d) => {
                    if let Some(prev) = last {
                        seg.push((x, prev));
                    }
                    seg.push((x, y(*d)));
                    last = Some(y(*d));
                }
                None => {
                    segs.push(Vec::new());
                    last = None;
                }
            }
        }
        if let (Some(seg), Some(l)) = (segs.last_mut(), last) {
            seg.push((to as f64 / div, l));
        }
        let mut first = true;
        // Later servers draw thinner on top, so overlapping lines stay visible.
        let width = 5u32.saturating_sub(i as u32).max(1);
        for seg in segs.into_iter().filter(|s| !s.is_empty()) {
            let s = chart
                .draw_series(LineSeries::new(seg, color.stroke_width(width)))
                .map_err(|x| e(&x))?;
            if first {
                s.label(r.names[i].clone()).legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], color.stroke_width(3))
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
    Ok(())
}

/// The SVG document: the whole run, then a zoom on each restore (up to
/// three), from the restore to the end of the converge step after it.
pub fn svg(r: &RunReport) -> Result<String, PlotError> {
    let data = series(r);
    let restores: Vec<(u64, u64, String)> = r
        .steps
        .iter()
        .filter(|s| s.action == "restore")
        .take(3)
        .map(|s| {
            let end = r
                .steps
                .iter()
                .find(|c| c.index > s.index && c.action == "converge")
                .map_or(r.sim_ms, |c| c.sim_ms);
            let pad = ((end - s.sim_ms) / 10).max(1_000);
            let from = s.sim_ms.saturating_sub(pad);
            (from, end + pad, format!("zoom: {}", s.detail))
        })
        .collect();
    let height = 520 + 320 * restores.len() as u32;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (1100, height)).into_drawing_area();
        let e = |e: &dyn std::fmt::Display| PlotError(e.to_string());
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let (top, rest) = root.split_vertically(520);
        let title = format!(
            "{}: objects each server differs from the converged directory by",
            r.scenario
        );
        panel(&top, r, &data, (0, r.sim_ms.max(1)), &title)?;
        if !restores.is_empty() {
            for (area, (from, to, caption)) in
                rest.split_evenly((restores.len(), 1)).iter().zip(&restores)
            {
                panel(
                    area,
                    r,
                    &data,
                    (*from, (*to).min(r.sim_ms.max(*from + 1))),
                    caption,
                )?;
            }
        }
        root.present().map_err(|x| e(&x))?;
    }
    Ok(buf)
}

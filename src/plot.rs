//! The `--svg` plot: per server, how many objects it holds differently from
//! a reference directory, over simulated time, with each server's down,
//! backsync, resync and quarantined periods, backsync completions, and the
//! fault and convergence steps.
//!
//! The reference (also printed under the plot's title, [`REFERENCE`]): in
//! each replication component, the merge by the replication rules
//! (`core::object::merge`: higher stamp wins, tombstones absorb) of every
//! object state its running servers hold at that moment. It depends on no
//! one server's table and on nothing that happens later, so a server that
//! diverges differs from it until the end, and all servers of a component
//! are at zero exactly when they hold the same objects with the same
//! stamps. Writes that no running server holds any more (lost) are not in
//! it: the report counts them.
//!
//! Axes: distance on a symlog scale (`log10(1 + d)`: zero sits on its own
//! gridline, one lost object shows next to a thousand loaded); time as
//! `h:mm` from the start of the run (`h:mm:ss` on panels shorter than ten
//! minutes, `Nd h:mm` from the first day on).

use std::collections::HashMap;

use plotters::prelude::*;
use plotters::style::FontTransform;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::config::Granularity;
use crate::core::Guid;
use crate::core::object::{Merge, ObjectState, merge};
use crate::run::RunReport;
use crate::shell::observe::ChangeKind;

pub use crate::report::PLOT_REFERENCE as REFERENCE;

/// A plot that could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the plot: {0}")]
pub struct PlotError(String);

type State = ObjectState;
type Table = HashMap<Guid, State>;

/// Per server, (sim ms, distance) points; `None` while it is down.
pub type Series = Vec<Vec<(u64, Option<usize>)>>;

/// A stretch of time a server spent in a mode other than `running`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// Simulated ms it began.
    pub from: u64,
    /// Simulated ms it ended (the end of the run if it had not).
    pub to: u64,
    /// `down`, `backsync`, `resync` or `quarantined`.
    pub mode: &'static str,
}

/// The replay of the change log against the reference.
struct Replay {
    granularity: Granularity,
    tables: Vec<Option<Table>>,
    comps: Vec<Vec<usize>>,
    comp_of: Vec<usize>,
    /// The reference of each component.
    refs: Vec<Table>,
    dist: Vec<Option<usize>>,
}

impl Replay {
    fn new(n: usize, granularity: Granularity) -> Self {
        let mut r = Replay {
            granularity,
            tables: vec![Some(Table::new()); n],
            comps: Vec::new(),
            comp_of: vec![0; n],
            refs: Vec::new(),
            dist: vec![Some(0); n],
        };
        r.set_components(vec![(0..n).collect()]);
        r
    }

    fn set_components(&mut self, comps: Vec<Vec<usize>>) {
        for (c, members) in comps.iter().enumerate() {
            for &s in members {
                self.comp_of[s] = c;
            }
        }
        self.refs = vec![Table::new(); comps.len()];
        self.comps = comps;
        for c in 0..self.comps.len() {
            self.recompute(c);
        }
    }

    /// The merge of what the running servers of component `c` hold of `g`.
    fn merged(&self, c: usize, g: Guid) -> Option<State> {
        let mut acc: Option<State> = None;
        for &o in &self.comps[c] {
            let Some(s) = self.tables[o].as_ref().and_then(|t| t.get(&g)) else {
                continue;
            };
            acc = Some(match acc {
                None => s.clone(),
                Some(a) => match merge(&a, s, self.granularity) {
                    Merge::Keep => a,
                    Merge::Take => s.clone(),
                    Merge::New(m) => m,
                },
            });
        }
        acc
    }

    fn differs(&self, o: usize, g: Guid, rf: Option<&State>) -> bool {
        let held = self.tables[o].as_ref().and_then(|t| t.get(&g));
        held.map(|s| s.hash()) != rf.map(|s| s.hash())
    }

    /// Rebuilds component `c`'s reference and its servers' distances.
    fn recompute(&mut self, c: usize) {
        let mut guids: Vec<Guid> = Vec::new();
        for &o in &self.comps[c] {
            if let Some(t) = &self.tables[o] {
                guids.extend(t.keys().copied());
            }
        }
        guids.sort_unstable();
        guids.dedup();
        let rf: Table = guids
            .into_iter()
            .filter_map(|g| self.merged(c, g).map(|s| (g, s)))
            .collect();
        for &o in &self.comps[c] {
            self.dist[o] = self.tables[o].as_ref().map(|_| {
                rf.iter()
                    .filter(|(g, s)| self.differs(o, **g, Some(s)))
                    .count()
            });
        }
        self.refs[c] = rf;
    }

    /// Applies one change; returns the servers whose distance may have changed.
    fn apply(&mut self, s: usize, kind: &ChangeKind) -> Vec<usize> {
        let c = self.comp_of[s];
        let (g, new) = match kind {
            ChangeKind::Put(g, st) => (*g, Some(st.clone())),
            ChangeKind::Remove(g) => (*g, None),
            ChangeKind::Down => {
                self.tables[s] = None;
                self.recompute(c);
                return self.comps[c].clone();
            }
            ChangeKind::Reset => {
                self.tables[s] = Some(Table::new());
                self.recompute(c);
                return self.comps[c].clone();
            }
            ChangeKind::Mode(_) => return Vec::new(),
        };
        let running: Vec<usize> = (self.comps[c].iter().copied())
            .filter(|&o| self.tables[o].is_some())
            .collect();
        let old_ref = self.refs[c].get(&g).cloned();
        let before: Vec<bool> = (running.iter())
            .map(|&o| self.differs(o, g, old_ref.as_ref()))
            .collect();
        let t = self.tables[s].get_or_insert_with(Table::new);
        match new {
            Some(st) => t.insert(g, st),
            None => t.remove(&g),
        };
        if self.dist[s].is_none() {
            // A change on a server thought down: start it from scratch.
            self.recompute(c);
            return self.comps[c].clone();
        }
        let new_ref = self.merged(c, g);
        for (&o, b) in running.iter().zip(before) {
            let a = self.differs(o, g, new_ref.as_ref());
            if let Some(d) = &mut self.dist[o] {
                *d = (*d + a as usize).saturating_sub(b as usize);
            }
        }
        match new_ref {
            Some(st) => self.refs[c].insert(g, st),
            None => self.refs[c].remove(&g),
        };
        running
    }
}

fn push(pts: &mut Vec<(u64, Option<usize>)>, t: u64, d: Option<usize>) {
    // Changes at one instant (a restore loading a whole table) show as
    // their result, not as the steps in between.
    match pts.last_mut() {
        Some(p) if p.0 == t => p.1 = d,
        Some(p) if p.1 == d => {}
        _ => pts.push((t, d)),
    }
}

/// Distances from the reference ([`REFERENCE`]) over time, per server.
pub fn series(r: &RunReport) -> Series {
    let n = r.names.len();
    let mut rp = Replay::new(n, r.granularity);
    let mut comps = r.components.iter().peekable();
    if let Some((_, first)) = comps.next_if(|(t, _)| *t == 0) {
        rp.set_components(first.clone());
    }
    let mut out: Series = vec![vec![(0, Some(0))]; n];
    for c in &r.changes {
        if let Some((t, cs)) = comps.next_if(|(t, _)| c.sim_ms >= *t) {
            rp.set_components(cs.clone());
            for (s, pts) in out.iter_mut().enumerate() {
                push(pts, *t, rp.dist[s]);
            }
        }
        for s in rp.apply(c.server, &c.kind) {
            push(&mut out[s], c.sim_ms, rp.dist[s]);
        }
    }
    for (s, pts) in out.iter_mut().enumerate() {
        if pts.last().is_some_and(|p| p.0 < r.sim_ms) {
            pts.push((r.sim_ms, rp.dist[s]));
        }
    }
    out
}

/// Each server's periods out of `running`, from the recorded mode changes.
pub fn periods(r: &RunReport) -> Vec<Vec<Period>> {
    let n = r.names.len();
    let mut out = vec![Vec::new(); n];
    let mut cur: Vec<(&'static str, u64)> = vec![("running", 0); n];
    for c in &r.changes {
        if let ChangeKind::Mode(m) = c.kind
            && cur[c.server].0 != m
        {
            let (was, since) = cur[c.server];
            if was != "running" && c.sim_ms > since {
                out[c.server].push(Period {
                    from: since,
                    to: c.sim_ms,
                    mode: was,
                });
            }
            cur[c.server] = (m, c.sim_ms);
        }
    }
    for (s, (m, since)) in cur.into_iter().enumerate() {
        if m != "running" {
            out[s].push(Period {
                from: since,
                to: r.sim_ms.max(since + 1),
                mode: m,
            });
        }
    }
    out
}

/// A numbered step marker.
struct Marker {
    n: usize,
    t: u64,
    text: String,
}

fn markers(r: &RunReport) -> Vec<Marker> {
    let marked = [
        "crash",
        "restore",
        "partition",
        "heal",
        "delete_connector",
        "converge",
    ];
    r.steps
        .iter()
        .filter(|s| marked.contains(&s.action.as_str()))
        .enumerate()
        .map(|(i, s)| Marker {
            n: i + 1,
            t: s.sim_ms,
            text: format!("step {} {}: {}", s.index, s.action, s.detail),
        })
        .collect()
}

/// `h:mm` (or `h:mm:ss`, `Nd h:mm`) of a simulated time.
pub fn clock(ms: u64, seconds: bool) -> String {
    let s = ms / 1000;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let day = if d > 0 {
        format!("{d}d ")
    } else {
        String::new()
    };
    if seconds {
        format!("{day}{h}:{m:02}:{sec:02}")
    } else {
        format!("{day}{h}:{m:02}")
    }
}

fn tick_step(span: u64) -> u64 {
    const STEPS: [u64; 22] = [
        1_000,
        2_000,
        5_000,
        10_000,
        15_000,
        30_000,
        60_000,
        120_000,
        300_000,
        600_000,
        900_000,
        1_800_000,
        3_600_000,
        7_200_000,
        10_800_000,
        21_600_000,
        43_200_000,
        86_400_000,
        172_800_000,
        432_000_000,
        864_000_000,
        2_592_000_000,
    ];
    (STEPS.iter().copied())
        .find(|s| span / s <= 10)
        .unwrap_or(2_592_000_000)
}

const W: i32 = 1240;
const LEGEND_W: i32 = 230;
const PL: i32 = 80;
const PR: i32 = W - LEGEND_W - 20;
const PH: i32 = 250;
const LANE: i32 = 15;
const ROW: i32 = 14;
const CHAR_W: f64 = 6.4;

const SERVER_COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn server_color(i: usize) -> RGBColor {
    SERVER_COLORS[i % SERVER_COLORS.len()]
}

const MODES: [(&str, RGBColor); 4] = [
    ("down", RGBColor(120, 120, 120)),
    ("backsync", RGBColor(245, 170, 60)),
    ("resync", RGBColor(120, 170, 230)),
    ("quarantined", RGBColor(205, 70, 70)),
];

fn mode_color(m: &str) -> RGBColor {
    (MODES.iter().find(|(n, _)| *n == m)).map_or(RGBColor(0, 0, 0), |(_, c)| *c)
}

const NEUTRAL: RGBColor = RGBColor(90, 90, 90);

fn text_width(s: &str) -> i32 {
    (s.chars().count() as f64 * CHAR_W) as i32 + 6
}

/// One panel's layout: a time range and its marker labels in rows.
struct Panel {
    from: u64,
    to: u64,
    caption: String,
    /// (label, x pixel, row) per group of markers too close to tell apart.
    labels: Vec<(String, i32, i32)>,
    rows: i32,
}

impl Panel {
    fn x(&self, t: u64) -> i32 {
        let span = (self.to - self.from).max(1) as f64;
        PL + ((t.saturating_sub(self.from)) as f64 / span * (PR - PL) as f64).round() as i32
    }

    fn new(from: u64, to: u64, caption: String, marks: &[Marker]) -> Self {
        let mut p = Panel {
            from,
            to: to.max(from + 1),
            caption,
            labels: Vec::new(),
            rows: 1,
        };
        // Markers a few pixels apart share one label: "3" or "3-5".
        let mut groups: Vec<(usize, usize, i32)> = Vec::new();
        for m in marks.iter().filter(|m| m.t >= p.from && m.t <= p.to) {
            let x = p.x(m.t);
            match groups.last_mut() {
                Some(g) if x - g.2 <= 4 => g.1 = m.n,
                _ => groups.push((m.n, m.n, x)),
            }
        }
        // Each label on the first row where it overlaps no other.
        let mut taken: Vec<Vec<(i32, i32)>> = Vec::new();
        for (a, b, x) in groups {
            let label = if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            };
            let w = text_width(&label);
            let (l, r) = (x - w / 2, x + w / 2);
            let row = (0..)
                .find(|&i| {
                    taken
                        .get(i)
                        .is_none_or(|v: &Vec<(i32, i32)>| v.iter().all(|&(a, b)| r < a || l > b))
                })
                .expect("some row is free");
            if taken.len() <= row {
                taken.resize(row + 1, Vec::new());
            }
            taken[row].push((l, r));
            p.labels.push((label, x, row as i32));
        }
        p.rows = (taken.len() as i32).max(1);
        p
    }

    fn height(&self, servers: usize) -> i32 {
        24 + self.rows * ROW + 6 + PH + 8 + servers as i32 * LANE + 40
    }
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn e(x: impl std::fmt::Display) -> PlotError {
    PlotError(x.to_string())
}

fn text(
    area: &Area<'_>,
    s: &str,
    (x, y): (i32, i32),
    size: u32,
    color: RGBColor,
    h: HPos,
) -> Result<(), PlotError> {
    let style = TextStyle::from(("sans-serif", size).into_font())
        .color(&color)
        .pos(Pos::new(h, VPos::Center));
    area.draw(&Text::new(s.to_string(), (x, y), style))
        .map_err(e)
}

fn line(area: &Area<'_>, pts: Vec<(i32, i32)>, style: ShapeStyle) -> Result<(), PlotError> {
    area.draw(&PathElement::new(pts, style)).map_err(e)
}

fn rect(area: &Area<'_>, a: (i32, i32), b: (i32, i32), style: ShapeStyle) -> Result<(), PlotError> {
    area.draw(&Rectangle::new([a, b], style)).map_err(e)
}

fn symlog(d: usize) -> f64 {
    (1.0 + d as f64).log10()
}

#[allow(clippy::too_many_arguments)]
fn draw_panel(
    area: &Area<'_>,
    top: i32,
    p: &Panel,
    r: &RunReport,
    data: &Series,
    modes: &[Vec<Period>],
    marks: &[Marker],
) -> Result<(), PlotError> {
    let n = r.names.len();
    text(area, &p.caption, (PL, top + 10), 14, BLACK, HPos::Left)?;
    let labels_top = top + 24;
    let y0 = labels_top + p.rows * ROW + 6; // plot top
    let y1 = y0 + PH; // plot bottom
    let lanes_top = y1 + 8;
    let lanes_bottom = lanes_top + n as i32 * LANE;
    let inside = |t: u64| t >= p.from && t <= p.to;
    // Values: the one held at `from`, then the changes inside.
    let clipped: Vec<Vec<(u64, Option<usize>)>> = data
        .iter()
        .map(|pts| {
            let mut v: Vec<(u64, Option<usize>)> = Vec::new();
            if let Some(q) = pts.iter().rev().find(|q| q.0 <= p.from) {
                v.push((p.from, q.1));
            }
            v.extend(pts.iter().filter(|q| inside(q.0) && q.0 > p.from).copied());
            v
        })
        .collect();
    let ymax = clipped
        .iter()
        .flatten()
        .filter_map(|q| q.1)
        .max()
        .unwrap_or(0);
    let mut keys: Vec<usize> = vec![0];
    let mut k = 1usize;
    loop {
        for m in [1, 2, 5] {
            keys.push(k * m);
        }
        if *keys.last().expect("keys") >= ymax.max(2) {
            break;
        }
        k *= 10;
    }
    while keys.len() > 2 && keys[keys.len() - 2] >= ymax.max(2) {
        keys.pop();
    }
    let ftop = symlog(*keys.last().expect("keys"));
    let fmin = -0.05 * ftop;
    let ypx = |d: usize| y1 - ((symlog(d) - fmin) / (ftop - fmin) * PH as f64).round() as i32;
    // Frame, gridlines, axes.
    rect(area, (PL, y0), (PR, y1), WHITE.filled())?;
    let grid = RGBColor(225, 225, 225).stroke_width(1);
    for &kv in &keys {
        let y = ypx(kv);
        line(area, vec![(PL, y), (PR, y)], grid)?;
        text(area, &kv.to_string(), (PL - 6, y), 11, BLACK, HPos::Right)?;
    }
    let step = tick_step(p.to - p.from);
    let seconds = p.to - p.from < 600_000;
    let mut t = p.from.div_ceil(step) * step;
    while t <= p.to {
        let x = p.x(t);
        line(area, vec![(x, y0), (x, y1)], grid)?;
        line(
            area,
            vec![(x, lanes_bottom), (x, lanes_bottom + 4)],
            BLACK.stroke_width(1),
        )?;
        text(
            area,
            &clock(t, seconds),
            (x, lanes_bottom + 12),
            11,
            BLACK,
            HPos::Center,
        )?;
        t += step;
    }
    let unit = if seconds { "h:mm:ss" } else { "h:mm" };
    text(
        area,
        &format!("simulated time since the start ({unit})"),
        ((PL + PR) / 2, lanes_bottom + 28),
        11,
        BLACK,
        HPos::Center,
    )?;
    let title = TextStyle::from(("sans-serif", 11).into_font())
        .transform(FontTransform::Rotate270)
        .pos(Pos::new(HPos::Center, VPos::Center));
    area.draw(&Text::new(
        "objects differing (symlog)",
        (PL - 58, (y0 + y1) / 2),
        title,
    ))
    .map_err(e)?;
    // Lanes: each server's periods out of `running`.
    for (i, name) in r.names.iter().enumerate() {
        let ly = lanes_top + i as i32 * LANE;
        rect(
            area,
            (PL, ly + 2),
            (PR, ly + LANE - 2),
            RGBColor(242, 242, 242).filled(),
        )?;
        rect(
            area,
            (PL - 4, ly + 2),
            (PL - 1, ly + LANE - 2),
            server_color(i).filled(),
        )?;
        // The margin holds about 12 characters; the legend has the full name.
        let short = if name.chars().count() > 12 {
            format!("{}…", name.chars().take(11).collect::<String>())
        } else {
            name.to_string()
        };
        text(
            area,
            &short,
            (PL - 8, ly + LANE / 2),
            10,
            BLACK,
            HPos::Right,
        )?;
        for q in modes[i].iter().filter(|q| q.to >= p.from && q.from <= p.to) {
            let (a, b) = (p.x(q.from.max(p.from)), p.x(q.to.min(p.to)));
            rect(
                area,
                (a, ly + 2),
                (b.max(a + 1), ly + LANE - 2),
                mode_color(q.mode).filled(),
            )?;
        }
        for b in r.backsyncs.iter().filter(|b| &b.server == name) {
            let Some(end) = b.ended_ms.filter(|t| inside(*t)) else {
                continue;
            };
            let (x, y) = (p.x(end), ly + LANE / 2);
            if b.outcome == "complete" {
                area.draw(&Polygon::new(
                    vec![(x - 5, y + 5), (x + 5, y + 5), (x, y - 5)],
                    BLACK.filled(),
                ))
                .map_err(e)?;
            } else {
                area.draw(&Cross::new((x, y), 5, BLACK.stroke_width(2)))
                    .map_err(e)?;
            }
        }
    }
    // Step markers: one neutral style, numbered; the key below says what each is.
    for m in marks.iter().filter(|m| inside(m.t)) {
        let x = p.x(m.t);
        line(
            area,
            vec![(x, y0), (x, lanes_bottom)],
            NEUTRAL.mix(0.6).stroke_width(1),
        )?;
    }
    for (label, x, row) in &p.labels {
        let y = labels_top + row * ROW + ROW / 2;
        line(
            area,
            vec![(*x, y + ROW / 2), (*x, y0)],
            NEUTRAL.mix(0.6).stroke_width(1),
        )?;
        let w = text_width(label);
        rect(
            area,
            (x - w / 2, y - ROW / 2 + 1),
            (x + w / 2, y + ROW / 2 - 1),
            WHITE.filled(),
        )?;
        text(area, label, (*x, y), 11, NEUTRAL, HPos::Center)?;
    }
    // Distances: step lines, gaps while down; the first server widest, so
    // lines lying on one another all stay visible.
    for (i, pts) in clipped.iter().enumerate() {
        let color = server_color(i);
        let width = 5u32.saturating_sub(i as u32).max(1);
        let mut seg: Vec<(i32, i32)> = Vec::new();
        let mut last: Option<i32> = None;
        for (t, d) in pts {
            let x = p.x(*t);
            match d {
                Some(d) => {
                    if let Some(prev) = last {
                        seg.push((x, prev));
                    }
                    seg.push((x, ypx(*d)));
                    last = Some(ypx(*d));
                }
                None => {
                    if !seg.is_empty() {
                        line(area, std::mem::take(&mut seg), color.stroke_width(width))?;
                    }
                    last = None;
                }
            }
        }
        if let Some(l) = last {
            seg.push((PR, l));
        }
        if !seg.is_empty() {
            line(area, seg, color.stroke_width(width))?;
        }
    }
    line(
        area,
        vec![(PL, y0), (PL, y1), (PR, y1)],
        BLACK.stroke_width(1),
    )?;
    Ok(())
}

fn wrap(s: &str, width: usize) -> Vec<String> {
    let mut out = vec![String::new()];
    for w in s.split(' ') {
        let cur = out.last_mut().expect("a line");
        if !cur.is_empty() && cur.len() + 1 + w.len() > width {
            out.push(w.to_string());
        } else {
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(w);
        }
    }
    out
}

/// The legend, right of the panels.
fn legend(area: &Area<'_>, top: i32, r: &RunReport) -> Result<(), PlotError> {
    let x = PR + 30;
    let mut y = top;
    text(area, "servers", (x, y), 12, BLACK, HPos::Left)?;
    y += 18;
    for (i, name) in r.names.iter().enumerate() {
        let w = 5u32.saturating_sub(i as u32).max(1);
        line(
            area,
            vec![(x, y), (x + 24, y)],
            server_color(i).stroke_width(w),
        )?;
        text(area, name, (x + 32, y), 11, BLACK, HPos::Left)?;
        y += 16;
    }
    y += 8;
    text(
        area,
        "lanes: periods out of running",
        (x, y),
        12,
        BLACK,
        HPos::Left,
    )?;
    y += 18;
    for (m, c) in MODES {
        rect(area, (x, y - 5), (x + 24, y + 5), c.filled())?;
        text(area, m, (x + 32, y), 11, BLACK, HPos::Left)?;
        y += 16;
    }
    area.draw(&Polygon::new(
        vec![(x + 7, y + 5), (x + 17, y + 5), (x + 12, y - 5)],
        BLACK.filled(),
    ))
    .map_err(e)?;
    text(
        area,
        "backsync complete",
        (x + 32, y),
        11,
        BLACK,
        HPos::Left,
    )?;
    y += 16;
    area.draw(&Cross::new((x + 12, y), 5, BLACK.stroke_width(2)))
        .map_err(e)?;
    text(area, "backsync gave up", (x + 32, y), 11, BLACK, HPos::Left)?;
    y += 24;
    line(
        area,
        vec![(x + 12, y - 7), (x + 12, y + 7)],
        NEUTRAL.stroke_width(1),
    )?;
    text(
        area,
        "numbered step: key below",
        (x + 32, y),
        11,
        BLACK,
        HPos::Left,
    )?;
    Ok(())
}

/// The SVG document: the whole run, then a zoom after each restore (up to
/// three), from just before it until the restored server first matches the
/// reference again (or the next `converge` step ends); the key of the
/// numbered step markers below.
pub fn svg(r: &RunReport) -> Result<String, PlotError> {
    let data = series(r);
    let modes = periods(r);
    let marks = markers(r);
    let end = r.sim_ms.max(1);
    let mut panels = vec![Panel::new(0, end, "the whole run".into(), &marks)];
    for s in r.steps.iter().filter(|s| s.action == "restore").take(3) {
        let server = r
            .names
            .iter()
            .position(|n| s.detail.starts_with(&format!("{n} ")));
        let back = server.and_then(|i| {
            (data[i].iter())
                .find(|q| q.0 > s.sim_ms && q.1 == Some(0))
                .map(|q| q.0)
        });
        let until = back.unwrap_or_else(|| {
            (r.steps.iter())
                .find(|c| c.index > s.index && c.action == "converge")
                .map_or(end, |c| c.sim_ms)
        });
        let pad = ((until - s.sim_ms) / 5).max(5_000);
        let (from, to) = (s.sim_ms.saturating_sub(pad), (until + pad).min(end));
        if (to - from) * 5 >= end * 4 {
            continue; // the whole run shows it already
        }
        panels.push(Panel::new(from, to, format!("zoom: {}", s.detail), &marks));
    }
    let n = r.names.len();
    let header = 70;
    let key_w = ((W - 40) as f64 / CHAR_W) as usize;
    let key: Vec<String> = marks
        .iter()
        .map(|m| {
            let mut l = format!("{}  {}  {}", m.n, clock(m.t, true), m.text);
            if l.chars().count() > key_w {
                l = l.chars().take(key_w.saturating_sub(1)).collect::<String>() + "…";
            }
            l
        })
        .collect();
    let body: i32 = panels.iter().map(|p| p.height(n)).sum();
    let height = header + body + 30 + key.len() as i32 * 15 + 10;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (W as u32, height as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let title = format!(
            "{}: objects each server holds differently from the reference",
            r.scenario
        );
        text(&root, &title, (20, 16), 17, BLACK, HPos::Left)?;
        for (i, l) in wrap(REFERENCE, 170).iter().enumerate() {
            text(&root, l, (20, 38 + i as i32 * 15), 12, NEUTRAL, HPos::Left)?;
        }
        legend(&root, header + 40, r)?;
        let mut top = header;
        for p in &panels {
            draw_panel(&root, top, p, r, &data, &modes, &marks)?;
            top += p.height(n);
        }
        text(&root, "steps marked", (20, top + 10), 12, BLACK, HPos::Left)?;
        for (i, l) in key.iter().enumerate() {
            text(
                &root,
                l,
                (20, top + 28 + i as i32 * 15),
                11,
                NEUTRAL,
                HPos::Left,
            )?;
        }
        root.present().map_err(e)?;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_h_mm_with_seconds_and_days_when_asked() {
        assert_eq!(clock(0, false), "0:00");
        assert_eq!(clock(3_723_000, false), "1:02");
        assert_eq!(clock(3_723_000, true), "1:02:03");
        assert_eq!(clock(90_000_000, false), "1d 1:00");
    }

    #[test]
    fn marker_labels_never_overlap() {
        // Steps at one instant, a few pixels apart, and far apart.
        let times = [0, 0, 0, 10, 2_000, 2_500, 3_000, 60_000, 60_100, 3_600_000];
        let marks: Vec<Marker> = (times.iter().enumerate())
            .map(|(i, &t)| Marker {
                n: i + 1,
                t,
                text: String::new(),
            })
            .collect();
        let p = Panel::new(0, 3_600_000, String::new(), &marks);
        // Every marker is in some label.
        let shown: usize = (p.labels.iter())
            .map(|(l, _, _)| match l.split_once('-') {
                Some((a, b)) => b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1,
                None => 1,
            })
            .sum();
        assert_eq!(shown, marks.len());
        for (i, (a, xa, ra)) in p.labels.iter().enumerate() {
            for (b, xb, rb) in &p.labels[i + 1..] {
                let apart = (xa - xb).abs() * 2 > text_width(a) + text_width(b);
                assert!(ra != rb || apart, "{a} and {b} overlap in row {ra}");
            }
        }
        assert!(p.rows >= 2, "labels close together take rows");
    }

    #[test]
    fn ticks_stay_few() {
        for span in [1_000, 59_000, 3_600_000, 86_400_000, 4 * 86_400_000] {
            let n = span / tick_step(span);
            assert!((1..=10).contains(&n), "{span}: {n}");
        }
    }
}

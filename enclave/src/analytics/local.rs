//! Inside one node: the party's rows ([`Table`]), its exact local aggregates for a job
//! ([`LocalStats`]), the layout of those aggregates ([`Layout`]) and the consistency checks
//! they must pass when shared ([`CheckGroup`]).
//!
//! # Layout
//!
//! A job's sufficient statistics are a vector of integers, **stat-major**: statistic k of
//! group g is at `k·groups + g`, so one statistic over all groups is one contiguous slice
//! and every check and formula is a vector operation over the groups.
//!
//! - [`Shape::Moments`]: per group the count, Σ z_i for each dimension i, and (with second
//!   moments) Σ z_i·z_j for i ≤ j; z is the row's clipped values (weighted mean: z = (w, w·x)).
//! - [`Shape::Bins`]: the count of rows per bin (one group).
//!
//! # Consistency checks (DESIGN §5)
//!
//! Every party's shared aggregates are range-checked exactly inside the computation, for
//! R = `max_rows` and clipping bounds [lo_i, hi_i]:
//! - row counts: 0 ≤ count ≤ R (bins: each bin and their sum);
//! - sums: count·lo_i ≤ Σ z_i ≤ count·hi_i (so |sum| ≤ count·bound);
//! - second moments: count·min(z_i·z_j) ≤ Σ z_i·z_j ≤ count·max(z_i·z_j);
//! - Cauchy–Schwarz: 0 ≤ count·Σ z_i² − (Σ z_i)² ≤ R²·(hi_i − lo_i)²/4.
//!
//! Local aggregates are exact integers (i128: |Σ z_i·z_j| < 2^32·2^62 = 2^94 for R ≤ 2^32
//! and bounds within ±2^31).

use super::AnalyticsError;
use super::spec::{Analysis, AnalyticsSpec, Bounds};
use crate::field::Field;
use num_bigint::BigInt;
use std::collections::BTreeMap;

/// One party's rows: named integer columns of equal length (horizontal partitioning: every
/// party holds the same columns).
#[derive(Clone, PartialEq, Eq)]
pub struct Table {
    columns: BTreeMap<String, Vec<i64>>,
    rows: usize,
}

impl core::fmt::Debug for Table {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Rows are a party's private data: never printed.
        f.debug_struct("Table")
            .field("columns", &self.columns.keys().collect::<Vec<_>>())
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl Table {
    /// A table from named columns; refuses columns of different lengths.
    pub fn new(
        columns: impl IntoIterator<Item = (String, Vec<i64>)>,
    ) -> Result<Self, AnalyticsError> {
        let columns: BTreeMap<String, Vec<i64>> = columns.into_iter().collect();
        let rows = columns.values().next().map_or(0, Vec::len);
        if let Some((name, c)) = columns.iter().find(|(_, c)| c.len() != rows) {
            return Err(AnalyticsError::Data(format!(
                "column {name:?} has {} rows, the others {rows}: every column needs one value per row",
                c.len()
            )));
        }
        Ok(Self { columns, rows })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// A column.
    pub fn column(&self, name: &str) -> Result<&[i64], AnalyticsError> {
        self.columns.get(name).map(Vec::as_slice).ok_or_else(|| {
            AnalyticsError::Data(format!(
                "the job reads column {name:?}, which this dataset does not have (it has {:?})",
                self.columns.keys().collect::<Vec<_>>()
            ))
        })
    }
}

/// What the sufficient statistics of one group look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Count, first moments and optionally second moments of `dims` clipped values.
    Moments {
        /// Bounds of each dimension of z.
        dims: Vec<(i128, i128)>,
        /// Whether Σ z_i·z_j (i ≤ j) are included.
        second: bool,
    },
    /// Counts per bin.
    Bins {
        /// Number of bins.
        bins: usize,
    },
}

/// The layout of a job's statistics vector (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Groups (1 without a group-by).
    pub groups: usize,
    /// Per-group shape.
    pub shape: Shape,
}

/// Index of Σ z_i·z_j (i ≤ j) among the second moments.
pub fn tri(d: usize, i: usize, j: usize) -> usize {
    let (i, j) = if i <= j { (i, j) } else { (j, i) };
    i * d - i * (i.saturating_sub(1)) / 2 + (j - i)
}

impl Layout {
    /// From a validated spec.
    pub fn of(spec: &AnalyticsSpec) -> Result<Self, AnalyticsError> {
        let groups = spec
            .analysis
            .group_by()
            .map_or(1, |g| g.edges.len().saturating_sub(1));
        let b = |c: &str| -> Result<(i128, i128), AnalyticsError> {
            let Bounds { min, max } = spec.bounds_of(c)?;
            Ok((i128::from(min), i128::from(max)))
        };
        let moments = |cols: &[&str], second: bool| -> Result<Shape, AnalyticsError> {
            Ok(Shape::Moments {
                dims: cols.iter().map(|c| b(c)).collect::<Result<_, _>>()?,
                second,
            })
        };
        let shape = match &spec.analysis {
            Analysis::Count { .. } => moments(&[], false)?,
            Analysis::Sum { column, .. } | Analysis::Mean { column, .. } => {
                moments(&[column], false)?
            }
            Analysis::Variance { column, .. } => moments(&[column], true)?,
            Analysis::WeightedMean { column, weight, .. } => {
                let (xl, xh) = b(column)?;
                let (wl, wh) = b(weight)?;
                let corners = [wl * xl, wl * xh, wh * xl, wh * xh];
                let lo = corners.iter().copied().min().unwrap_or(0);
                let hi = corners.iter().copied().max().unwrap_or(0);
                Shape::Moments {
                    dims: vec![(wl, wh), (lo, hi)],
                    second: false,
                }
            }
            Analysis::Histogram { edges, .. }
            | Analysis::Quantiles { edges, .. }
            | Analysis::Min { edges, .. }
            | Analysis::Max { edges, .. } => Shape::Bins {
                bins: edges.len().saturating_sub(1),
            },
            Analysis::Correlation { .. }
            | Analysis::Covariance { .. }
            | Analysis::LinearRegression { .. } => moments(&spec.analysis.value_columns(), true)?,
        };
        Ok(Self { groups, shape })
    }

    /// Statistics per group.
    pub fn per_group(&self) -> usize {
        match &self.shape {
            Shape::Moments { dims, second } => {
                let d = dims.len();
                1 + d + if *second { d * (d + 1) / 2 } else { 0 }
            }
            Shape::Bins { bins } => *bins,
        }
    }

    /// The released cells: the bins of a histogram, else the groups (1 without a group-by).
    pub fn cells(&self) -> usize {
        match &self.shape {
            Shape::Bins { bins } => *bins,
            Shape::Moments { .. } => self.groups,
        }
    }

    /// This party's row count in each cell, from its aggregates.
    pub fn cell_counts(&self, stats: &LocalStats) -> Vec<i128> {
        match &self.shape {
            Shape::Bins { bins } => stats.0.iter().take(*bins).copied().collect(),
            Shape::Moments { .. } => (0..self.groups)
                .map(|g| {
                    stats
                        .0
                        .get(self.count() * self.groups + g)
                        .copied()
                        .unwrap_or(0)
                })
                .collect(),
        }
    }

    /// Length of the whole vector.
    pub fn len(&self) -> usize {
        self.per_group() * self.groups
    }

    /// Whether the vector is empty (never, for a valid spec).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The statistic index of the count (moments).
    pub fn count(&self) -> usize {
        0
    }

    /// The statistic index of Σ z_i.
    pub fn first(&self, i: usize) -> usize {
        1 + i
    }

    /// The statistic index of Σ z_i·z_j.
    pub fn second(&self, i: usize, j: usize) -> usize {
        match &self.shape {
            Shape::Moments { dims, .. } => 1 + dims.len() + tri(dims.len(), i, j),
            Shape::Bins { .. } => 0,
        }
    }

    /// The largest |value| of each statistic of one party holding at most `rows` rows (per
    /// statistic index within a group).
    pub fn stat_bounds(&self, rows: u64) -> Vec<BigInt> {
        let r = BigInt::from(rows);
        match &self.shape {
            Shape::Bins { bins } => vec![r; *bins],
            Shape::Moments { dims, second } => {
                let mut out = vec![r.clone()];
                for &(lo, hi) in dims {
                    out.push(&r * BigInt::from(lo.abs().max(hi.abs())));
                }
                if *second {
                    for i in 0..dims.len() {
                        for j in i..dims.len() {
                            let (a, b) = pair_bounds(dims[i], dims[j]);
                            out.push(&r * BigInt::from(a.abs().max(b.abs())));
                        }
                    }
                }
                out
            }
        }
    }

    /// The L2 sensitivity of the whole vector to adding or removing one record: it falls in
    /// one group (one bin) and changes each of that group's statistics by at most the
    /// statistic's per-row bound.
    pub fn l2_sensitivity(&self) -> f64 {
        match self.shape {
            Shape::Bins { .. } => 1.0,
            Shape::Moments { .. } => self
                .stat_bounds(1)
                .iter()
                .map(|b| {
                    let v = b.to_string().parse::<f64>().unwrap_or(f64::MAX);
                    v * v
                })
                .sum::<f64>()
                .sqrt(),
        }
    }
}

/// Names of the statistics of a group (for reports): "count", "Σ bp", "Σ age·bp", or
/// "count in bin b".
pub fn stat_names(spec: &AnalyticsSpec, layout: &Layout) -> Vec<String> {
    match &layout.shape {
        Shape::Bins { bins } => (0..*bins).map(|b| format!("count in bin {b}")).collect(),
        Shape::Moments { dims, second } => {
            let cols: Vec<String> = match &spec.analysis {
                Analysis::WeightedMean { column, weight, .. } => {
                    vec![weight.clone(), format!("{weight}·{column}")]
                }
                a => a.value_columns().iter().map(|c| (*c).to_owned()).collect(),
            };
            let mut out = vec!["count".to_owned()];
            out.extend(cols.iter().map(|c| format!("Σ {c}")));
            if *second {
                for i in 0..dims.len() {
                    for j in i..dims.len() {
                        out.push(if i == j {
                            format!("Σ {}²", cols[i])
                        } else {
                            format!("Σ {}·{}", cols[i], cols[j])
                        });
                    }
                }
            }
            out
        }
    }
}

/// [min, max] of z_i·z_j over the box.
pub fn pair_bounds(a: (i128, i128), b: (i128, i128)) -> (i128, i128) {
    if a == b {
        // A square: 0 if the interval contains 0.
        let lo = if a.0 <= 0 && a.1 >= 0 {
            0
        } else {
            (a.0 * a.0).min(a.1 * a.1)
        };
        return (lo, (a.0 * a.0).max(a.1 * a.1));
    }
    let c = [a.0 * b.0, a.0 * b.1, a.1 * b.0, a.1 * b.1];
    (
        c.iter().copied().min().unwrap_or(0),
        c.iter().copied().max().unwrap_or(0),
    )
}

/// Bin of `v` for strictly increasing `edges` (values outside go to the end bins).
pub fn bin_of(edges: &[i64], v: i64) -> usize {
    let bins = edges.len().saturating_sub(1);
    let above = edges[1..].iter().take_while(|&&e| e <= v).count();
    above.min(bins.saturating_sub(1))
}

/// A party's exact local aggregates (secret: never printed).
#[derive(Clone, PartialEq, Eq)]
pub struct LocalStats(pub(crate) Vec<i128>);

impl core::fmt::Debug for LocalStats {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "LocalStats[{} values, redacted]", self.0.len())
    }
}

impl Drop for LocalStats {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl LocalStats {
    /// The values (stat-major, see the module docs).
    pub fn as_slice(&self) -> &[i128] {
        &self.0
    }

    /// Replace one value (the `cheat` hooks and tests: a party sharing chosen aggregates).
    pub fn set(&mut self, i: usize, v: i128) {
        if let Some(x) = self.0.get_mut(i) {
            *x = v;
        }
    }

    /// From raw values (tests and cheating parties).
    pub fn from_raw(v: Vec<i128>) -> Self {
        Self(v)
    }
}

/// The rows of `table` the job keeps (filter), with their group index.
fn kept_rows(spec: &AnalyticsSpec, table: &Table) -> Result<Vec<(usize, usize)>, AnalyticsError> {
    let filter = match spec.analysis.filter() {
        Some(f) => Some((table.column(&f.column)?, f.equals)),
        None => None,
    };
    let group = match spec.analysis.group_by() {
        Some(g) => Some((table.column(&g.column)?, g.edges.as_slice())),
        None => None,
    };
    let mut out = Vec::new();
    for r in 0..table.rows() {
        if let Some((col, eq)) = filter
            && col[r] != eq
        {
            continue;
        }
        let g = group.map_or(0, |(col, edges)| bin_of(edges, col[r]));
        out.push((r, g));
    }
    if out.len() as u64 > spec.max_rows {
        // Never the count itself: this text may travel as an abort reason.
        return Err(AnalyticsError::Data(format!(
            "this dataset has more rows for the job than its max_rows = {}: the dataset exceeds its declared size",
            spec.max_rows
        )));
    }
    Ok(out)
}

/// The cell of each of the job's rows: `(row, cell)` in row order, where the cell is the
/// histogram bin of the clipped value or the group (DESIGN §6: an individual lies in a cell
/// when it contributes to it). The privacy rule's memberships.
pub fn cell_rows(
    spec: &AnalyticsSpec,
    layout: &Layout,
    table: &Table,
) -> Result<Vec<(usize, usize)>, AnalyticsError> {
    let rows = kept_rows(spec, table)?;
    match (&layout.shape, &spec.analysis) {
        (
            Shape::Bins { .. },
            Analysis::Histogram { column, edges, .. }
            | Analysis::Quantiles { column, edges, .. }
            | Analysis::Min { column, edges, .. }
            | Analysis::Max { column, edges, .. },
        ) => {
            let b = spec.bounds_of(column)?;
            let col = table.column(column)?;
            Ok(rows
                .into_iter()
                .map(|(r, _)| (r, bin_of(edges, col[r].clamp(b.min, b.max))))
                .collect())
        }
        _ => Ok(rows),
    }
}

/// The party's exact local aggregates for the job: rows filtered, values clipped into their
/// bounds, then summed (see the module docs).
pub fn local_stats(
    spec: &AnalyticsSpec,
    layout: &Layout,
    table: &Table,
) -> Result<LocalStats, AnalyticsError> {
    let rows = kept_rows(spec, table)?;
    let g_n = layout.groups;
    let per = layout.per_group();
    let mut out = vec![0i128; layout.len()];
    let clip = |v: i64, b: Bounds| i128::from(v.clamp(b.min, b.max));
    match (&layout.shape, &spec.analysis) {
        (Shape::Bins { .. }, a) => {
            let (column, edges) = match a {
                Analysis::Histogram { column, edges, .. }
                | Analysis::Quantiles { column, edges, .. }
                | Analysis::Min { column, edges, .. }
                | Analysis::Max { column, edges, .. } => (column, edges),
                _ => return Err(AnalyticsError::Data("bins for a non-bin kind".into())),
            };
            let b = spec.bounds_of(column)?;
            let col = table.column(column)?;
            for &(r, _) in &rows {
                let v = col[r].clamp(b.min, b.max);
                out[bin_of(edges, v)] += 1;
            }
        }
        (Shape::Moments { dims, second }, a) => {
            let cols: Vec<&str> = a.value_columns();
            let data: Vec<&[i64]> = cols
                .iter()
                .map(|c| table.column(c))
                .collect::<Result<_, _>>()?;
            let bounds: Vec<Bounds> = cols
                .iter()
                .map(|c| spec.bounds_of(c))
                .collect::<Result<_, _>>()?;
            let weighted = matches!(a, Analysis::WeightedMean { .. });
            let d = dims.len();
            let mut z = vec![0i128; d];
            for &(r, g) in &rows {
                if weighted {
                    let x = clip(data[0][r], bounds[0]);
                    let w = clip(data[1][r], bounds[1]);
                    z[0] = w;
                    z[1] = w * x;
                } else {
                    for i in 0..d {
                        z[i] = clip(data[i][r], bounds[i]);
                    }
                }
                out[layout.count() * g_n + g] += 1;
                for i in 0..d {
                    out[layout.first(i) * g_n + g] += z[i];
                }
                if *second {
                    for i in 0..d {
                        for j in i..d {
                            out[layout.second(i, j) * g_n + g] += z[i] * z[j];
                        }
                    }
                }
            }
            let _ = per;
        }
    }
    Ok(LocalStats(out))
}

/// One term of a consistency check, a function of one party's statistics vector, evaluated
/// per group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Term {
    /// Σ c·stat(k) over (k, c).
    Lin(Vec<(usize, i128)>),
    /// count·stat(sq) − stat(sum)² (Cauchy–Schwarz).
    Cs {
        /// Statistic of Σ z².
        sq: usize,
        /// Statistic of Σ z.
        sum: usize,
    },
}

/// A named range check over some terms: each term (per group) within [0, hi].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckGroup {
    /// What it checks (the check name adds the party).
    pub what: String,
    /// The terms.
    pub terms: Vec<(Term, BigInt)>,
}

/// The consistency checks of a layout for parties with at most `rows` rows.
pub fn checks(layout: &Layout, rows: u64) -> Vec<CheckGroup> {
    let r = i128::from(rows);
    let big_r = BigInt::from(rows);
    match &layout.shape {
        Shape::Bins { bins } => vec![CheckGroup {
            what: format!("row counts per bin and in total within [0, max_rows = {rows}]"),
            terms: (0..*bins)
                .map(|b| (Term::Lin(vec![(b, 1)]), big_r.clone()))
                .chain([(
                    Term::Lin((0..*bins).map(|b| (b, 1)).collect()),
                    big_r.clone(),
                )])
                .collect(),
        }],
        Shape::Moments { dims, second } => {
            let mut out = vec![CheckGroup {
                what: format!("row counts within [0, max_rows = {rows}]"),
                terms: vec![(Term::Lin(vec![(0, 1)]), big_r.clone())],
            }];
            let mut sums = Vec::new();
            for (i, &(lo, hi)) in dims.iter().enumerate() {
                let k = layout.first(i);
                let w = BigInt::from(r) * BigInt::from(hi - lo);
                sums.push((Term::Lin(vec![(k, 1), (0, -lo)]), w.clone()));
                sums.push((Term::Lin(vec![(0, hi), (k, -1)]), w));
            }
            if !sums.is_empty() {
                out.push(CheckGroup {
                    what: "sums within count·bounds (count·lo ≤ Σx ≤ count·hi)".into(),
                    terms: sums,
                });
            }
            if *second {
                let mut sq = Vec::new();
                let mut cs = Vec::new();
                for i in 0..dims.len() {
                    for j in i..dims.len() {
                        let (lo, hi) = pair_bounds(dims[i], dims[j]);
                        let k = layout.second(i, j);
                        let w = BigInt::from(r) * BigInt::from(hi - lo);
                        sq.push((Term::Lin(vec![(k, 1), (0, -lo)]), w.clone()));
                        sq.push((Term::Lin(vec![(0, hi), (k, -1)]), w));
                    }
                    let (lo, hi) = dims[i];
                    let span = BigInt::from(r) * BigInt::from(hi - lo);
                    let top: BigInt = (&span * &span + 3u32) / 4u32;
                    cs.push((
                        Term::Cs {
                            sq: layout.second(i, i),
                            sum: layout.first(i),
                        },
                        top,
                    ));
                }
                out.push(CheckGroup {
                    what: "second moments within count·bounds".into(),
                    terms: sq,
                });
                out.push(CheckGroup {
                    what: "Cauchy–Schwarz (0 ≤ count·Σx² − (Σx)² ≤ max_rows²·(hi − lo)²/4)".into(),
                    terms: cs,
                });
            }
            out
        }
    }
}

impl Term {
    /// The term's value for group `g` of a stat-major vector with `groups` groups.
    pub fn eval(&self, stats: &[i128], groups: usize, g: usize) -> BigInt {
        let at = |k: usize| BigInt::from(stats.get(k * groups + g).copied().unwrap_or(0));
        match self {
            Term::Lin(cs) => cs.iter().map(|&(k, c)| at(k) * BigInt::from(c)).sum(),
            Term::Cs { sq, sum } => at(0) * at(*sq) - at(*sum) * at(*sum),
        }
    }
}

/// Bits w of a range [0, hi] (2^w > hi).
pub fn width(hi: &BigInt) -> u32 {
    u32::try_from(hi.bits()).unwrap_or(u32::MAX).max(1)
}

/// The hint of an exact range check (see [`crate::gadgets::range`]): per element the w bits
/// of x − lo, then the w bits of hi − x, bit-major within each half. `strict` refuses
/// values outside [lo, hi] (an honest party); otherwise the bits are taken modulo 2^w (a
/// cheating party's best try, for tests and `cheat`).
pub fn hint<F: Field>(
    values: &[BigInt],
    lo: &[BigInt],
    hi: &[BigInt],
    w: u32,
    strict: bool,
    what: &str,
) -> Result<Vec<F>, AnalyticsError> {
    if lo.len() != values.len() || hi.len() != values.len() {
        return Err(AnalyticsError::Data(format!(
            "{what}: {} values but {} lower and {} upper bounds (a bug)",
            values.len(),
            lo.len(),
            hi.len()
        )));
    }
    let mut lower = Vec::with_capacity(values.len());
    let mut upper = Vec::with_capacity(values.len());
    for ((x, l), h) in values.iter().zip(lo).zip(hi) {
        if strict && (x < l || x > h) {
            return Err(AnalyticsError::Data(format!(
                "{what}: a local aggregate is outside its declared bounds (a bug: values are clipped first)"
            )));
        }
        lower.push(x - l);
        upper.push(h - x);
    }
    Ok(crate::gadgets::range::hint_bits(&lower, &upper, w))
}

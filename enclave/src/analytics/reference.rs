//! Plaintext references straight from the pooled rows (the tests and `parley demo` compare
//! against them): the same filter, clipping and groups as the job, then each statistic
//! computed directly — two-pass mean and variance, centred co-moments, least squares by
//! Gaussian elimination with partial pivoting in f64, exact integers for counts and sums,
//! and for quantiles the smallest bin whose cumulative count reaches q·N. No k-anonymity
//! and no noise: a reference is the exact value.

use super::local::{Table, bin_of};
use super::spec::{Analysis, AnalyticsSpec};
use super::{AnalyticsError, Estimate, Value};

/// Solves a·x = b (a square) by Gaussian elimination with partial pivoting; NaN if
/// singular.
pub fn solve(a: &mut [Vec<f64>], b: &mut [f64]) -> Vec<f64> {
    let d = b.len();
    for col in 0..d {
        let piv = (col..d)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap_or(col);
        a.swap(col, piv);
        b.swap(col, piv);
        let p = a[col][col];
        if p == 0.0 {
            return vec![f64::NAN; d];
        }
        for r in col + 1..d {
            let f = a[r][col] / p;
            for c in col..d {
                a[r][c] -= f * a[col][c];
            }
            b[r] -= f * b[col];
        }
    }
    let mut x = vec![0.0; d];
    for r in (0..d).rev() {
        let s: f64 = (r + 1..d).map(|c| a[r][c] * x[c]).sum();
        x[r] = (b[r] - s) / a[r][r];
    }
    x
}

/// The job's rows from every party: per kept row its group and clipped values of the
/// analysis's value columns.
fn rows(spec: &AnalyticsSpec, tables: &[Table]) -> Result<Vec<(usize, Vec<i64>)>, AnalyticsError> {
    let cols = spec.analysis.value_columns();
    let mut out = Vec::new();
    for t in tables {
        let data: Vec<&[i64]> = cols.iter().map(|c| t.column(c)).collect::<Result<_, _>>()?;
        let bounds: Vec<_> = cols
            .iter()
            .map(|c| spec.bounds_of(c))
            .collect::<Result<_, _>>()?;
        let filter = match spec.analysis.filter() {
            Some(f) => Some((t.column(&f.column)?, f.equals)),
            None => None,
        };
        let group = match spec.analysis.group_by() {
            Some(g) => Some((t.column(&g.column)?, g.edges.clone())),
            None => None,
        };
        for r in 0..t.rows() {
            if filter.is_some_and(|(c, e)| c[r] != e) {
                continue;
            }
            let g = group.as_ref().map_or(0, |(c, e)| bin_of(e, c[r]));
            let vals = data
                .iter()
                .zip(&bounds)
                .map(|(c, b)| c[r].clamp(b.min, b.max))
                .collect();
            out.push((g, vals));
        }
    }
    Ok(out)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn comoment(x: &[f64], y: &[f64]) -> f64 {
    let (mx, my) = (mean(x), mean(y));
    x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum()
}

/// The exact values of the job's statistics (see the module docs).
pub fn reference(spec: &AnalyticsSpec, tables: &[Table]) -> Result<Vec<Estimate>, AnalyticsError> {
    let rows = rows(spec, tables)?;
    let groups = spec.analysis.group_by().map_or(1, |g| g.edges.len() - 1);
    let label = |g: usize| {
        spec.analysis
            .group_by()
            .map(|gb| [gb.edges[g], gb.edges[g + 1]])
    };
    let mut out = Vec::new();
    let mut push = |name: &str, group: Option<[i64; 2]>, value: Value| {
        out.push(Estimate {
            name: name.to_owned(),
            group,
            value,
            standard_error: None,
        })
    };
    let col = |g: Option<usize>, i: usize| -> Vec<f64> {
        rows.iter()
            .filter(|(gg, _)| g.is_none_or(|g| *gg == g))
            .map(|(_, v)| v[i] as f64)
            .collect()
    };
    let real = |v: f64| Value::Real { value: v };
    match &spec.analysis {
        Analysis::Count { .. }
        | Analysis::Sum { .. }
        | Analysis::Mean { .. }
        | Analysis::Variance { .. } => {
            for g in 0..groups {
                let in_g: Vec<&Vec<i64>> = rows
                    .iter()
                    .filter(|(gg, _)| *gg == g)
                    .map(|(_, v)| v)
                    .collect();
                let n = in_g.len() as i128;
                match &spec.analysis {
                    Analysis::Count { .. } => push("count", label(g), Value::Integer { value: n }),
                    Analysis::Sum { .. } => push(
                        "sum",
                        label(g),
                        Value::Integer {
                            value: in_g.iter().map(|v| i128::from(v[0])).sum(),
                        },
                    ),
                    Analysis::Mean { .. } => push("mean", label(g), real(mean(&col(Some(g), 0)))),
                    _ => {
                        let x = col(Some(g), 0);
                        push("count", label(g), Value::Integer { value: n });
                        push("mean", label(g), real(mean(&x)));
                        let var = if x.len() < 2 {
                            f64::NAN
                        } else {
                            comoment(&x, &x) / (x.len() as f64 - 1.0)
                        };
                        push("variance", label(g), real(var));
                        push("std_dev", label(g), real(var.sqrt()));
                    }
                }
            }
        }
        Analysis::WeightedMean { .. } => {
            let (x, w) = (col(None, 0), col(None, 1));
            let sw: f64 = w.iter().sum();
            let swx: f64 = x.iter().zip(&w).map(|(a, b)| a * b).sum();
            push("weighted_mean", None, real(swx / sw));
        }
        Analysis::Histogram { edges, .. }
        | Analysis::Quantiles { edges, .. }
        | Analysis::Min { edges, .. }
        | Analysis::Max { edges, .. } => {
            let bins = edges.len() - 1;
            let mut h = vec![0i128; bins];
            for (_, v) in &rows {
                h[bin_of(edges, v[0])] += 1;
            }
            let total: i128 = h.iter().sum();
            let first_reaching = |target: f64, order: &mut dyn Iterator<Item = usize>| -> usize {
                let mut acc = 0i128;
                let mut last = 0;
                for b in order {
                    acc += h[b];
                    last = b;
                    if acc as f64 >= target {
                        return b;
                    }
                }
                last
            };
            let bin = |i: usize| Value::Bin {
                index: i,
                lo: edges[i],
                hi: edges[i + 1],
            };
            match &spec.analysis {
                Analysis::Histogram { .. } => {
                    for (b, c) in h.iter().enumerate() {
                        push(
                            "count",
                            Some([edges[b], edges[b + 1]]),
                            Value::Integer { value: *c },
                        );
                    }
                }
                Analysis::Quantiles { quantiles, .. } => {
                    for q in quantiles {
                        let i = first_reaching(q.to_f64() * total as f64, &mut (0..bins));
                        push(&format!("quantile {q}"), None, bin(i));
                    }
                }
                Analysis::Min { min_count, .. } => {
                    let i = first_reaching(*min_count as f64, &mut (0..bins));
                    push("min", None, bin(i));
                }
                Analysis::Max { min_count, .. } => {
                    let i = first_reaching(*min_count as f64, &mut (0..bins).rev());
                    push("max", None, bin(i));
                }
                _ => {}
            }
        }
        Analysis::Correlation { .. } => {
            let (x, y) = (col(None, 0), col(None, 1));
            push(
                "correlation",
                None,
                real(comoment(&x, &y) / (comoment(&x, &x) * comoment(&y, &y)).sqrt()),
            );
        }
        Analysis::Covariance { columns, .. } => {
            let d = columns.len();
            let cs: Vec<Vec<f64>> = (0..d).map(|i| col(None, i)).collect();
            let n = cs[0].len() as f64;
            for i in 0..d {
                for j in i..d {
                    push(
                        &format!("cov[{},{}]", columns[i], columns[j]),
                        None,
                        real(comoment(&cs[i], &cs[j]) / (n - 1.0)),
                    );
                }
            }
        }
        Analysis::LinearRegression { predictors, .. } => {
            // Normal equations on centred columns (better conditioned), then the intercept.
            let m = predictors.len();
            let xs: Vec<Vec<f64>> = (0..m).map(|i| col(None, i)).collect();
            let y = col(None, m);
            let mut a: Vec<Vec<f64>> = (0..m)
                .map(|i| (0..m).map(|j| comoment(&xs[i], &xs[j])).collect())
                .collect();
            let mut b: Vec<f64> = (0..m).map(|i| comoment(&xs[i], &y)).collect();
            let beta = solve(&mut a, &mut b);
            let intercept = mean(&y) - beta.iter().zip(&xs).map(|(b, x)| b * mean(x)).sum::<f64>();
            push("intercept", None, real(intercept));
            for (p, b) in predictors.iter().zip(beta) {
                push(&format!("beta[{p}]"), None, real(b));
            }
        }
    }
    Ok(out)
}

//! Datasets: built-in schemas, streamed and validated CSV import, local aggregates, and the
//! synthetic sample data of `parley demo`.
//!
//! Import errors name the file, line and column and the rule that failed, never the value
//! (logs carry no input values).

use std::io::Write;
use std::path::{Path, PathBuf};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// One integer column with inclusive bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub name: String,
    pub min: i64,
    pub max: i64,
}

/// A named, fixed list of columns: what every imported row must satisfy.
///
/// Schema files (`parley data import --schema FILE`) are TOML:
/// ```toml
/// name = "patients"
/// [[column]]
/// name = "age"
/// min = 0
/// max = 120
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    pub name: String,
    #[serde(rename = "column")]
    pub columns: Vec<Column>,
}

/// The demo's patient table.
pub fn patients_schema() -> Schema {
    let col = |name: &str, min, max| Column {
        name: name.to_owned(),
        min,
        max,
    };
    Schema {
        name: "patients".into(),
        columns: vec![
            col("age", 0, 120),
            col("sex", 0, 1),
            col("systolic_bp", 60, 260),
            col("cholesterol", 80, 500),
            col("diabetic", 0, 1),
        ],
    }
}

/// Largest number of rows one dataset may have (memory: 8 bytes per value).
pub const MAX_ROWS: usize = 20_000_000;

/// Largest magnitude a column bound may have: keeps exact aggregates far inside the field.
pub const MAX_ABS_BOUND: i64 = 1 << 40;

impl Schema {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// A built-in schema by name, or a schema file.
    pub fn load(spec: &str) -> Result<Schema, DataError> {
        if spec == "patients" {
            return Ok(patients_schema());
        }
        let path = Path::new(spec);
        let text = std::fs::read_to_string(path).map_err(|e| DataError::Read {
            path: path.to_owned(),
            message: format!("{e} (built-in schemas: patients)"),
        })?;
        let schema: Schema = toml::from_str(&text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|s| crate::util::line_col(&text, s.start))
                .unwrap_or((0, 0));
            DataError::Schema {
                path: path.to_owned(),
                message: format!("line {line}, column {column}: {}", e.message()),
            }
        })?;
        schema.validate().map_err(|message| DataError::Schema {
            path: path.to_owned(),
            message,
        })?;
        Ok(schema)
    }

    /// Names non-empty and distinct, bounds ordered and within [`MAX_ABS_BOUND`].
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || self.columns.is_empty() || self.columns.len() > 256 {
            return Err("a schema has a name and 1 to 256 columns".into());
        }
        for (i, c) in self.columns.iter().enumerate() {
            if c.name.is_empty() || self.columns[..i].iter().any(|d| d.name == c.name) {
                return Err(format!("column {:?} is empty or repeated", c.name));
            }
            if c.min > c.max || c.min.abs() > MAX_ABS_BOUND || c.max.abs() > MAX_ABS_BOUND {
                return Err(format!(
                    "column {:?}: bounds [{}, {}] must be ordered and within ±2^40",
                    c.name, c.min, c.max
                ));
            }
        }
        Ok(())
    }
}

/// A dataset held column-wise in memory.
#[derive(Clone, PartialEq, Eq)]
pub struct Dataset {
    pub name: String,
    pub schema: Schema,
    pub columns: Vec<Vec<i64>>,
    /// Who each row is, across versions (the privacy rule's individuals).
    pub population: Population,
}

pub use parley_enclave::analytics::rule::Population;

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the values.
        write!(
            f,
            "Dataset({:?}, schema {}, {} rows)",
            self.name,
            self.schema.name,
            self.rows()
        )
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path}: the header is {found:?}; schema {schema} expects {expected:?}")]
    Header {
        path: PathBuf,
        schema: String,
        found: Vec<String>,
        expected: Vec<String>,
    },
    #[error("{path}, line {line}: {found} fields; schema {schema} has {expected}")]
    FieldCount {
        path: PathBuf,
        line: u64,
        schema: String,
        found: usize,
        expected: usize,
    },
    #[error("{path}, line {line}, column {column}: {rule}")]
    Value {
        path: PathBuf,
        line: u64,
        column: String,
        rule: String,
    },
    #[error("schema {path}: {message}")]
    Schema { path: PathBuf, message: String },
    #[error("{path}: no data rows")]
    Empty { path: PathBuf },
    #[error("{path}: more than {max} rows; split the file or raise the limit")]
    TooManyRows { path: PathBuf, max: usize },
}

impl Dataset {
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, Vec::len)
    }

    /// Stream a CSV file, validating the header and every value against the schema.
    /// Nothing is kept on error.
    pub fn load_csv(name: &str, schema: Schema, path: &Path) -> Result<Self, DataError> {
        let read_err = |e: &dyn std::fmt::Display| DataError::Read {
            path: path.to_owned(),
            message: e.to_string(),
        };
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_path(path)
            .map_err(|e| read_err(&e))?;
        let header: Vec<String> = rdr
            .headers()
            .map_err(|e| read_err(&e))?
            .iter()
            .map(str::to_owned)
            .collect();
        let expected: Vec<String> = schema.columns.iter().map(|c| c.name.clone()).collect();
        if header != expected {
            return Err(DataError::Header {
                path: path.to_owned(),
                schema: schema.name.clone(),
                found: header,
                expected,
            });
        }
        let mut columns: Vec<Vec<i64>> = vec![Vec::new(); schema.columns.len()];
        let mut record = csv::StringRecord::new();
        while rdr.read_record(&mut record).map_err(|e| read_err(&e))? {
            let line = record.position().map_or(0, |p| p.line());
            if columns[0].len() >= MAX_ROWS {
                return Err(DataError::TooManyRows {
                    path: path.to_owned(),
                    max: MAX_ROWS,
                });
            }
            if record.len() != schema.columns.len() {
                return Err(DataError::FieldCount {
                    path: path.to_owned(),
                    line,
                    schema: schema.name.clone(),
                    found: record.len(),
                    expected: schema.columns.len(),
                });
            }
            for ((field, col), out) in record.iter().zip(&schema.columns).zip(columns.iter_mut()) {
                let v: i64 = field.trim().parse().map_err(|_| DataError::Value {
                    path: path.to_owned(),
                    line,
                    column: col.name.clone(),
                    rule: "not an integer".into(),
                })?;
                if v < col.min || v > col.max {
                    return Err(DataError::Value {
                        path: path.to_owned(),
                        line,
                        column: col.name.clone(),
                        rule: format!("outside the schema's bounds [{}, {}]", col.min, col.max),
                    });
                }
                out.push(v);
            }
        }
        if columns[0].is_empty() {
            return Err(DataError::Empty {
                path: path.to_owned(),
            });
        }
        let population = Population::fresh(columns[0].len());
        Ok(Dataset {
            name: name.to_owned(),
            schema,
            columns,
            population,
        })
    }

    /// Write the dataset as CSV (header plus one line per row).
    pub fn write_csv(&self, path: &Path) -> std::io::Result<()> {
        let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
        let names: Vec<&str> = self
            .schema
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        writeln!(w, "{}", names.join(","))?;
        for r in 0..self.rows() {
            let mut first = true;
            for c in &self.columns {
                if !first {
                    w.write_all(b",")?;
                }
                first = false;
                write!(w, "{}", c[r])?;
            }
            w.write_all(b"\n")?;
        }
        w.flush()
    }

    /// Exact local aggregates of one column: count, Σx, Σx².
    pub fn moments(&self, column: usize) -> Option<Moments> {
        let col = self.columns.get(column)?;
        let mut m = Moments::default();
        for &v in col {
            m.count += 1;
            m.sum += i128::from(v);
            m.sum_sq += i128::from(v) * i128::from(v);
        }
        Some(m)
    }
}

/// Exact count, sum and sum of squares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moments {
    pub count: i128,
    pub sum: i128,
    pub sum_sq: i128,
}

impl Moments {
    pub fn add(&self, o: &Moments) -> Moments {
        Moments {
            count: self.count + o.count,
            sum: self.sum + o.sum,
            sum_sq: self.sum_sq + o.sum_sq,
        }
    }

    /// The mean, rounded once to the nearest f64 from the exact rational Σx / n.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| ratio(self.sum, self.count))
    }

    /// The sample variance (n − 1 denominator), from the exact rational
    /// (n·Σx² − (Σx)²) / (n·(n − 1)), rounded once.
    pub fn variance(&self) -> Option<f64> {
        (self.count > 1).then(|| {
            ratio(
                self.count * self.sum_sq - self.sum * self.sum,
                self.count * (self.count - 1),
            )
        })
    }
}

/// `num / den` to the nearest f64 where both fit in 2^113 (our sums do by far): split off
/// the integer part so the fraction keeps full precision.
fn ratio(num: i128, den: i128) -> f64 {
    let q = num / den;
    let r = num % den;
    q as f64 + r as f64 / den as f64
}

/// Seed of hospital `i`'s sample data: `ChaCha20Rng::seed_from_u64(SAMPLE_SEED + i)`.
pub const SAMPLE_SEED: u64 = 20_261_124;

/// The demo's synthetic patient table for hospital `index` (0-based).
///
/// Deterministic and integer-only (no floating point, so every platform produces the same
/// bytes): age uniform on a per-hospital range; systolic BP and cholesterol rise with age
/// plus approximately normal noise (a sum of uniforms); diabetes more likely with age and
/// blood pressure. Values use `next_u64() % k`, whose bias (< 2^-50) is irrelevant here.
pub fn sample_patients(index: u64, rows: usize) -> Dataset {
    let mut rng = ChaCha20Rng::seed_from_u64(SAMPLE_SEED + index);
    let mut u = |k: u64| -> i64 { (rng.next_u64() % k) as i64 };
    // Per-hospital population differences so the sites are not identical.
    let (age_lo, age_span, bp_shift, chol_shift) = match index % 3 {
        0 => (18, 73, 0, 0),   // a general hospital: 18..=90
        1 => (40, 56, 4, 10),  // a cardiology centre: older, 40..=95
        _ => (18, 53, -3, -6), // a university clinic: younger, 18..=70
    };
    let mut cols: Vec<Vec<i64>> = (0..patients_schema().columns.len())
        .map(|_| Vec::with_capacity(rows))
        .collect();
    for _ in 0..rows {
        let age = age_lo + u(age_span);
        let sex = u(2);
        let noise_bp = (0..4).map(|_| u(11) - 5).sum::<i64>() * 2; // ≈ N(0, 6.3²)
        let bp = (95 + age / 2 + 4 * sex + bp_shift + noise_bp).clamp(80, 220);
        let noise_ch = (0..4).map(|_| u(21) - 10).sum::<i64>() * 2; // ≈ N(0, 12²)
        let chol = (140 + age + (bp - 120) / 4 + chol_shift + noise_ch).clamp(110, 330);
        let risk_per_mille = 15 + 2 * age + 3 * (bp - 120).max(0);
        let diabetic = i64::from(u(1000) < risk_per_mille);
        for (c, v) in cols.iter_mut().zip([age, sex, bp, chol, diabetic]) {
            c.push(v);
        }
    }
    Dataset {
        name: "patients".into(),
        schema: patients_schema(),
        columns: cols,
        population: Population::fresh(rows),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_is_deterministic_and_in_bounds() {
        let a = sample_patients(0, 500);
        assert_eq!(a, sample_patients(0, 500));
        assert_ne!(a, sample_patients(1, 500));
        for (c, col) in a.columns.iter().zip(patients_schema().columns) {
            assert!(c.iter().all(|v| (col.min..=col.max).contains(v)));
        }
    }

    #[test]
    fn csv_round_trip_and_errors_name_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.csv");
        let d = sample_patients(2, 100);
        d.write_csv(&p).unwrap();
        assert_eq!(
            Dataset::load_csv("patients", patients_schema(), &p).unwrap(),
            d
        );

        std::fs::write(
            &p,
            "age,sex,systolic_bp,cholesterol,diabetic\n40,1,120,200,0\n40,1,999,200,0\n",
        )
        .unwrap();
        let e = Dataset::load_csv("patients", patients_schema(), &p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 3") && e.contains("systolic_bp") && !e.contains("999"),
            "{e}"
        );
        std::fs::write(&p, "age,sex\n1,1\n").unwrap();
        assert!(matches!(
            Dataset::load_csv("patients", patients_schema(), &p),
            Err(DataError::Header { .. })
        ));
        std::fs::write(
            &p,
            "age,sex,systolic_bp,cholesterol,diabetic\n40,1,x,200,0\n",
        )
        .unwrap();
        assert!(
            Dataset::load_csv("patients", patients_schema(), &p)
                .unwrap_err()
                .to_string()
                .contains("not an integer")
        );
        std::fs::write(&p, "age,sex,systolic_bp,cholesterol,diabetic\n40,1,120\n").unwrap();
        assert!(matches!(
            Dataset::load_csv("patients", patients_schema(), &p),
            Err(DataError::FieldCount { .. })
        ));
        std::fs::write(&p, "age,sex,systolic_bp,cholesterol,diabetic\n").unwrap();
        assert!(matches!(
            Dataset::load_csv("patients", patients_schema(), &p),
            Err(DataError::Empty { .. })
        ));
    }

    #[test]
    fn moments_give_exact_mean_and_variance() {
        let m = Moments {
            count: 4,
            sum: 10,
            sum_sq: 30,
        }; // 1,2,3,4
        assert_eq!(m.mean(), Some(2.5));
        assert!((m.variance().unwrap() - 5.0 / 3.0).abs() < 1e-15);
        assert_eq!(Moments::default().mean(), None);
    }
}

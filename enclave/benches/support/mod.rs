//! Shared by the benches: criterion measured in the CPU time of the calling thread (the
//! machine is shared, and in memory there is no waiting to measure).

use criterion::Throughput;
use criterion::measurement::{Measurement, ValueFormatter};

/// CPU time of the calling thread, in nanoseconds.
pub struct CpuTime;

fn thread_cpu_ns() -> u64 {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| {
            u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000_000
                + u64::try_from(t.tv_nsec()).unwrap_or(0)
        })
        .unwrap_or(0)
}

struct NsFormatter;

impl ValueFormatter for NsFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = match typical {
            t if t < 1e3 => (1.0, "ns"),
            t if t < 1e6 => (1e-3, "µs"),
            t if t < 1e9 => (1e-6, "ms"),
            _ => (1e-9, "s"),
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }
    fn scale_throughputs(
        &self,
        typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let per = match *throughput {
            Throughput::Elements(e) | Throughput::ElementsAndBytes { elements: e, .. } => e as f64,
            Throughput::Bytes(b) | Throughput::BytesDecimal(b) => b as f64,
            Throughput::Bits(b) => b as f64,
        };
        let rate = per * 1e9 / typical;
        let (div, unit) = match rate {
            r if r < 1e3 => (1.0, " elem/s (cpu)"),
            r if r < 1e6 => (1e3, "Kelem/s (cpu)"),
            _ => (1e6, "Melem/s (cpu)"),
        };
        values.iter_mut().for_each(|v| *v = per * 1e9 / *v / div);
        unit
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, i: u64) -> u64 {
        thread_cpu_ns().saturating_sub(i)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &NsFormatter
    }
}

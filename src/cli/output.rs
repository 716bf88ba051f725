//! Tabular output for `inspect`: CSV (full f64 precision, for machines) or an
//! aligned table (for people). Writes through a buffered stdout and treats a
//! closed pipe (`| head`) as success rather than a panic.

use std::io::{self, BufWriter, Write};

/// How `inspect` prints a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Comma-separated, header first, every float in full (round-trip) precision.
    Csv,
    /// Aligned columns for reading.
    Table,
}

/// A column of numbers: integers print as such, floats in full or 6 significant digits.
pub enum Column<'a> {
    Int(&'a str, Vec<i64>),
    Float(&'a str, &'a [f64]),
}

impl Column<'_> {
    fn name(&self) -> &str {
        match self {
            Column::Int(n, _) | Column::Float(n, _) => n,
        }
    }
    fn cell(&self, row: usize, format: Format) -> String {
        match (self, format) {
            (Column::Int(_, v), _) => v[row].to_string(),
            // Debug for f64 is the shortest string that parses back exactly, with an
            // exponent for very large or small magnitudes.
            (Column::Float(_, v), Format::Csv) => format!("{:?}", v[row]),
            (Column::Float(_, v), Format::Table) => format!("{:.6e}", v[row]),
        }
    }
    fn len(&self) -> usize {
        match self {
            Column::Int(_, v) => v.len(),
            Column::Float(_, v) => v.len(),
        }
    }
}

/// Write the columns to stdout.
pub fn print_table(columns: &[Column], format: Format) -> anyhow::Result<()> {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match write_table(&mut out, columns, format).and_then(|_| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

pub fn write_table(out: &mut impl Write, columns: &[Column], format: Format) -> io::Result<()> {
    let rows = columns.first().map_or(0, |c| c.len());
    match format {
        Format::Csv => {
            let header: Vec<&str> = columns.iter().map(|c| c.name()).collect();
            writeln!(out, "{}", header.join(","))?;
            for r in 0..rows {
                let cells: Vec<String> = columns.iter().map(|c| c.cell(r, format)).collect();
                writeln!(out, "{}", cells.join(","))?;
            }
        }
        Format::Table => {
            let widths: Vec<usize> = columns
                .iter()
                .map(|c| {
                    (0..rows)
                        .map(|r| c.cell(r, format).len())
                        .chain([c.name().len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |cells: Vec<String>| {
                cells
                    .iter()
                    .zip(&widths)
                    .map(|(s, w)| format!("{s:>w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
            };
            writeln!(
                out,
                "{}",
                line(columns.iter().map(|c| c.name().to_string()).collect())
            )?;
            for r in 0..rows {
                writeln!(
                    out,
                    "{}",
                    line(columns.iter().map(|c| c.cell(r, format)).collect())
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_keeps_full_precision_and_table_aligns() {
        let v = [0.1 + 0.2, 1e-300];
        let cols = [Column::Int("t", vec![0, 1]), Column::Float("x", &v)];
        let mut buf = vec![];
        write_table(&mut buf, &cols, Format::Csv).unwrap();
        let s = String::from_utf8(buf).unwrap();
        assert_eq!(s, "t,x\n0,0.30000000000000004\n1,1e-300\n");
        let mut buf = vec![];
        write_table(&mut buf, &cols, Format::Table).unwrap();
        let s = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = s.lines().collect();
        // Columns are right-aligned to their widest cell ("1.000000e-300", 13 wide).
        assert_eq!(lines[0], format!("t  {:>13}", "x"));
        assert_eq!(lines[1], format!("0  {:>13}", "3.000000e-1"));
        assert_eq!(lines[2], "1  1.000000e-300");
        assert!(lines.iter().all(|l| l.len() == lines[0].len()));
    }
}

//! The registers' one CSV loader, all or nothing, and its one error, [`ImportError`].
//!
//! Devices, subscribers and the directory's four files are read the same way: UTF-8 CSV whose
//! first line is exactly one of the register's headers (a byte-order mark allowed; older
//! headers of a register are still read), cells trimmed, rows with every cell empty skipped,
//! every row checked and every problem reported by line, and a file with any problem imports
//! nothing. [`read_rows`] does the reading and the checks every file shares (header, cell
//! count, UTF-8); [`read_all_or_nothing`] adds a register's own row check and refuses a key
//! given twice and a file without rows. The directory checks its four files together, so it
//! gathers the problems of each [`read_rows`] itself.
//!
//! Messages never show a cell of a header line that does not look like column names: a file
//! without its header holds data there (a door code, a device's key).
//!
//! The `csv` crate reads the CSV; what is written here by hand is the registers' policy
//! around it, which no crate has.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;

use csv::StringRecord;

/// A file an import reads, as its messages name it: the directory's four files
/// ([`crate::registers::directory::Table`]), or the one file of devices or of subscribers.
pub trait ImportFile: Copy + fmt::Debug {
    /// What the file's rows are, plural, in "the file has no …".
    const ROWS: &'static str;
    /// Whether the import reads several files at once. Its messages then name the file of
    /// each problem, and count problems (a file's header or emptiness is one too) rather than
    /// invalid rows.
    const SEVERAL: bool;
    /// The file's name in messages (`providers`).
    fn name(self) -> &'static str;
}

/// One problem of an import: in which file, on which line, what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem<F> {
    /// The file.
    pub table: F,
    /// The line (1 is the header; 0 for the file as a whole).
    pub line: u64,
    /// What is wrong.
    pub message: String,
}

impl<F: ImportFile> fmt::Display for Problem<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (F::SEVERAL, self.line) {
            (true, 0) => write!(f, "{}: {}", self.table.name(), self.message),
            (true, n) => write!(f, "{} line {n}: {}", self.table.name(), self.message),
            (false, 0) => f.write_str(&self.message),
            (false, n) => write!(f, "line {n}: {}", self.message),
        }
    }
}

/// Why an import failed; nothing was imported. `F` names the register's files.
#[derive(Debug, thiserror::Error)]
pub enum ImportError<F: ImportFile> {
    /// A file could not be read.
    #[error("{}cannot read the file: {source}", file_prefix(*.table))]
    Io {
        /// Which file.
        table: F,
        /// The error.
        source: std::io::Error,
    },
    /// The header is not one the register reads (line 1). An import of several files lists
    /// this among its [`ImportError::Invalid`] problems instead.
    #[error("{0}")]
    Header(Problem<F>),
    /// Every problem found, by file and line.
    #[error(
        "{} {}, nothing imported:\n{}",
        .0.len(),
        if F::SEVERAL { "problem(s)" } else { "invalid row(s)" },
        lines(.0)
    )]
    Invalid(Vec<Problem<F>>),
    /// The file has no rows.
    #[error("the file has no {}", F::ROWS)]
    Empty,
}

fn file_prefix<F: ImportFile>(table: F) -> String {
    if F::SEVERAL {
        format!("{}: ", table.name())
    } else {
        String::new()
    }
}

fn lines<F: ImportFile>(problems: &[Problem<F>]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A header a register reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The column names, comma-separated, exactly as the first line must give them.
    pub columns: &'static str,
    /// How many cells at its end a row may leave out (rows written before the last columns
    /// were added).
    pub optional: usize,
}

impl Header {
    /// A header whose every row has every cell.
    pub const fn new(columns: &'static str) -> Header {
        Header {
            columns,
            optional: 0,
        }
    }

    /// The same header, whose rows may leave out their last `n` cells.
    pub const fn optional_tail(self, n: usize) -> Header {
        Header {
            columns: self.columns,
            optional: n,
        }
    }

    /// Its number of columns.
    pub fn len(&self) -> usize {
        self.columns.split(',').count()
    }

    /// Always false: a header has at least one column.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Reads one file whose header must be one of `headers` (the current one first), and hands
/// each row that is not blank and has the header's cells to `row`, with its line number, in
/// the file's order. A row with a bad cell count or a cell that is not UTF-8, and a row `row`
/// refuses (its message), becomes a problem in `problems`.
///
/// # Errors
/// [`ImportError::Io`] when the file cannot be read, [`ImportError::Header`] when its header
/// is none of `headers` (then no row is read).
pub fn read_rows<F: ImportFile>(
    input: impl Read,
    table: F,
    headers: &[Header],
    problems: &mut Vec<Problem<F>>,
    mut row: impl FnMut(StringRecord, u64) -> Result<(), String>,
) -> Result<(), ImportError<F>> {
    let io = |source| ImportError::Io { table, source };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let found = match rdr.headers() {
        Ok(h) => {
            let cells: Vec<&str> = h
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i == 0 {
                        c.trim_start_matches('\u{feff}').trim()
                    } else {
                        c
                    }
                })
                .collect();
            let joined = cells.join(",");
            if let Some(h) = headers.iter().find(|h| h.columns == joined) {
                Ok(*h)
            } else if joined.is_empty() {
                Err("the file is empty".to_string())
            } else if cells.iter().all(|c| looks_like_a_name(c)) {
                Err(format!("found `{joined}`"))
            } else {
                Err(format!(
                    "found {} cells that are not column names (is the header missing?)",
                    cells.len()
                ))
            }
        }
        Err(e) => match e.into_kind() {
            csv::ErrorKind::Io(e) => return Err(io(e)),
            _ => Err("it is not valid UTF-8 CSV".to_string()),
        },
    };
    let header = match found {
        Ok(h) => h,
        Err(found) => {
            return Err(ImportError::Header(Problem {
                table,
                line: 1,
                message: format!("the header must be exactly {}; {found}", expected(headers)),
            }));
        }
    };
    let columns = header.len();
    let mut problem = |line, message| {
        problems.push(Problem {
            table,
            line,
            message,
        });
    };
    for rec in rdr.into_records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                match e.into_kind() {
                    csv::ErrorKind::Io(e) => return Err(io(e)),
                    csv::ErrorKind::Utf8 { err, .. } => problem(
                        line,
                        format!(
                            "cell {} is not valid UTF-8 (save the file as UTF-8)",
                            err.field() + 1
                        ),
                    ),
                    _ => problem(line, "not valid CSV".to_string()),
                }
                continue;
            }
        };
        let line = rec.position().map_or(0, |p| p.line());
        if rec.iter().all(str::is_empty) {
            continue;
        }
        if rec.len() > columns || rec.len() + header.optional < columns {
            problem(
                line,
                format!("expected {columns} cells, found {}", rec.len()),
            );
            continue;
        }
        if let Err(message) = row(rec, line) {
            problem(line, message);
        }
    }
    Ok(())
}

/// The problem of a file that has a header but no rows (in a register of several files).
pub fn no_rows<F: ImportFile>(table: F) -> Problem<F> {
    Problem {
        table,
        line: 0,
        message: ImportError::<F>::Empty.to_string(),
    }
}

/// Reads one register file all or nothing: [`read_rows`], with `parse_row` for each row (given
/// the row and its line; it returns what is wrong, which the line number is put before).
/// `key` says how messages name a parsed row's key (`id S-1001`): a key given on two lines is
/// refused on the second.
///
/// # Errors
/// [`ImportError::Io`] or [`ImportError::Header`] as [`read_rows`]; [`ImportError::Invalid`]
/// with every problem of every row, in line order; [`ImportError::Empty`] when the file has no
/// rows.
pub fn read_all_or_nothing<F: ImportFile, T>(
    input: impl Read,
    table: F,
    headers: &[Header],
    mut parse_row: impl FnMut(&StringRecord, u64) -> Result<T, String>,
    key: impl Fn(&T) -> String,
) -> Result<Vec<T>, ImportError<F>> {
    let mut problems = Vec::new();
    let mut items = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    read_rows(input, table, headers, &mut problems, |rec, line| {
        let item = parse_row(&rec, line)?;
        let k = key(&item);
        if let Some(first) = seen.get(&k) {
            return Err(format!("{k} already given on line {first}"));
        }
        seen.insert(k, line);
        items.push(item);
        Ok(())
    })?;
    if !problems.is_empty() {
        return Err(ImportError::Invalid(problems));
    }
    if items.is_empty() {
        return Err(ImportError::Empty);
    }
    Ok(items)
}

/// The headers a file may have, as a message gives them: the current one, and the older ones
/// (by the column they end at when they are the current one cut short).
fn expected(headers: &[Header]) -> String {
    let Some((current, older)) = headers.split_first() else {
        return String::new();
    };
    let mut out = format!("`{}`", current.columns);
    if older.is_empty() {
        return out;
    }
    let names: Vec<String> = older
        .iter()
        .map(|h| {
            let cut_short = current
                .columns
                .strip_prefix(h.columns)
                .is_some_and(|rest| rest.starts_with(','));
            match h.columns.rsplit(',').next() {
                Some(last) if cut_short => format!("after `{last}`"),
                _ => format!("as `{}`", h.columns),
            }
        })
        .collect();
    out.push_str(&format!(" (older files may end {})", names.join(" or ")));
    out
}

/// Whether a header cell looks like a column name (so it may be shown in a message; a data
/// row given in place of the header may hold a door code or a key).
fn looks_like_a_name(cell: &str) -> bool {
    cell.len() <= 32
        && cell
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct One;

    impl ImportFile for One {
        const ROWS: &'static str = "things";
        const SEVERAL: bool = false;
        fn name(self) -> &'static str {
            "things"
        }
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Two {
        A,
    }

    impl ImportFile for Two {
        const ROWS: &'static str = "rows";
        const SEVERAL: bool = true;
        fn name(self) -> &'static str {
            "a"
        }
    }

    const HEADERS: &[Header] = &[
        Header::new("id,name,extra").optional_tail(1),
        Header::new("id,name"),
    ];

    /// Rows are (id, name); a name "bad" is refused.
    fn load(text: &[u8]) -> Result<Vec<(String, String)>, ImportError<One>> {
        read_all_or_nothing(
            text,
            One,
            HEADERS,
            |rec, _| match (rec.get(0), rec.get(1)) {
                (_, Some("bad")) => Err("name is bad".to_string()),
                (Some(id), Some(name)) => Ok((id.to_string(), name.to_string())),
                _ => Err("short".to_string()),
            },
            |(id, _)| format!("id {id}"),
        )
    }

    #[test]
    fn every_header_variant_bom_blank_rows_and_optional_cells() {
        let got = load("\u{feff}id,name,extra\n a , b ,x\n,,\nc,d\n".as_bytes()).unwrap();
        assert_eq!(got, [("a".into(), "b".into()), ("c".into(), "d".into())]);
        let got = load(b"id,name\ne,f\n").unwrap();
        assert_eq!(got.len(), 1);
        // The older header's rows have no optional cells.
        let err = load(b"id,name\ne\n").unwrap_err().to_string();
        assert_eq!(
            err,
            "1 invalid row(s), nothing imported:\nline 2: expected 2 cells, found 1"
        );
    }

    #[test]
    fn every_row_problem_by_line_and_nothing_imported() {
        let mut text = b"id,name,extra\na,b\nc,bad\na,again\nd,e,f,g\n".to_vec();
        text.extend_from_slice(b"g,\xFF\n");
        let err = load(&text).unwrap_err();
        let ImportError::Invalid(problems) = &err else {
            panic!("{err:?}");
        };
        let lines: Vec<u64> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [3, 4, 5, 6], "in the file's order");
        assert_eq!(
            err.to_string(),
            "4 invalid row(s), nothing imported:\n\
             line 3: name is bad\n\
             line 4: id a already given on line 2\n\
             line 5: expected 3 cells, found 4\n\
             line 6: cell 2 is not valid UTF-8 (save the file as UTF-8)"
        );
    }

    #[test]
    fn headers_are_refused_without_showing_data() {
        let err = load(b"id,nom\na,b\n").unwrap_err();
        assert!(matches!(err, ImportError::Header(_)));
        assert_eq!(
            err.to_string(),
            "line 1: the header must be exactly `id,name,extra` (older files may end after \
             `name`); found `id,nom`"
        );
        let err = load(b"S-1,4711\n").unwrap_err().to_string();
        assert!(err.ends_with("found 2 cells that are not column names (is the header missing?)"));
        assert!(!err.contains("4711"), "{err}");
        let err = load(b"").unwrap_err().to_string();
        assert!(err.ends_with("; the file is empty"), "{err}");
        let err = load(b"id,n\xFFme\n").unwrap_err().to_string();
        assert!(err.ends_with("; it is not valid UTF-8 CSV"), "{err}");
        // Older headers that are not the current one cut short are given whole.
        assert_eq!(
            expected(&[Header::new("a,b"), Header::new("a,c")]),
            "`a,b` (older files may end as `a,c`)"
        );
    }

    #[test]
    fn a_file_without_rows_is_empty() {
        assert!(matches!(load(b"id,name\n\n,\n"), Err(ImportError::Empty)));
        assert_eq!(
            ImportError::<One>::Empty.to_string(),
            "the file has no things"
        );
        assert_eq!(no_rows(Two::A).to_string(), "a: the file has no rows");
    }

    #[test]
    fn several_files_name_the_file_of_each_problem() {
        let mut problems = Vec::new();
        let mut rows = Vec::new();
        read_rows(
            &b"id\nx\ny,z\n"[..],
            Two::A,
            &[Header::new("id")],
            &mut problems,
            |rec, line| {
                rows.push((line, rec));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].0, rows[0].1.get(0)), (2, Some("x")));
        let err = ImportError::Invalid(problems);
        assert_eq!(
            err.to_string(),
            "1 problem(s), nothing imported:\na line 3: expected 1 cells, found 2"
        );
        let io = ImportError::Io {
            table: Two::A,
            source: std::io::Error::other("gone"),
        };
        assert_eq!(io.to_string(), "a: cannot read the file: gone");
        let io = ImportError::Io {
            table: One,
            source: std::io::Error::other("gone"),
        };
        assert_eq!(io.to_string(), "cannot read the file: gone");
    }
}

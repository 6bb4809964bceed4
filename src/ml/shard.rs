//! A node's shard on disk: one CSV file, or a folder of CSV files with the same header. Files are
//! read up to their last complete line (a half-written last line waits for the next read), and a
//! [`Watermark`] records how far each file was read, so that later reads return only new rows.
//! [`read_new_at_most`] bounds what one read takes in, and [`good_lines`] sets malformed rows
//! aside so that one bad line cannot hold up the rows after it.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::data::{load_csv_parts, parse_csv, DataSpec, Table};
use super::error::{MlError, Result};

/// How many bytes of each shard file have been read (always at a line boundary).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    pub files: BTreeMap<PathBuf, u64>,
}

fn io_err(path: &Path, source: std::io::Error) -> MlError {
    MlError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The shard's CSV files: the file itself, or the folder's `*.csv` files in name order.
pub fn shard_files(shard: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(shard).map_err(|e| io_err(shard, e))?;
    if !meta.is_dir() {
        return Ok(vec![shard.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(shard)
        .map_err(|e| io_err(shard, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(MlError::Data(format!(
            "{}: the shard folder has no .csv file",
            shard.display()
        )));
    }
    Ok(files)
}

/// Reads `path` from byte `from` up to and including its last newline. Returns the bytes and
/// the new offset; a file shorter than `from` (truncated or replaced) reads from the start.
pub fn read_complete(path: &Path, from: u64) -> Result<(Vec<u8>, u64)> {
    read_complete_at_most(path, from, u64::MAX)
}

/// [`read_complete`] reading at most `limit` bytes.
fn read_complete_at_most(path: &Path, from: u64, limit: u64) -> Result<(Vec<u8>, u64)> {
    let mut file = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    let len = file.metadata().map_err(|e| io_err(path, e))?.len();
    let from = if len < from { 0 } else { from };
    file.seek(SeekFrom::Start(from))
        .map_err(|e| io_err(path, e))?;
    let take = (len - from).min(limit);
    let mut bytes = Vec::with_capacity(take as usize);
    file.take(take)
        .read_to_end(&mut bytes)
        .map_err(|e| io_err(path, e))?;
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    bytes.truncate(complete);
    Ok((bytes, from + complete as u64))
}

/// Loads the whole shard (complete lines only) and where reading stopped.
pub fn load_shard(shard: &Path, spec: &DataSpec) -> Result<(Table, Watermark)> {
    let files = shard_files(shard)?;
    let mut mark = Watermark::default();
    let mut contents = Vec::with_capacity(files.len());
    for file in &files {
        let (bytes, end) = read_complete(file, 0)?;
        mark.files.insert(file.clone(), end);
        contents.push(bytes);
    }
    let parts: Vec<(&Path, &[u8])> = files
        .iter()
        .zip(&contents)
        .map(|(f, b)| (f.as_path(), b.as_slice()))
        .collect();
    Ok((load_csv_parts(&parts, spec)?, mark))
}

/// New complete lines of the shard since `mark`, which moves past them.
pub struct NewLines {
    /// The header line (from the first file), newline included.
    pub header: Vec<u8>,
    /// Data lines only (headers of new files removed), each ending in a newline.
    pub lines: Vec<u8>,
    pub rows: usize,
    /// Lines longer than the read's byte budget, skipped.
    pub skipped: usize,
}

/// Reads what was appended to the shard's files, and files added to its folder, since `mark`.
pub fn read_new(shard: &Path, mark: &mut Watermark) -> Result<NewLines> {
    read_new_at_most(shard, mark, u64::MAX)
}

/// [`read_new`] taking in at most about `budget` bytes of new lines: the rest waits for the next
/// read. A line longer than the whole budget is skipped (counted in `skipped`).
pub fn read_new_at_most(shard: &Path, mark: &mut Watermark, budget: u64) -> Result<NewLines> {
    let mut out = NewLines {
        header: Vec::new(),
        lines: Vec::new(),
        rows: 0,
        skipped: 0,
    };
    for file in shard_files(shard)? {
        let from = mark.files.get(&file).copied().unwrap_or(0);
        let left = budget.saturating_sub(out.lines.len() as u64);
        if left == 0 {
            break;
        }
        let (bytes, end) = read_complete_at_most(&file, from, left)?;
        if bytes.is_empty() && from > 0 && left == budget && budget < u64::MAX {
            let len = std::fs::metadata(&file)
                .map_err(|e| io_err(&file, e))?
                .len();
            if len.saturating_sub(from) > budget {
                // No newline within the whole budget: a line this long is no row; skip it.
                let to = skip_line(&file, from)?;
                if to > from {
                    out.skipped += 1;
                    mark.files.insert(file, to);
                }
                continue;
            }
        }
        // A file read from its start begins with its header.
        let data = if from == 0 || end < from {
            let Some(nl) = bytes.iter().position(|&b| b == b'\n') else {
                continue; // not even a whole header yet
            };
            let header = &bytes[..=nl];
            if out.header.is_empty() {
                out.header = header.to_vec();
            } else if out.header != header {
                return Err(MlError::Csv {
                    path: file.clone(),
                    line: 1,
                    message: "header differs from the shard's first file".into(),
                });
            }
            &bytes[nl + 1..]
        } else {
            &bytes[..]
        };
        if out.header.is_empty() {
            out.header = first_line(&file)?;
        }
        out.rows += data
            .split(|&b| b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .count();
        out.lines.extend_from_slice(data);
        mark.files.insert(file, end);
    }
    Ok(out)
}

/// Where the line that starts at `from` ends (after its newline), reading in chunks; `from` when
/// it has no newline yet.
fn skip_line(path: &Path, from: u64) -> Result<u64> {
    let mut file = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    file.seek(SeekFrom::Start(from))
        .map_err(|e| io_err(path, e))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut at = from;
    loop {
        let n = file.read(&mut buf).map_err(|e| io_err(path, e))?;
        if n == 0 {
            return Ok(from);
        }
        if let Some(i) = buf[..n].iter().position(|&b| b == b'\n') {
            return Ok(at + i as u64 + 1);
        }
        at += n as u64;
    }
}

/// The lines of `lines` that parse as rows under `header` (newline-ended each), how many, and
/// the rows that did not: their count and the first one's error. The whole batch is tried first;
/// only a batch with an error is split line by line.
pub fn good_lines(
    origin: &Path,
    header: &[u8],
    lines: &[u8],
    spec: &DataSpec,
) -> (Vec<u8>, usize, usize, Option<String>) {
    let parses = |body: &[u8]| {
        let mut text = header.to_vec();
        text.extend_from_slice(body);
        parse_csv(origin, &text, spec)
    };
    let rows = lines
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace));
    if lines.is_empty() || parses(lines).is_ok() {
        return (lines.to_vec(), rows.count(), 0, None);
    }
    let (mut good, mut n, mut bad, mut first) = (Vec::new(), 0, 0, None);
    for line in rows {
        let mut one = line.to_vec();
        one.push(b'\n');
        match parses(&one) {
            Ok(_) => {
                good.extend_from_slice(&one);
                n += 1;
            }
            Err(e) => {
                bad += 1;
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
    (good, n, bad, first)
}

fn first_line(path: &Path) -> Result<Vec<u8>> {
    let (bytes, _) = read_complete(path, 0)?;
    let end = bytes.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
    Ok(bytes[..end].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::Task;
    use std::io::Write;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ensemble-shard-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open");
        f.write_all(text.as_bytes()).expect("write");
    }

    fn spec() -> DataSpec {
        DataSpec {
            label: "y".into(),
            task: Task::Regression,
            drop: vec![],
        }
    }

    #[test]
    fn half_written_last_line_waits_for_its_newline() {
        let d = dir("half");
        let f = d.join("s.csv");
        append(&f, "x,y\n1,2\n3,4\n5,");
        let (table, mark) = load_shard(&f, &spec()).expect("loads");
        assert_eq!(table.len(), 2, "the partial row is not read");
        let mut mark2 = mark.clone();
        let new = read_new(&f, &mut mark2).expect("reads");
        assert_eq!(new.rows, 0);
        append(&f, "6\n7,8\n");
        let new = read_new(&f, &mut mark2).expect("reads");
        assert_eq!(new.rows, 2);
        assert_eq!(new.lines, b"5,6\n7,8\n");
        assert_eq!(new.header, b"x,y\n");
        let again = read_new(&f, &mut mark2).expect("reads");
        assert_eq!(again.rows, 0, "each line is read once");
    }

    #[test]
    fn a_folder_shard_reads_new_files_without_their_header() {
        let d = dir("folder");
        append(&d.join("a.csv"), "x,y\n1,2\n");
        let (table, mut mark) = load_shard(&d, &spec()).expect("loads");
        assert_eq!(table.len(), 1);
        append(&d.join("b.csv"), "x,y\n3,4\n5,6\n");
        append(&d.join("notes.txt"), "ignored\n");
        let new = read_new(&d, &mut mark).expect("reads");
        assert_eq!(new.rows, 2);
        assert_eq!(new.lines, b"3,4\n5,6\n");
        let (all, _) = load_shard(&d, &spec()).expect("loads");
        assert_eq!(all.len(), 3);
        append(&d.join("c.csv"), "x,z\n1,2\n");
        assert!(
            read_new(&d, &mut mark).is_err(),
            "another header is an error"
        );
    }

    #[test]
    fn malformed_lines_are_set_aside_and_counted() {
        let origin = Path::new("new rows");
        let (good, rows, bad, why) = good_lines(origin, b"x,y\n", b"1,2\n3,4\n", &spec());
        assert_eq!(
            (good.as_slice(), rows, bad, why),
            (&b"1,2\n3,4\n"[..], 2, 0, None)
        );
        // Ragged, then a non-numeric label: both skipped, the good rows kept in order.
        let lines = b"1,2\n1,2,3\n5,6\n7,abc\n\n8,9\n";
        let (good, rows, bad, why) = good_lines(origin, b"x,y\n", lines, &spec());
        assert_eq!(
            (good.as_slice(), rows, bad),
            (&b"1,2\n5,6\n8,9\n"[..], 3, 2)
        );
        assert!(why.is_some_and(|w| w.contains("ragged")));
    }

    #[test]
    fn a_read_takes_in_at_most_its_budget() {
        let d = dir("budget");
        let f = d.join("s.csv");
        append(&f, "x,y\n0,0\n");
        let (_, mut mark) = load_shard(&f, &spec()).expect("loads");
        append(&f, "1,2\n3,4\n5,6\n");
        // 9 bytes: two whole lines; the third waits for the next read.
        let new = read_new_at_most(&f, &mut mark, 9).expect("reads");
        assert_eq!((new.lines.as_slice(), new.rows), (&b"1,2\n3,4\n"[..], 2));
        let new = read_new_at_most(&f, &mut mark, 9).expect("reads");
        assert_eq!(new.rows, 1);
        // A line longer than the whole budget is skipped, and what follows is read.
        append(&f, &format!("{},1\n7,8\n", "9".repeat(40)));
        let new = read_new_at_most(&f, &mut mark, 9).expect("reads");
        assert_eq!((new.rows, new.skipped), (0, 1));
        let new = read_new_at_most(&f, &mut mark, 9).expect("reads");
        assert_eq!((new.lines.as_slice(), new.skipped), (&b"7,8\n"[..], 0));
    }
}

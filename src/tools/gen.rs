//! `gen`: write a seeded synthetic shard ([`crate::ml::synth`]) to a file, or append to one.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::ml::synth::{write_rows, Synth};
use crate::ml::{MlError, Result, Task};

/// `gen --rows N [--features F] [--task regression|classification] [--classes K] [--shift X]
/// [--noise S] [--seed S] [--append] --out FILE.csv`
#[derive(Debug, Clone, clap::Args)]
pub struct GenArgs {
    /// Rows to write
    #[arg(long)]
    pub rows: usize,
    /// Feature columns x0..x{F-1} (at least 5: Friedman #1 uses x0..x4)
    #[arg(long, default_value_t = 10)]
    pub features: usize,
    #[arg(long, value_enum, default_value_t = Task::Regression)]
    pub task: Task,
    /// Classes for classification (labels c0, c1, ...)
    #[arg(long, default_value_t = 2)]
    pub classes: usize,
    /// Move every feature by this many standard deviations of its unshifted distribution
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub shift: f64,
    /// Standard deviation of the Gaussian noise on the Friedman score
    #[arg(long, default_value_t = 1.0)]
    pub noise: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Append rows (no header) to an existing file whose header must match; creates it otherwise
    #[arg(long)]
    pub append: bool,
    /// Output CSV
    #[arg(long)]
    pub out: PathBuf,
}

impl GenArgs {
    /// The command line's defaults with `rows` and `out` set.
    pub fn new(rows: usize, out: impl Into<PathBuf>) -> GenArgs {
        let s = Synth::new(rows, out);
        GenArgs {
            rows,
            features: s.features,
            task: s.task,
            classes: s.classes,
            shift: s.shift,
            noise: s.noise,
            seed: s.seed,
            append: false,
            out: s.out,
        }
    }

    /// What to generate.
    pub fn synth(&self) -> Synth {
        Synth {
            rows: self.rows,
            features: self.features,
            task: self.task,
            classes: self.classes,
            shift: self.shift,
            noise: self.noise,
            seed: self.seed,
            out: self.out.clone(),
        }
    }
}

/// With `--append` on an existing non-empty file: checks its header and whether it ends with a
/// newline (a last line without one gets it, so the new rows start on their own line).
fn check_append(path: &Path, header: &str) -> Result<Option<bool>> {
    let io = |source| MlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let len = f.metadata().map_err(io)?.len();
    if len == 0 {
        return Ok(None);
    }
    let mut first = String::new();
    BufReader::new(&mut f).read_line(&mut first).map_err(io)?;
    let found = first.trim_end_matches(['\n', '\r']);
    let cells: Vec<&str> = found.split(',').map(str::trim).collect();
    let want: Vec<&str> = header.split(',').collect();
    if cells != want {
        return Err(MlError::Csv {
            path: path.to_path_buf(),
            line: 1,
            message: format!("--append: the header is '{found}', these rows need '{header}'"),
        });
    }
    f.seek(SeekFrom::Start(len - 1)).map_err(io)?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last).map_err(io)?;
    Ok(Some(last[0] == b'\n'))
}

/// Run `gen`: writes the file and returns `{"ok":true,"rows":N,"features":F,"out":path,"ms":..}`.
pub fn run_gen(args: &GenArgs) -> Result<serde_json::Value> {
    let synth = args.synth();
    synth.validate()?;
    let t0 = Instant::now();
    let io = |source| MlError::Io {
        path: args.out.clone(),
        source,
    };
    let header = synth.header().join(",");
    let existing = if args.append {
        check_append(&args.out, &header)?
    } else {
        None
    };
    match existing {
        Some(ends_with_newline) => {
            let mut f = OpenOptions::new()
                .append(true)
                .open(&args.out)
                .map_err(io)?;
            if !ends_with_newline {
                f.write_all(b"\n").map_err(io)?;
            }
            write_rows(&synth, false, f)?;
        }
        None => write_rows(&synth, true, File::create(&args.out).map_err(io)?)?,
    }
    Ok(serde_json::json!({
        "ok": true,
        "rows": args.rows,
        "features": args.features,
        "task": args.task,
        "classes": (args.task == Task::Classification).then_some(args.classes),
        "shift": args.shift,
        "seed": args.seed,
        "append": existing.is_some(),
        "out": args.out.display().to_string(),
        "ms": t0.elapsed().as_millis() as u64,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::data::{parse_csv, DataSpec};

    fn parse(b: &[u8], task: Task) -> crate::ml::Table {
        let spec = DataSpec {
            label: "y".into(),
            task,
            drop: vec![],
        };
        parse_csv(Path::new("gen.csv"), b, &spec).unwrap()
    }

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("ml-gen-{}-{name}", std::process::id()))
    }

    #[test]
    fn run_gen_writes_and_appends() {
        let path = temp("append.csv");
        let mut a = GenArgs::new(300, &path);
        let v = run_gen(&a).unwrap();
        assert_eq!(
            (v["ok"].as_bool(), v["rows"].as_u64()),
            (Some(true), Some(300))
        );
        a.append = true;
        a.rows = 200;
        a.seed = 9;
        run_gen(&a).unwrap();
        let text = std::fs::read(&path).unwrap();
        assert_eq!(parse(&text, Task::Regression).len(), 500);
        // A last line without its newline gets one before the appended rows.
        let mut cut = text.clone();
        cut.pop();
        std::fs::write(&path, &cut).unwrap();
        a.rows = 1;
        run_gen(&a).unwrap();
        assert_eq!(
            parse(&std::fs::read(&path).unwrap(), Task::Regression).len(),
            501
        );
        // Another header is refused.
        a.features = 6;
        let e = run_gen(&a).unwrap_err().to_string();
        assert!(e.contains("--append") && e.contains("x5"), "{e}");
        // Absent file: created with its header.
        let fresh = temp("fresh.csv");
        let _ = std::fs::remove_file(&fresh);
        let mut b = GenArgs::new(5, &fresh);
        b.append = true;
        assert_eq!(run_gen(&b).unwrap()["append"], false);
        assert_eq!(
            parse(&std::fs::read(&fresh).unwrap(), Task::Regression).len(),
            5
        );
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&fresh);
    }
}

//! Inputs a test makes with the binary itself: synthetic shards (`ensemble-node gen`) and a
//! cluster's certificates (`ensemble-node certs`), and the config sections that name them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::{quote, run};

/// Writes (or with `append`, appends) `rows` synthetic regression rows of 8 features.
pub fn gen(path: &Path, rows: usize, seed: u64, shift: f64, append: bool) {
    let (rows, seed, shift) = (rows.to_string(), seed.to_string(), shift.to_string());
    let out = path.display().to_string();
    let mut args = vec![
        "gen",
        "--rows",
        &rows,
        "--features",
        "8",
        "--seed",
        &seed,
        "--shift",
        &shift,
        "--out",
        &out,
    ];
    if append {
        args.push("--append");
    }
    let ran = run(&args, &[], "", Path::new("."), Duration::from_secs(60));
    assert_eq!(ran.code, Some(0), "gen failed: {ran}");
}

/// `ensemble-node certs --dir DIR ARGS...`.
pub fn certs(dir: &Path, args: &[&str]) {
    let d = dir.display().to_string();
    let mut all = vec!["certs", "--dir", d.as_str()];
    all.extend_from_slice(args);
    let ran = run(
        &all,
        &[],
        "",
        dir.parent().unwrap_or(dir),
        Duration::from_secs(30),
    );
    assert_eq!(ran.code, Some(0), "{ran}");
}

/// The `[tls]` section of the member `name` whose certificates `certs` wrote into `dir`.
pub fn tls_toml(dir: &Path, name: &str) -> String {
    let q = |p: PathBuf| quote(&p.display().to_string());
    format!(
        "[tls]\nca = {}\ncert = {}\nkey = {}\n",
        q(dir.join("ca.pem")),
        q(dir.join(format!("{name}.pem"))),
        q(dir.join(format!("{name}.key")))
    )
}

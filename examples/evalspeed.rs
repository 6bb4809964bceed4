// Scratch timing of compiled model evaluation (not committed).
use ensemble_cluster::ml::*;
use std::time::Instant;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let spec = DataSpec {
        label: "y".into(),
        task: Task::Regression,
        drop: vec![],
    };
    let t = load_csv(args[1].as_ref(), &spec).unwrap();
    let path = format!("{}.model", args[1]);
    let p = match std::fs::read(&path) {
        Ok(b) => Pipeline::from_bytes(&b).unwrap(),
        Err(_) => {
            let p = Pipeline::fit(&t, &ModelConfig::default(), ModelMeta::default()).unwrap();
            std::fs::write(&path, p.to_bytes().unwrap()).unwrap();
            p
        }
    };
    let s = Served::new(&p);
    let n: usize = args.get(2).map(|a| a.parse().unwrap()).unwrap_or(t.len());
    let idx: Vec<usize> = (0..n).collect();
    let rows = TypedRows::from_rows(s.schema(), &t.select(&idx).rows(), false).unwrap();
    fn cpu() -> f64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
    }
    for _ in 0..5 {
        let t0 = Instant::now();
        let c0 = cpu();
        let out = s.predict(&rows).unwrap();
        let dc = cpu() - c0;
        let dt = t0.elapsed();
        eprintln!(
            "{} rows in {:?} wall, {:.3} us/row CPU",
            out.len(),
            dt,
            dc * 1e6 / out.len() as f64
        );
    }
}

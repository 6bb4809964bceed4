//! Bad CSVs give clear errors naming the file and the line.

use std::path::PathBuf;

use ensemble_cluster::ml::{load_csv, load_rows, ColumnData, DataSpec, Task};

fn write(name: &str, text: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ml-csv-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn spec(task: Task) -> DataSpec {
    DataSpec {
        label: "y".into(),
        task,
        drop: vec!["id".into()],
    }
}

fn err(name: &str, text: &str, task: Task) -> String {
    let p = write(name, text);
    let e = load_csv(&p, &spec(task)).unwrap_err().to_string();
    assert!(e.contains(name), "error does not name the file: {e}");
    e
}

#[test]
fn ragged_row() {
    let e = err("ragged.csv", "a,b,y\n1,2,3\n4,5\n", Task::Regression);
    assert!(
        e.contains(":3:") && e.contains("ragged row: 2 fields, the header has 3"),
        "{e}"
    );
}

#[test]
fn missing_label_column() {
    let e = err("nolabel.csv", "a,b\n1,2\n", Task::Regression);
    assert!(
        e.contains(":1:") && e.contains("label column 'y' not in the header"),
        "{e}"
    );
}

#[test]
fn non_numeric_label_for_regression() {
    let e = err("textlabel.csv", "a,y\n1,2\n3,cheap\n", Task::Regression);
    assert!(
        e.contains(":3:") && e.contains("'cheap' is not a number"),
        "{e}"
    );
    // the same file is fine for classification
    let p = write("textlabel2.csv", "a,y\n1,2\n3,cheap\n");
    assert_eq!(load_csv(&p, &spec(Task::Classification)).unwrap().len(), 2);
}

#[test]
fn missing_label_value() {
    let e = err("nalabel.csv", "a,y\n1,2\n3,NA\n", Task::Regression);
    assert!(e.contains(":3:") && e.contains("missing"), "{e}");
}

#[test]
fn empty_file_and_header_only() {
    let e = err("empty.csv", "", Task::Regression);
    assert!(e.contains("empty file"), "{e}");
    let e = err("header.csv", "a,y\n", Task::Regression);
    assert!(e.contains("no data rows"), "{e}");
}

#[test]
fn missing_file() {
    let e = load_csv(
        &PathBuf::from("/nonexistent/x.csv"),
        &spec(Task::Regression),
    )
    .unwrap_err();
    assert!(e.to_string().contains("/nonexistent/x.csv"), "{e}");
}

#[test]
fn types_and_missing_values_are_inferred() {
    let p = write("ok.csv", "id,num,cat,y\n1,1.5,a,10\n2,NA,,20\n3,-2,3,30\n");
    let t = load_csv(&p, &spec(Task::Regression)).unwrap();
    let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["num", "cat"], "id dropped, label taken out");
    assert_eq!(
        t.columns[0].data,
        ColumnData::Numeric(vec![Some(1.5), None, Some(-2.0)])
    );
    assert_eq!(
        t.columns[1].data,
        ColumnData::Categorical(vec![Some("a".into()), None, Some("3".into())])
    );
    let rows = load_rows(&p).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows.columns.len(), 4);
}

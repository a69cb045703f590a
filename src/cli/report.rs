//! An evaluation's report, shared by `train` and `eval`: as text for people and as JSON for
//! scripts.

use std::collections::BTreeSet;

use fer_cbam::train::Evaluation;

/// A human-readable report: accuracy, macro F1, per-class precision/recall/F1, confusion matrix.
pub fn text(e: &Evaluation, classes: &[String]) -> String {
    let mut s = format!(
        "accuracy {:.4}  macro-F1 {:.4}  ({} images)\n",
        e.accuracy(),
        e.macro_f1(),
        e.labels.len()
    );
    s += &format!(
        "{:<10} {:>9} {:>9} {:>9} {:>8}\n",
        "class", "precision", "recall", "F1", "support"
    );
    for (c, (p, r, f, n)) in e.per_class().iter().enumerate() {
        s += &format!(
            "{:<10} {:>9.3} {:>9.3} {:>9.3} {:>8}\n",
            classes[c], p, r, f, n
        );
    }
    s += "confusion (rows true, columns predicted):\n";
    s += &format!("{:<10}", "");
    for c in classes {
        s += &format!(" {:>8}", &c[..c.len().min(8)]);
    }
    s += "\n";
    for (c, row) in e.confusion().iter().enumerate() {
        s += &format!("{:<10}", classes[c]);
        for v in row {
            s += &format!(" {v:>8}");
        }
        s += "\n";
    }
    if !e.failures.is_empty() {
        s += &unreadable_lines("images could not be read and were left out", &e.failures);
    }
    s
}

/// "N <what>:" and one indented line per failure (each names its file).
pub fn unreadable_lines(what: &str, failures: &[String]) -> String {
    let mut s = format!("{} {what}:\n", failures.len());
    for f in failures {
        s += &format!("  {f}\n");
    }
    s
}

/// Every image that could not be read, training and test side, each once.
pub fn all_unreadable(e: &Evaluation, train: &[String]) -> Vec<String> {
    let all: BTreeSet<&String> = e.failures.iter().chain(train).collect();
    all.into_iter().cloned().collect()
}

/// [`text`] as JSON, for scripts.
pub fn json(e: &Evaluation, classes: &[String]) -> serde_json::Value {
    let per: Vec<serde_json::Value> = e
        .per_class()
        .iter()
        .enumerate()
        .map(|(c, (p, r, f, n))| {
            serde_json::json!({"class": classes[c], "precision": p, "recall": r, "f1": f, "support": n})
        })
        .collect();
    serde_json::json!({
        "images": e.labels.len(),
        "accuracy": e.accuracy(),
        "macro_f1": e.macro_f1(),
        "per_class": per,
        "confusion": e.confusion(),
        "unreadable": e.failures,
    })
}

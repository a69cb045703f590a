//! Stratified, seeded train/test splits and k-fold partitions, optionally grouped.
//!
//! Stratified because the datasets are imbalanced (FER2013 has 16x more happy than disgust
//! images): each class keeps its share on both sides. Grouped because lab datasets hold several
//! near-identical frames per subject (CK+48 keeps the last three frames of every sequence): a
//! subject split across train and test inflates test accuracy, so with groups every item of a
//! group lands on the same side.
//!
//! Both use one greedy procedure: units (a group, or a lone item) are shuffled with a seeded
//! [`SplitMix64`], ordered largest first (the shuffle breaks ties), and each is placed where it
//! brings the per-class counts closest to their targets. Without groups every unit is one item,
//! and the result is exact: each class's test count is `round(n_c * test_fraction)` (k-fold: fold
//! counts of a class differ by at most one). With groups the counts are as close as the group
//! sizes allow.

use std::collections::HashMap;

use crate::rng::SplitMix64;
use crate::{Error, Result};

/// The paper's 80:20 split.
pub const TEST_FRACTION: f64 = 0.2;

/// Item indices on each side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

fn invalid(message: String) -> Error {
    Error::InvalidConfig {
        op: "split".into(),
        message,
    }
}

/// Units of items that must stay together, shuffled by `seed` then ordered largest first.
fn units(
    labels: &[usize],
    groups: Option<&[Option<String>]>,
    seed: u64,
) -> Result<Vec<Vec<usize>>> {
    if let Some(g) = groups {
        if g.len() != labels.len() {
            return Err(invalid(format!(
                "{} labels but {} group ids",
                labels.len(),
                g.len()
            )));
        }
    }
    let mut units: Vec<Vec<usize>> = Vec::new();
    let mut by_group: HashMap<&str, usize> = HashMap::new();
    for i in 0..labels.len() {
        match groups.and_then(|g| g[i].as_deref()) {
            Some(name) => {
                let u = *by_group.entry(name).or_insert_with(|| {
                    units.push(Vec::new());
                    units.len() - 1
                });
                units[u].push(i);
            }
            None => units.push(vec![i]),
        }
    }
    let mut rng = SplitMix64(seed);
    for i in (1..units.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        units.swap(i, j);
    }
    units.sort_by_key(|u| std::cmp::Reverse(u.len())); // stable: the shuffle breaks ties
    Ok(units)
}

fn class_counts(labels: &[usize], classes: usize) -> Vec<usize> {
    let mut n = vec![0; classes];
    for &l in labels {
        n[l] += 1;
    }
    n
}

/// How much closer (negative) or farther (positive) adding `unit` brings `have` to `target`,
/// in total absolute count error over the classes.
fn change(labels: &[usize], unit: &[usize], have: &[f64], target: &[f64]) -> f64 {
    let mut add: HashMap<usize, f64> = HashMap::new();
    for &i in unit {
        *add.entry(labels[i]).or_default() += 1.0;
    }
    add.iter()
        .map(|(&c, &a)| (have[c] + a - target[c]).abs() - (have[c] - target[c]).abs())
        .sum()
}

/// A stratified, seeded split with `test_fraction` of every class on the test side.
/// `groups[i]` names item `i`'s group (a subject); `None` entries, or no `groups`, are items on
/// their own. Indices come back sorted.
pub fn stratified(
    labels: &[usize],
    groups: Option<&[Option<String>]>,
    test_fraction: f64,
    seed: u64,
) -> Result<Partition> {
    if !(0.0..=1.0).contains(&test_fraction) {
        return Err(invalid(format!(
            "test fraction {test_fraction} is not between 0 and 1"
        )));
    }
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    let target: Vec<f64> = class_counts(labels, classes)
        .iter()
        .map(|&n| (n as f64 * test_fraction).round())
        .collect();
    let mut have = vec![0.0; classes];
    let mut p = Partition {
        train: Vec::new(),
        test: Vec::new(),
    };
    let units = units(labels, groups, seed)?;
    let mut in_test = vec![false; units.len()];
    for (u, unit) in units.iter().enumerate() {
        if change(labels, unit, &have, &target) < 0.0 {
            for &i in unit {
                have[labels[i]] += 1.0;
            }
            in_test[u] = true;
        }
    }
    if units.iter().any(|u| u.len() > 1) {
        refine(labels, &units, &mut in_test, &mut have, &target);
    }
    for (unit, t) in units.into_iter().zip(in_test) {
        if t {
            p.test.extend(unit);
        } else {
            p.train.extend(unit);
        }
    }
    p.train.sort_unstable();
    p.test.sort_unstable();
    Ok(p)
}

/// Holds out `fraction` of `indices` for validation, stratified by `labels[i]` and, with
/// `groups`, keeping every group on one side (indices and the returned sides index the same
/// `labels` and `groups`): `test` is the validation part. Both sides are subsets of
/// `indices`, disjoint, and sorted.
pub fn hold_out(
    indices: &[usize],
    labels: &[usize],
    groups: Option<&[Option<String>]>,
    fraction: f64,
    seed: u64,
) -> Result<Partition> {
    if let Some(&i) = indices.iter().find(|&&i| i >= labels.len()) {
        return Err(invalid(format!(
            "index {i} is past the {} labels",
            labels.len()
        )));
    }
    if let Some(g) = groups.filter(|g| g.len() != labels.len()) {
        return Err(invalid(format!(
            "{} labels but {} group ids",
            labels.len(),
            g.len()
        )));
    }
    let sub_labels: Vec<usize> = indices.iter().map(|&i| labels[i]).collect();
    let sub_groups: Option<Vec<Option<String>>> =
        groups.map(|g| indices.iter().map(|&i| g[i].clone()).collect());
    let p = stratified(&sub_labels, sub_groups.as_deref(), fraction, seed)?;
    let back = |v: Vec<usize>| -> Vec<usize> {
        let mut v: Vec<usize> = v.into_iter().map(|k| indices[k]).collect();
        v.sort_unstable();
        v
    };
    Ok(Partition {
        train: back(p.train),
        test: back(p.test),
    })
}

/// Improves a grouped two-way split after the greedy pass: repeatedly applies the best single
/// move of a unit to the other side, or swap of a test unit with a train unit, that lowers the
/// total per-class distance to the targets. Each step lowers an integer distance, so it ends.
/// Swaps are O(units^2) per step, so they are tried only for up to a few thousand units.
fn refine(
    labels: &[usize],
    units: &[Vec<usize>],
    in_test: &mut [bool],
    have: &mut [f64],
    target: &[f64],
) {
    // Per-unit class histograms as (class, count) lists.
    let hist: Vec<Vec<(usize, f64)>> = units
        .iter()
        .map(|u| {
            let mut h: Vec<(usize, f64)> = Vec::new();
            for &i in u {
                match h.iter_mut().find(|(c, _)| *c == labels[i]) {
                    Some(e) => e.1 += 1.0,
                    None => h.push((labels[i], 1.0)),
                }
            }
            h
        })
        .collect();
    // Change of the distance when the test side gains `add` and loses `sub`.
    let delta = |have: &[f64], add: &[(usize, f64)], sub: &[(usize, f64)]| -> f64 {
        let mut d: Vec<(usize, f64)> = add.to_vec();
        for &(c, n) in sub {
            match d.iter_mut().find(|(k, _)| *k == c) {
                Some(e) => e.1 -= n,
                None => d.push((c, -n)),
            }
        }
        d.iter()
            .map(|&(c, n)| (have[c] + n - target[c]).abs() - (have[c] - target[c]).abs())
            .sum()
    };
    let swaps = units.len() <= 4000;
    loop {
        let mut best: (f64, Option<usize>, Option<usize>) = (-0.5, None, None);
        for u in 0..units.len() {
            let d = if in_test[u] {
                delta(have, &[], &hist[u])
            } else {
                delta(have, &hist[u], &[])
            };
            if d < best.0 {
                best = (d, Some(u), None);
            }
        }
        if swaps {
            for a in (0..units.len()).filter(|&a| in_test[a]) {
                for b in (0..units.len()).filter(|&b| !in_test[b]) {
                    let d = delta(have, &hist[b], &hist[a]);
                    if d < best.0 {
                        best = (d, Some(a), Some(b));
                    }
                }
            }
        }
        let (_, Some(a), b) = best else { break };
        for u in std::iter::once(a).chain(b) {
            let sign = if in_test[u] { -1.0 } else { 1.0 };
            for &(c, n) in &hist[u] {
                have[c] += sign * n;
            }
            in_test[u] = !in_test[u];
        }
    }
}

/// Stratified k-fold cross-validation: `k` partitions whose test sides are disjoint and cover
/// every item once, each class spread evenly over the folds; groups as in [`stratified`].
pub fn stratified_kfold(
    labels: &[usize],
    groups: Option<&[Option<String>]>,
    k: usize,
    seed: u64,
) -> Result<Vec<Partition>> {
    let units = units(labels, groups, seed)?;
    if k < 2 || k > units.len() {
        return Err(invalid(format!(
            "{k} folds of {} items ({} independent units): need 2 <= k <= units",
            labels.len(),
            units.len()
        )));
    }
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    let target: Vec<f64> = class_counts(labels, classes)
        .iter()
        .map(|&n| n as f64 / k as f64)
        .collect();
    let mut have = vec![vec![0.0; classes]; k];
    let mut size = vec![0usize; k];
    let mut fold_of = vec![0usize; labels.len()];
    for unit in &units {
        // Best improvement; ties go to the smaller fold, then the lower index.
        let f = (0..k)
            .min_by(|&a, &b| {
                let (ca, cb) = (
                    change(labels, unit, &have[a], &target),
                    change(labels, unit, &have[b], &target),
                );
                // Targets are fractional: equal improvements may differ in the last bits.
                let by_change = if (ca - cb).abs() > 1e-9 {
                    ca.total_cmp(&cb)
                } else {
                    std::cmp::Ordering::Equal
                };
                by_change.then(size[a].cmp(&size[b])).then(a.cmp(&b))
            })
            .unwrap();
        for &i in unit {
            have[f][labels[i]] += 1.0;
            fold_of[i] = f;
        }
        size[f] += unit.len();
    }
    Ok((0..k)
        .map(|f| {
            let (test, train): (Vec<usize>, Vec<usize>) =
                (0..labels.len()).partition(|&i| fold_of[i] == f);
            Partition { train, test }
        })
        .collect())
}

/// Added to a run's split seed for its validation split, so that it is not drawn with the same
/// shuffle as the 80:20 test split of the same data.
pub const VALIDATION_SEED: u64 = 0x7661_6c69_6461_7465;

/// A run's validation split of its training `indices` (of a source with `labels` and
/// `groups`): `fraction` of them held out, stratified (by subject with `groups`), seeded by
/// `seed` + [`VALIDATION_SEED`]; all of `indices` and no validation part when `fraction` is 0.
pub fn validation(
    indices: &[usize],
    labels: &[usize],
    groups: Option<&[Option<String>]>,
    fraction: f64,
    seed: u64,
) -> Result<Partition> {
    if fraction == 0.0 {
        return Ok(Partition {
            train: indices.to_vec(),
            test: Vec::new(),
        });
    }
    let p = hold_out(
        indices,
        labels,
        groups,
        fraction,
        seed.wrapping_add(VALIDATION_SEED),
    )?;
    if p.test.is_empty() {
        return Err(Error::InvalidConfig {
            op: "--val-fraction".into(),
            message: format!(
                "{fraction} of {} training images is no image: raise it",
                indices.len()
            ),
        });
    }
    Ok(p)
}

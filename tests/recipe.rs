//! The training recipe's pieces that need no device: flip and shift on tiny images, their
//! draws, the learning-rate schedules' values at known steps, and the validation split.

use fer_cbam::data::augment::{Augmentation, Transform};
use fer_cbam::data::occlusion::{self, Occlusion, Template};
use fer_cbam::data::split;
use fer_cbam::train::{Decay, LrSchedule};

/// A 2-channel 4x4 image whose pixel (c, y, x) is 100 c + 10 y + x + 1 (never 0, so a filled
/// border shows).
fn tiny() -> Vec<u8> {
    let mut v = Vec::new();
    for c in 0..2u8 {
        for y in 0..4u8 {
            for x in 0..4u8 {
                v.push(100 * c + 10 * y + x + 1);
            }
        }
    }
    v
}

fn px(img: &[u8], c: usize, y: usize, x: usize) -> u8 {
    img[c * 16 + y * 4 + x]
}

#[test]
fn flip_mirrors_every_row_of_every_channel() {
    let mut img = tiny();
    Transform {
        flip: true,
        dx: 0,
        dy: 0,
    }
    .apply(&mut img, 2, 4);
    for c in 0..2 {
        for y in 0..4 {
            for x in 0..4 {
                assert_eq!(px(&img, c, y, x), px(&tiny(), c, y, 3 - x), "({c},{y},{x})");
            }
        }
    }
}

#[test]
fn shift_moves_the_image_and_fills_the_border_with_black() {
    for (dx, dy) in [(1, 0), (-1, 0), (0, 2), (0, -1), (2, -3), (-3, 1), (4, 0)] {
        for flip in [false, true] {
            let mut img = tiny();
            Transform { flip, dx, dy }.apply(&mut img, 2, 4);
            for c in 0..2 {
                for y in 0..4i32 {
                    for x in 0..4i32 {
                        let (sx, sy) = (x - dx, y - dy);
                        let want = if (0..4).contains(&sx) && (0..4).contains(&sy) {
                            let sx = if flip { 3 - sx } else { sx };
                            px(&tiny(), c, sy as usize, sx as usize)
                        } else {
                            0
                        };
                        assert_eq!(
                            px(&img, c, y as usize, x as usize),
                            want,
                            "flip {flip} shift ({dx},{dy}) at ({c},{y},{x})"
                        );
                    }
                }
            }
        }
    }
    // The identity leaves every byte.
    let mut img = tiny();
    Transform::IDENTITY.apply(&mut img, 2, 4);
    assert_eq!(img, tiny());
}

#[test]
fn draws_are_a_function_of_seed_epoch_and_example() {
    let aug = Augmentation {
        flip: true,
        shift: 3,
    };
    let draws =
        |seed, epoch| -> Vec<Transform> { (0..2000).map(|i| aug.draw(seed, epoch, i)).collect() };
    let a = draws(7, 4);
    // Drawn again, in another order, from a fresh call: the same transforms.
    for i in (0..2000).rev().step_by(7) {
        assert_eq!(aug.draw(7, 4, i), a[i]);
    }
    assert_eq!(a, draws(7, 4));
    // Another epoch or seed draws anew: most examples change.
    for other in [draws(7, 5), draws(8, 4), draws(6, 5)] {
        let same = a.iter().zip(&other).filter(|(x, y)| x == y).count();
        assert!(same < 2000 / 10, "{same} of 2000 draws repeat");
    }
    // Half flipped, and every offset in -3..=3 drawn about equally on both axes.
    let flipped = a.iter().filter(|t| t.flip).count();
    assert!((900..1100).contains(&flipped), "{flipped} of 2000 flipped");
    for axis in [|t: &Transform| t.dx, |t: &Transform| t.dy] {
        let mut counts = [0usize; 7];
        for t in &a {
            counts[(axis(t) + 3) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&n| (200..380).contains(&n)),
            "offsets drawn {counts:?} times (2000 / 7 = 286 expected)"
        );
    }
    // Off by default, and each part alone stays alone.
    assert!(Augmentation::default().is_identity());
    assert_eq!(Augmentation::default().draw(1, 2, 3), Transform::IDENTITY);
    let flip_only = Augmentation {
        flip: true,
        shift: 0,
    };
    assert!((0..200).all(|i| {
        let t = flip_only.draw(1, 0, i);
        t.dx == 0 && t.dy == 0
    }));
    let shift_only = Augmentation {
        flip: false,
        shift: 2,
    };
    assert!((0..200).all(|i| !shift_only.draw(1, 0, i).flip));
}

#[test]
fn an_occlusion_drawn_before_the_transform_moves_with_the_face() {
    // Occlude the mouth in the untransformed image, then flip and shift: the black box ends
    // where the transformed landmarks put the mouth.
    let size = 32;
    // Off centre (6 px to the left), so that the flip moves the box to the other side.
    let lm = Template::Fer2013
        .landmarks(size)
        .map(|p| [p[0] - 6.0, p[1]]);
    let t = Transform {
        flip: true,
        dx: 3,
        dy: -2,
    };
    let mut img = vec![200u8; size * size];
    occlusion::apply(&mut img, 1, size, Occlusion::Mouth, &lm, 0);
    t.apply(&mut img, 1, size);
    let moved = lm.map(|p| t.map_point(p, size));
    let want = occlusion::region(Occlusion::Mouth, size, &moved, 0);
    let before = occlusion::region(Occlusion::Mouth, size, &lm, 0);
    assert!(
        want.x0 >= before.x0 + 12,
        "{before:?} -> {want:?}: the flip moves the box across"
    );
    for y in 0..size {
        for x in 0..size {
            let black = img[y * size + x] == 0;
            // The box's edges are whole pixels either way; inside the moved box and clear of
            // the shifted-in border, every pixel is black, and nothing outside it is.
            let inside = want.contains(x, y);
            let border = x < 3 || y >= size - 2;
            if !border {
                assert_eq!(black, inside, "pixel ({x}, {y}), box {want:?}");
            }
        }
    }
}

#[test]
fn schedules_take_their_values_at_known_steps() {
    // 10 steps per epoch.
    let spe = 10;
    let constant = LrSchedule::constant(0.001);
    assert!(constant.is_constant());
    for t in [1, 5, 1000, 1_000_000] {
        assert_eq!(constant.lr(t, spe), 0.001);
    }

    // Warm-up over 2 epochs (20 steps): t/20 of the rate, the base at step 20.
    let warm = LrSchedule {
        base: 0.002,
        decay: Decay::Constant,
        warmup_epochs: 2,
        total_epochs: 10,
    };
    assert_eq!(warm.lr(1, spe), 0.002 / 20.0);
    assert_eq!(warm.lr(10, spe), 0.001);
    assert_eq!(warm.lr(20, spe), 0.002);
    assert_eq!(warm.lr(21, spe), 0.002);

    // Cosine over 10 epochs (100 steps) after those 2: step 21 at the base, the middle of the
    // remaining 80 steps at half, the last step just above 0, a quarter at (1 + cos(pi/4)) / 2.
    let cos = LrSchedule {
        decay: Decay::Cosine,
        ..warm
    };
    assert_eq!(cos.lr(20, spe), 0.002);
    assert_eq!(cos.lr(21, spe), 0.002);
    assert!((cos.lr(61, spe) - 0.001).abs() < 1e-15);
    let quarter = 0.002 * (1.0 + std::f64::consts::FRAC_1_SQRT_2) / 2.0;
    assert!((cos.lr(41, spe) - quarter).abs() < 1e-15);
    let last = cos.lr(100, spe);
    assert!(last > 0.0 && last < 0.002 * 1e-3, "{last}");
    assert_eq!(cos.lr(101, spe), 0.0, "past the end: 0");
    // Falling all the way.
    let rates: Vec<f64> = (21..=100).map(|t| cos.lr(t, spe)).collect();
    assert!(rates.windows(2).all(|w| w[1] < w[0]));

    // Step: x0.5 every 3 epochs (30 steps), counted from the first step.
    let step = LrSchedule {
        base: 0.1,
        decay: Decay::Step {
            every_epochs: 3,
            gamma: 0.5,
        },
        warmup_epochs: 0,
        total_epochs: 10,
    };
    for (t, want) in [
        (1, 0.1),
        (30, 0.1),
        (31, 0.05),
        (60, 0.05),
        (61, 0.025),
        (91, 0.0125),
    ] {
        assert_eq!(step.lr(t, spe), want, "step {t}");
    }
    // With warm-up the drops keep their steps.
    let warm_step = LrSchedule {
        warmup_epochs: 1,
        ..step
    };
    assert_eq!(warm_step.lr(5, spe), 0.05);
    assert_eq!(warm_step.lr(11, spe), 0.1);
    assert_eq!(warm_step.lr(31, spe), 0.05);

    // Contradictions are errors, not silent rates.
    for bad in [
        LrSchedule {
            warmup_epochs: 10,
            ..cos
        },
        LrSchedule { base: -1.0, ..cos },
        LrSchedule {
            decay: Decay::Step {
                every_epochs: 0,
                gamma: 0.5,
            },
            ..step
        },
        LrSchedule {
            decay: Decay::Step {
                every_epochs: 2,
                gamma: 0.0,
            },
            ..step
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
    assert!(cos.validate().is_ok() && step.validate().is_ok());
}

#[test]
fn the_validation_split_is_disjoint_stratified_and_grouped() {
    // 300 items in 3 classes (150 / 100 / 50); the training side is every item but the first
    // 60 (as if those were the test side).
    let labels: Vec<usize> = (0..300)
        .map(|i| match i % 6 {
            0..=2 => 0,
            3 | 4 => 1,
            _ => 2,
        })
        .collect();
    let train: Vec<usize> = (60..300).collect();
    let p = split::hold_out(&train, &labels, None, 0.25, 9).unwrap();
    let mut both: Vec<usize> = p.train.iter().chain(&p.test).copied().collect();
    both.sort_unstable();
    assert_eq!(
        both, train,
        "the two parts are the training side, each item once"
    );
    assert!(
        p.test.iter().all(|&i| i >= 60),
        "nothing from the test side"
    );
    let count = |v: &[usize], c: usize| v.iter().filter(|&&i| labels[i] == c).count();
    for c in 0..3 {
        let n = count(&train, c) as f64;
        assert_eq!(count(&p.test, c), (n * 0.25).round() as usize, "class {c}");
    }
    // Seeded: the same seed, the same split; another seed, another one.
    assert_eq!(p, split::hold_out(&train, &labels, None, 0.25, 9).unwrap());
    assert_ne!(p, split::hold_out(&train, &labels, None, 0.25, 10).unwrap());

    // Grouped: 40 subjects of 6 items; no subject on both sides.
    let groups: Vec<Option<String>> = (0..300).map(|i| Some(format!("S{}", i / 6))).collect();
    let p = split::hold_out(&train, &labels, Some(&groups), 0.25, 9).unwrap();
    let subjects = |v: &[usize]| {
        v.iter()
            .map(|&i| groups[i].clone().unwrap())
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert!(subjects(&p.train).is_disjoint(&subjects(&p.test)));
    assert_eq!(p.train.len() + p.test.len(), train.len());
    // Whole subjects of 6 items (3/2/1 per class): a quarter of 40 subjects is 10.
    assert_eq!(subjects(&p.test).len(), 10);
    assert!(split::hold_out(&[400], &labels, None, 0.25, 0).is_err());
}

//! `kind = "linfa-tree"`: a classification tree grown by the linfa-trees crate (exact splits on
//! sorted values, Gini), converted into our own [`Tree`] so that it is stored, checked on load and
//! predicted like every other model.
//!
//! linfa-trees predicts `x < split` → left; our trees send `x ≤ threshold` left, so a threshold is
//! the float just below linfa's split value: the same rows go the same way. Leaves hold the class
//! frequencies of the training rows that reach them (linfa keeps only the modal class, chosen in
//! hash-map order on ties), which makes ties deterministic and gives the ensemble vote
//! probabilities. linfa-trees has no regression trees.

use linfa::traits::Fit;
use linfa::Dataset;
use linfa_trees::{DecisionTree, SplitQuality, TreeNode};
use ndarray::{Array1, ArrayView2};

use super::config::ModelConfig;
use super::error::{MlError, Result};
use super::tree::{Node, Tree};

/// The error for `kind = "linfa-tree"` on a regression task.
pub fn regression_error() -> MlError {
    MlError::Config(
        "model.kind = \"linfa-tree\" is for classification only (linfa-trees has no regression \
         trees); pick \"tree\", \"forest\", \"boosted\", \"linear\" or \"auto\""
            .into(),
    )
}

/// Fit with linfa-trees on class indices `y` in `0..k`, then convert.
pub fn fit(cfg: &ModelConfig, x: ArrayView2<f64>, y: &[usize], k: usize) -> Result<Tree> {
    let depth = cfg.depth();
    let ds = Dataset::new(x.to_owned(), Array1::from(y.to_vec()));
    let fitted: DecisionTree<f64, usize> = DecisionTree::params()
        .split_quality(SplitQuality::Gini)
        .max_depth((depth != usize::MAX).then_some(depth))
        .min_weight_leaf(cfg.min_leaf() as f32)
        .fit(&ds)?;
    let mut tree = Tree {
        n_outputs: k,
        nodes: Vec::new(),
        values: Vec::new(),
    };
    let mut fallback = Vec::new();
    convert(fitted.root_node(), &mut tree, &mut fallback)?;
    // Class frequencies of the training rows in each leaf.
    let mut counts = vec![0.0; tree.values.len()];
    for (row, &c) in x.rows().into_iter().zip(y) {
        let row = row.to_vec();
        counts[tree.leaf_offset(&row) + c] += 1.0;
    }
    for (leaf, class) in fallback {
        let v = &mut tree.values[leaf..leaf + k];
        let total: f64 = counts[leaf..leaf + k].iter().sum();
        if total > 0.0 {
            for (a, c) in v.iter_mut().zip(&counts[leaf..leaf + k]) {
                *a = c / total;
            }
        } else if class < k {
            v[class] = 1.0;
        }
    }
    Ok(tree)
}

/// Append `node` and its subtree in preorder (children after their parent, as the model check
/// requires); leaves get `k` zeroed values, listed in `leaves` with linfa's predicted class.
fn convert(
    node: &TreeNode<f64, usize>,
    tree: &mut Tree,
    leaves: &mut Vec<(usize, usize)>,
) -> Result<usize> {
    let id = tree.nodes.len();
    let k = tree.n_outputs;
    if node.is_leaf() {
        let off = tree.values.len();
        tree.values.extend(std::iter::repeat_n(0.0, k));
        leaves.push((off, node.prediction().unwrap_or(0)));
        tree.nodes.push(Node {
            feature: u32::MAX,
            threshold: 0.0,
            left: off as u32,
            right: 0,
        });
        return Ok(id);
    }
    let children = node.children();
    let (Some(left), Some(right)) = (children[0].as_deref(), children[1].as_deref()) else {
        return Err(MlError::Data(
            "linfa-trees returned a split without children".into(),
        ));
    };
    let (feature, split, _) = node.split();
    tree.nodes.push(Node {
        feature: feature as u32,
        threshold: split.next_down(),
        left: 0,
        right: 0,
    });
    let l = convert(left, tree, leaves)?;
    let r = convert(right, tree, leaves)?;
    tree.nodes[id].left = l as u32;
    tree.nodes[id].right = r as u32;
    Ok(id)
}

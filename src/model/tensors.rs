//! The field's parameters as stored: which tensors a configuration has, in file order, and
//! how long each is. Training, the encoder and the decoder all go through this one list.

use super::config::FieldConfig;
use super::ModelError;

/// What one stored tensor is; the order of `tensor_specs` is the order in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorKind {
    /// The table of grid level `l` (`entries × features`, entry-major).
    Grid(usize),
    /// Weight matrix of MLP layer `k` (`outputs × inputs`, row-major). The MLP has no biases,
    /// as in tiny-cuda-nn: the grid supplies offsets, and fewer tensors cost less to store.
    Weight(usize),
}

/// One stored tensor: what it is and how many values it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub kind: TensorKind,
    pub len: usize,
    /// For a grid level's table: how its entries lie (what its context coding reads).
    pub table: Option<TableShape>,
}

/// How a grid level's table lies: a dense grid of vertices, or a hash table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableShape {
    /// Vertices per axis (x first; axes beyond the field's dimensions 1) of a dense level;
    /// `None` for a hashed one.
    pub dense: Option<[usize; 4]>,
    /// Table entries (the dense level's vertex count, or the hash table's size).
    pub entries: usize,
    /// Features per entry.
    pub features: usize,
}

impl TableShape {
    /// The table of level `l` of `config`.
    pub fn of_level(config: &FieldConfig, l: usize) -> TableShape {
        let hashed = config.level_vertices(l) > config.table_size as u64;
        TableShape {
            dense: (!hashed).then(|| {
                let mut v = [1usize; 4];
                for (a, n) in v.iter_mut().enumerate().take(config.dims) {
                    *n = config.resolutions[l][a] as usize + 1;
                }
                v
            }),
            entries: config.level_entries(l) as usize,
            features: config.features,
        }
    }

    /// Symbols of the table.
    pub fn symbols(&self) -> usize {
        self.entries * self.features
    }
}

impl TensorSpec {
    /// The tensor's name in messages and reports (`grid.3`, `mlp.0.weight`).
    pub fn name(&self) -> String {
        match self.kind {
            TensorKind::Grid(l) => format!("grid.{l}"),
            TensorKind::Weight(k) => format!("mlp.{k}.weight"),
        }
    }
}

/// The tensors of a configuration in file order: every grid level, then each MLP layer's
/// weight matrix.
pub fn tensor_specs(config: &FieldConfig) -> Vec<TensorSpec> {
    let mut specs: Vec<TensorSpec> = (0..config.levels())
        .map(|l| {
            let table = TableShape::of_level(config, l);
            TensorSpec {
                kind: TensorKind::Grid(l),
                len: table.symbols(),
                table: Some(table),
            }
        })
        .collect();
    for (k, (outputs, inputs)) in config.mlp_layers().into_iter().enumerate() {
        specs.push(TensorSpec {
            kind: TensorKind::Weight(k),
            len: outputs * inputs,
            table: None,
        });
    }
    specs
}

/// Checks a configuration and that `tensors` (file order) have the counts and lengths it
/// needs.
pub fn check_tensors(config: &FieldConfig, tensors: &[Vec<f32>]) -> Result<(), ModelError> {
    check_lengths(config, tensors.iter().map(Vec::len), tensors.len())
}

/// `check_tensors` over lengths alone (`count` of them), for callers that hold the
/// values in another form.
pub fn check_lengths(
    config: &FieldConfig,
    lengths: impl Iterator<Item = usize>,
    count: usize,
) -> Result<(), ModelError> {
    config.validate()?;
    let specs = tensor_specs(config);
    if specs.len() != count {
        return Err(ModelError::TensorCount {
            expected: specs.len(),
            got: count,
        });
    }
    for (spec, len) in specs.iter().zip(lengths) {
        if spec.len != len {
            return Err(ModelError::TensorLength {
                name: spec.name(),
                got: len,
                expected: spec.len,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Preset;

    #[test]
    fn specs_list_levels_then_layers() {
        let config = FieldConfig::for_shape([9, 7, 5, 3], 3000, &Preset::default());
        let specs = tensor_specs(&config);
        assert_eq!(specs.len(), config.levels() + config.hidden_layers + 1);
        assert_eq!(specs[0].kind, TensorKind::Grid(0));
        assert_eq!(specs[config.levels()].kind, TensorKind::Weight(0));
        let total: usize = specs.iter().map(|s| s.len).sum();
        assert_eq!(total, config.grid_parameters() + config.mlp_parameters());
    }

    #[test]
    fn wrong_lengths_are_named() {
        let config = FieldConfig::for_shape([9, 7, 5, 1], 3000, &Preset::default());
        let mut tensors: Vec<Vec<f32>> = tensor_specs(&config)
            .iter()
            .map(|s| vec![0.0; s.len])
            .collect();
        check_tensors(&config, &tensors).unwrap();
        tensors[1].pop();
        let err = check_tensors(&config, &tensors).unwrap_err();
        assert!(err.to_string().contains("grid.1"), "{err}");
        tensors.pop();
        assert!(matches!(
            check_tensors(&config, &tensors),
            Err(ModelError::TensorCount { .. })
        ));
    }
}

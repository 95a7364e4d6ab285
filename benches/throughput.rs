//! Throughput benchmarks (`cargo bench --bench throughput`): full-volume decode, one slice
//! from an open file and from a cold open, and one training step — on a field of the size
//! `compress --bpv 0.1` builds for the Colin27 MRI (181×217×181). The weights are random:
//! the cost of evaluating a field does not depend on its values. `experiments/speed.rs`
//! prints the same figures against the project's targets.

use std::sync::OnceLock;

use candle_core::Device;
use divan::counter::ItemsCount;
use divan::Bencher;
use medinr::decoder::{Decoder, Evaluator, Region};
use medinr::encoder::Silent;
use medinr::settings::FitSettings;
use medinr::study::{Field, FieldConfig, Preset, RunPlan, Sampler, Targets, Trainer};
use medinr::volume::Voxels;

const SHAPE: [usize; 4] = [181, 217, 181, 1];

fn main() {
    divan::main();
}

/// The field for Colin27 at 0.1 bpv (about 3.5 bits per parameter planned).
fn config() -> &'static FieldConfig {
    static CONFIG: OnceLock<FieldConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let voxels: usize = SHAPE.iter().product();
        let parameters = (voxels as f64 * 0.1 / 3.5) as usize;
        let preset = Preset::default();
        let mlp = FieldConfig::for_shape(SHAPE, 1, &preset).mlp_parameters();
        FieldConfig::for_shape(SHAPE, parameters - mlp, &preset)
    })
}

fn evaluator() -> &'static Evaluator {
    static EVAL: OnceLock<Evaluator> = OnceLock::new();
    EVAL.get_or_init(|| {
        let field = Field::init(config(), 1, &Device::Cpu).expect("field");
        Evaluator::new(config(), &field.tensors().expect("tensors")).expect("evaluator")
    })
}

#[divan::bench(sample_count = 5)]
fn decode_full_volume(bencher: Bencher) {
    let eval = evaluator();
    bencher
        .counter(ItemsCount::new(SHAPE.iter().product::<usize>()))
        .bench(|| eval.grid(SHAPE, Region::Full).expect("decode"));
}

#[divan::bench(args = [0, 1, 2], sample_count = 20)]
fn decode_middle_slice(bencher: Bencher, axis: usize) {
    let eval = evaluator();
    let region = Region::Slice {
        axis,
        index: SHAPE[axis] / 2,
        frame: 0,
    };
    bencher.bench(|| eval.grid(SHAPE, region).expect("slice"));
}

/// Opening a committed `.minr` file (parse, checksums, dequantization) and decoding its middle
/// axial slice, as `medinr slice` does from a cold start (less the process start).
#[divan::bench(sample_count = 20)]
fn open_file_and_slice(bencher: Bencher) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/mri_small_bigendian_i16.minr"
    );
    let bytes = std::fs::read(path).expect("fixture");
    bencher.bench(|| {
        let decoder = Decoder::from_bytes(&bytes).expect("open");
        let shape = decoder.shape();
        let region = Region::Slice {
            axis: 2,
            index: shape[2] / 2,
            frame: 0,
        };
        decoder.region(shape, region).expect("slice")
    });
}

#[divan::bench(sample_count = 5)]
fn fit_step(bencher: Bencher) {
    let fit = FitSettings::default();
    let plan = RunPlan::main_fit(&fit, 1, fit.max_batch);
    let field = Field::init(config(), 2, &Device::Cpu).expect("field");
    let mut trainer = Trainer::new(&field, &fit, &plan).expect("trainer");
    let voxels: usize = SHAPE.iter().product();
    let stored = Voxels::U8((0..voxels).map(|i| (i % 251) as u8).collect());
    let mut sampler = Sampler::new(Targets::new(&stored, 0.0, 250.0), SHAPE, 3, 0);
    bencher
        .counter(ItemsCount::new(plan.batch))
        .bench_local(|| {
            trainer
                .run(&field, &mut sampler, &plan, None, None, &mut Silent)
                .expect("step")
        });
}

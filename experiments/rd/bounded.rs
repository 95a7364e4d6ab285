//! The error-bounded rows of the study: medinr with `--max-error D` (D = 0: lossless) and
//! SZ3 at the same absolute bound, plus the time-series figures every 4D row carries.

use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use medinr::decoder::Decoder;
use medinr::encoder::{encode, Bound, EncodeOptions, RateTarget, Silent};
use medinr::metrics::{self, timeseries::compare_timeseries};
use medinr::volume::Volume;

use super::{check_decoded, field_summary, row_from, Row, RunContext, SliceAt, TsFigures};

/// Codec name of medinr's bounded and lossless rows.
pub(super) const MEDINR_BOUNDED: &str = "medinr-bounded";
/// Codec name of the SZ3 rows.
pub(super) const SZ3: &str = "sz3";

/// The time-series figures of a decoded 4D scan (automatic foreground mask), or `None` for
/// scans of fewer than three frames, where a time course is not defined.
pub(super) fn timeseries_of(volume: &Volume, decoded: &[f32]) -> Result<Option<TsFigures>> {
    let shape = volume.shape();
    if shape[3] < 3 {
        return Ok(None);
    }
    let t = compare_timeseries(&volume.data.to_f32(), decoded, shape, None)?;
    Ok(Some(TsFigures {
        mask_voxels: t.mask_voxels,
        mask_psnr_db: metrics_finite(t.mask_psnr_db),
        temporal_mean_psnr_db: t.temporal_mean_psnr_db,
        mask_temporal_mean_psnr_db: t.mask_temporal_mean_psnr_db,
        median_ts_correlation: t.median_ts_correlation,
        median_tsnr_ratio: t.median_tsnr_ratio,
        fc_correlation: t.fc_correlation,
    }))
}

fn metrics_finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// medinr with a worst-case bound `d` (0: lossless): encode with the default field share,
/// decode the written bytes, compare, and check the bound actually holds.
pub(super) fn run_medinr_bounded(
    volume: &Volume,
    scan: &str,
    d: f64,
    ctx: &RunContext,
    at: SliceAt,
) -> Result<Row> {
    let settings = medinr::settings::EncoderSettings::default();
    let options = EncodeOptions {
        target: RateTarget::BitsPerVoxel(settings.rate.bounded_field_bpv),
        effort: ctx.effort,
        seed: ctx.seed,
        bound: Some(if d == 0.0 {
            Bound::Lossless
        } else {
            Bound::MaxError(d)
        }),
        settings,
        ..EncodeOptions::default()
    };
    let t = Instant::now();
    let (file, report) = encode(volume, &options, &mut Silent)
        .map_err(|e| anyhow!(e).context(format!("medinr --max-error {d}")))?;
    let bytes = file.to_bytes().context("medinr: serialising the file")?;
    let encode_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let decoded = Decoder::from_bytes(&bytes)
        .and_then(|dec| dec.decode(None))
        .with_context(|| format!("medinr --max-error {d}: decoding the written bytes"))?;
    let decode_s = t.elapsed().as_secs_f64();
    check_decoded(
        MEDINR_BOUNDED,
        volume,
        &decoded.data.to_f32(),
        decoded.shape(),
    )?;
    let c = metrics::compare(
        &volume.data.to_f32(),
        &decoded.data.to_f32(),
        volume.shape(),
    )?;
    let limit = if volume.header.datatype().is_integer() {
        d.floor()
    } else {
        d
    };
    if c.max_abs_error > limit {
        anyhow::bail!(
            "medinr --max-error {d} decoded with max error {} (bound broken)",
            c.max_abs_error
        );
    }
    let mut params = field_summary(&report.config, report.parameters);
    if let Some(r) = report.residual_bytes {
        params = format!(
            "{params}; residual {r} B{}",
            if report.residual_uses_field == Some(false) {
                " (neighbours only, field unused)"
            } else {
                ""
            }
        );
    }
    let mut row = row_from(
        scan,
        MEDINR_BOUNDED,
        None,
        params,
        bytes.len() as u64,
        volume,
        &c,
    );
    row.mode = if d == 0.0 { "lossless" } else { "bounded" }.into();
    row.max_error_bound = Some(d);
    (row.encode_s, row.decode_s) = (encode_s, decode_s);
    row.timeseries = timeseries_of(volume, &decoded.data.to_f32())?;
    row.slice = at.take(&decoded.data.to_f32());
    Ok(row)
}

/// SZ3 on the whole array at absolute bound `d`.
#[cfg(feature = "sz3")]
pub(super) fn run_sz3(volume: &Volume, scan: &str, d: f64, at: SliceAt) -> Result<Row> {
    let integer = volume.header.datatype().is_integer();
    let r = medinr::study::sz3::code_volume(&volume.data.to_f32(), volume.shape(), d, integer)
        .map_err(|e| anyhow!(e).context(format!("SZ3 at bound {d}")))?;
    check_decoded(SZ3, volume, &r.decoded, volume.shape())?;
    let c = metrics::compare(&volume.data.to_f32(), &r.decoded, volume.shape())?;
    if c.max_abs_error > d {
        anyhow::bail!(
            "SZ3 at bound {d} decoded with max error {}",
            c.max_abs_error
        );
    }
    let params = "SZ3 3.3.2 whole array, interpolation+Lorenzo, absolute bound".to_string();
    let mut row = row_from(scan, SZ3, None, params, r.bytes, volume, &c);
    row.mode = "bounded".into();
    row.max_error_bound = Some(d);
    (row.encode_s, row.decode_s) = (r.encode_seconds, r.decode_seconds);
    row.timeseries = timeseries_of(volume, &r.decoded)?;
    row.slice = at.take(&r.decoded);
    Ok(row)
}

/// Without the `sz3` feature the study says how to get the baseline.
#[cfg(not(feature = "sz3"))]
pub(super) fn run_sz3(_: &Volume, _: &str, _: f64, _: SliceAt) -> Result<Row> {
    anyhow::bail!(
        "this rd was built without SZ3: run scripts/sz3-setup.sh, then build with --features sz3"
    )
}

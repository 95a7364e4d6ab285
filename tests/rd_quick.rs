//! The rate–distortion study binary (`experiments/rd.rs`) in quick mode: the small big-endian
//! MRI at 0.5, 1 and 2 bpv, written into a temp dir, then every output checked — files exist
//! and parse, the numbers are sane, and the summary merges results already in the folder.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

const SCAN: &str = "mri_small_bigendian_i16";
const RATES: [f64; 3] = [0.5, 1.0, 2.0];

fn rd(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rd"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cannot run rd");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "rd {args:?} failed ({:?})\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Decodes a PNG; returns width, height and whether it has more than two colours (text,
/// lines and pictures, not a blank page).
fn check_png(path: &Path) -> (u32, u32) {
    let decoder = png::Decoder::new(fs::File::open(path).expect("PNG missing"));
    let mut reader = decoder.read_info().expect("not a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("PNG does not decode");
    let pixels = &buf[..info.buffer_size()];
    let step = info.color_type.samples();
    let mut colours: Vec<&[u8]> = pixels.chunks(step).collect();
    colours.sort();
    colours.dedup();
    assert!(
        colours.len() > 2,
        "{} is (nearly) blank: {} colours",
        path.display(),
        colours.len()
    );
    // Black text is drawn on the white plot background.
    assert!(
        pixels.chunks(step).any(|p| p.iter().all(|&c| c == 0)),
        "{} has no black (text) pixels",
        path.display()
    );
    (info.width, info.height)
}

fn rows_of<'a>(json: &'a Value, codec: &str, lossy: bool) -> Vec<&'a Value> {
    let mut rows: Vec<&Value> = json["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| r["codec"] == codec && r["target_bpv"].is_number() == lossy)
        .collect();
    rows.sort_by(|a, b| {
        a["target_bpv"]
            .as_f64()
            .partial_cmp(&b["target_bpv"].as_f64())
            .unwrap()
    });
    rows
}

#[test]
fn quick_study_writes_sane_tables_plots_and_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    let out_s = out.to_str().unwrap();
    let stdout = rd(&["--quick", "--out", out_s]);
    assert!(stdout.contains("BD-rate"), "{stdout}");

    let dir = out.join(SCAN);
    for f in ["rd.csv", "rd.json", "rd.png", "rd.svg", "slice.png"] {
        assert!(dir.join(f).is_file(), "{f} missing in {}", dir.display());
    }

    // JSON: rows, rates, self-checks.
    let json: Value = serde_json::from_str(&fs::read_to_string(dir.join("rd.json")).unwrap())
        .expect("rd.json does not parse");
    assert_eq!(json["scan"], SCAN);
    assert_eq!(json["shape"], serde_json::json!([33, 41, 25, 1]));
    assert!(json["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(json["command"].as_str().unwrap().contains("--quick"));
    let medinr = rows_of(&json, "medinr", true);
    let j2k = rows_of(&json, "jpeg2000", true);
    let lossless = rows_of(&json, "jpeg2000", false);
    assert_eq!(medinr.len(), RATES.len(), "{json}");
    assert_eq!(j2k.len(), RATES.len(), "{json}");
    assert_eq!(lossless.len(), 1, "{json}");
    for (row, target) in medinr.iter().zip(RATES) {
        let bpv = row["bpv"].as_f64().unwrap();
        assert_eq!(row["target_bpv"].as_f64(), Some(target));
        assert!(
            (bpv - target).abs() <= 0.03 * target,
            "medinr at {target} bpv wrote {bpv} bpv"
        );
        let decoded = row["medinr"]["encoder_psnr_db"].as_f64().unwrap();
        assert!((decoded - row["psnr_db"].as_f64().unwrap()).abs() < 1e-6);
    }
    for rows in [&medinr, &j2k] {
        let psnr: Vec<f64> = rows
            .iter()
            .map(|r| r["psnr_db"].as_f64().unwrap())
            .collect();
        assert!(psnr.iter().all(|p| p.is_finite() && *p > 10.0), "{psnr:?}");
        assert!(
            psnr.windows(2).all(|w| w[1] > w[0]),
            "PSNR does not increase with rate: {psnr:?}"
        );
        for r in rows.iter() {
            let ssim = r["ssim"].as_f64().unwrap();
            assert!(ssim > 0.0 && ssim <= 1.0, "{r}");
            assert!(r["bytes"].as_u64().unwrap() > 0);
            assert!(r["ratio"].as_f64().unwrap() > 1.0);
        }
    }
    let l = lossless[0];
    assert_eq!(l["max_abs_error"].as_f64(), Some(0.0), "{l}");
    assert!(l["psnr_db"].is_null(), "identical scans have infinite PSNR");
    assert!(l["bpv"].as_f64().unwrap() > j2k[2]["bpv"].as_f64().unwrap());
    let bd = &json["bd"];
    assert!(bd["bd_rate_percent"].as_f64().unwrap().is_finite(), "{bd}");
    assert!(bd["bd_psnr_db"].as_f64().unwrap().is_finite(), "{bd}");

    // CSV: same rows as the JSON.
    let csv = fs::read_to_string(dir.join("rd.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    for col in [
        "scan",
        "codec",
        "target_bpv",
        "bytes",
        "bpv",
        "ratio",
        "psnr_db",
        "ssim",
    ] {
        assert!(header.contains(&col), "CSV lacks {col}: {header:?}");
    }
    let psnr_col = header.iter().position(|c| *c == "psnr_db").unwrap();
    let data: Vec<&str> = lines.collect();
    assert_eq!(data.len(), 2 * RATES.len() + 1);
    let lossless_line = data
        .iter()
        .find(|l| l.contains(",lossless,lossless,"))
        .expect("no lossless CSV row");
    // params are quoted (they contain commas); psnr_db counts from the end.
    let from_end = header.len() - psnr_col;
    let fields: Vec<&str> = lossless_line.rsplit(',').collect();
    assert_eq!(fields[from_end - 1], "inf", "{lossless_line}");

    // Pictures.
    let (w, h) = check_png(&dir.join("rd.png"));
    assert!(w >= 640 && h >= 480);
    let (w, _) = check_png(&dir.join("slice.png"));
    assert!(w >= 5 * 33, "slice picture too narrow: {w}");
    let svg = fs::read_to_string(dir.join("rd.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for text in [
        "medinr",
        "JPEG 2000",
        "PSNR (dB)",
        "rate (bits per voxel",
        SCAN,
    ] {
        assert!(svg.contains(text), "SVG lacks {text:?}");
    }

    // Summary, then merging: a second scan's results appear beside the first.
    let readme = fs::read_to_string(out.join("README.md")).unwrap();
    for text in [
        SCAN,
        "BD-rate",
        "BD-PSNR",
        "PCHIP",
        &format!("{SCAN}/rd.png"),
        &format!("{SCAN}/slice.png"),
        "--quick",
    ] {
        assert!(readme.contains(text), "README lacks {text:?}:\n{readme}");
    }
    let other = out.join("other_scan");
    fs::create_dir(&other).unwrap();
    let mut copy = json.clone();
    copy["scan"] = Value::from("other_scan");
    fs::write(other.join("rd.json"), copy.to_string()).unwrap();
    rd(&["--summary-only", "--out", out_s]);
    let merged = fs::read_to_string(out.join("README.md")).unwrap();
    assert!(merged.contains("## other_scan") && merged.contains(&format!("## {SCAN}")));
    assert!(dir.join("rd.json").is_file(), "earlier results must stay");
}

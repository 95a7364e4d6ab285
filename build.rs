//! Builds the kernels in `kernels/`.
//!
//! Always: the host build — the same `.cu` sources compiled as C++ by the system compiler into
//! a static library, so `cargo test` checks every kernel's per-thread body against the Rust
//! reference on a machine without a GPU (or nvcc). `-ffp-contract=off` keeps the compiler from
//! fusing a multiply and an add: docs/FORMAT.md prescribes each rounding, and the only fused
//! multiply-adds are the explicit `fmaf` calls.
//!
//! With the `cuda` feature: PTX for each kernel file and each architecture in `ARCHS`, written
//! to `OUT_DIR` and embedded by `src/gpu/cuda/ptx.rs`. nvcc is `$NVCC`, else
//! `$CUDA_ROOT/bin/nvcc`, else `nvcc` on the PATH; `-fmad=false` keeps it from contracting too.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Kernel files (`kernels/<name>.cu`), one PTX module each.
const KERNELS: [&str; 3] = ["grid", "mlp", "decode"];
/// Headers every kernel file may include.
const HEADERS: [&str; 4] = ["common.cuh", "grid.cuh", "mlp.cuh", "decode.cuh"];
/// PTX targets: Hopper (H100/H200) and Ampere (A100), the oldest we load on.
const ARCHS: [&str; 2] = ["sm_90", "sm_80"];

fn main() {
    let dir = Path::new("kernels");
    for f in KERNELS
        .iter()
        .map(|k| format!("{k}.cu"))
        .chain(HEADERS.iter().map(|h| h.to_string()))
    {
        println!("cargo:rerun-if-changed=kernels/{f}");
    }
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=CUDA_ROOT");
    record_commit();

    let mut host = cc::Build::new();
    host.cpp(true)
        .std("c++14")
        .flag("-x")
        .flag("c++")
        .flag("-ffp-contract=off")
        .flag("-fno-fast-math")
        .warnings(true);
    for k in KERNELS {
        host.file(dir.join(format!("{k}.cu")));
    }
    host.compile("medinr_kernels_host");

    if env::var_os("CARGO_FEATURE_CUDA").is_some() {
        build_ptx(dir);
    }
}

/// Sources whose state the recorded commit vouches for: what goes into the binaries.
const CODE: [&str; 5] = ["src", "experiments", "kernels", "Cargo.toml", "Cargo.lock"];

/// Sets `MEDINR_BUILD_COMMIT` to the commit the binaries are built from (`git rev-parse
/// --short HEAD`, with `+dirty` when a tracked file under `CODE` differs from it), so a study
/// records the code that produced its figures, not whatever the tree holds when it runs.
/// `unknown` outside a git checkout.
fn record_commit() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head) => {
            let mut status = vec!["status", "--porcelain", "--untracked-files=no", "--"];
            status.extend(CODE);
            let dirty = git(&status).is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{head}+dirty")
            } else {
                head
            }
        }
        None => "unknown".to_string(),
    };
    if let Some(git_dir) = git(&["rev-parse", "--git-dir"]) {
        // HEAD moves on checkout, its branch ref on commit (a directory is watched whole).
        println!("cargo:rerun-if-changed={git_dir}/HEAD");
        println!("cargo:rerun-if-changed={git_dir}/refs/heads");
        println!("cargo:rerun-if-changed={git_dir}/packed-refs");
    }
    for path in CODE {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rustc-env=MEDINR_BUILD_COMMIT={commit}");
}

/// Compiles every kernel file to PTX for every architecture in `ARCHS`.
fn build_ptx(dir: &Path) {
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let nvcc = env::var_os("NVCC")
        .map(PathBuf::from)
        .or_else(|| env::var_os("CUDA_ROOT").map(|r| PathBuf::from(r).join("bin/nvcc")))
        .unwrap_or_else(|| PathBuf::from("nvcc"));
    for k in KERNELS {
        for arch in ARCHS {
            let ptx = out.join(format!("{k}_{arch}.ptx"));
            let status = Command::new(&nvcc)
                .args(["-ptx", "-O3", "-std=c++14", "-fmad=false"])
                .arg(format!("-arch={arch}"))
                .arg("-o")
                .arg(&ptx)
                .arg(dir.join(format!("{k}.cu")))
                .status();
            match status {
                Ok(s) if s.success() => {}
                Ok(s) => panic!("nvcc failed on kernels/{k}.cu for {arch}: {s}"),
                Err(e) => panic!(
                    "feature `cuda` needs nvcc ({}): {e}; see scripts/cuda-build.sh",
                    nvcc.display()
                ),
            }
        }
    }
}

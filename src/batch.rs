//! Compressing a folder or a manifest of scans unattended: the job list (deterministic, and
//! split into shards for a cluster's job array), and a journal that makes a killed batch
//! resumable with nothing lost and nothing compressed twice.
//!
//! Each finished scan is one JSON line appended to `<out>/medinr-batch.jsonl` and flushed to
//! disk *after* its output was renamed into place (outputs are written atomically). On a
//! restart a scan counts as done when the journal says so and its output is there with the
//! recorded size; an output that is there without a journal line (a kill between the rename
//! and the append) is checked by parsing it and then recorded, not compressed again. A torn
//! last journal line (a kill during the append) is ignored.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The journal's file name inside the output folder.
pub const JOURNAL: &str = "medinr-batch.jsonl";
/// The per-scan table written at the end of a run.
pub const SUMMARY: &str = "medinr-batch.csv";

/// Why a batch could not be planned or recorded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path concerned.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The list of scans is unusable.
    #[error("{0}")]
    Plan(String),
    /// The shard is not `i/n` with `0 ≤ i < n`.
    #[error("shard {0} is not I/N with 0 ≤ I < N")]
    Shard(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BatchError + '_ {
    move |source| BatchError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// This process's part of the job list: item `k` (in sorted order) belongs to shard
/// `k mod count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based index of this shard.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// The whole list.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// `"I/N"`.
    pub fn parse(s: &str) -> Result<Shard, BatchError> {
        let bad = || BatchError::Shard(s.to_string());
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse::<usize>().map_err(|_| bad())?,
            n.trim().parse::<usize>().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// From a Slurm job array: `SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN` of
    /// `SLURM_ARRAY_TASK_COUNT`; `None` outside a job array.
    pub fn from_slurm(env: impl Fn(&str) -> Option<String>) -> Result<Option<Shard>, BatchError> {
        let (Some(id), Some(count)) = (env("SLURM_ARRAY_TASK_ID"), env("SLURM_ARRAY_TASK_COUNT"))
        else {
            return Ok(None);
        };
        let min = env("SLURM_ARRAY_TASK_MIN").unwrap_or_else(|| "0".into());
        let num = |v: &str| v.trim().parse::<usize>().ok();
        match (num(&id), num(&min), num(&count)) {
            (Some(id), Some(min), Some(count)) if id >= min => {
                Shard::parse(&format!("{}/{count}", id - min)).map(Some)
            }
            _ => Err(BatchError::Shard(format!(
                "{id}/{count} (from SLURM_ARRAY_TASK_ID/COUNT)"
            ))),
        }
    }
}

/// One scan to compress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The scan.
    pub input: PathBuf,
    /// Its `.minr` in the output folder.
    pub output: PathBuf,
}

fn is_nifti(p: &Path) -> bool {
    let n = p.to_string_lossy().to_lowercase();
    n.ends_with(".nii") || n.ends_with(".nii.gz")
}

/// A scan medinr can read: a NIfTI file, or DICOM input (a series folder, a `.dcm` file or
/// a file with the DICM marker).
fn is_scan(p: &Path) -> bool {
    is_nifti(p) || crate::volume::is_dicom_input(p)
}

/// A sub-folder of a batch folder that holds at least one DICOM file (a series).
fn is_series_folder(p: &Path) -> bool {
    p.is_dir()
        && fs::read_dir(p).is_ok_and(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .any(|f| f.is_file() && crate::volume::dicom::has_dicm_preamble(&f))
        })
}

/// The file name without `.nii` / `.nii.gz` / `.dcm` (a folder's name as it is).
fn stem(p: &Path) -> String {
    let n = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lower = n.to_lowercase();
    let cut = if p.is_dir() {
        0
    } else if lower.ends_with(".nii.gz") {
        7
    } else if lower.ends_with(".nii") || lower.ends_with(".dcm") {
        4
    } else {
        0
    };
    n[..n.len() - cut].to_string()
}

/// The jobs of `source` for `shard`, outputs in `out`. `source` is a folder — its
/// `.nii`/`.nii.gz` files, and each sub-folder holding DICOM files as one series (DICOM
/// files directly in `source` are not jobs: a series is a folder) — or a manifest: one path
/// per line (a NIfTI file, a DICOM series folder or a DICOM file), relative to the
/// manifest's folder, `#` comments. Sorted by input path, so every shard of every run sees
/// the same list.
pub fn plan(source: &Path, out: &Path, shard: Shard) -> Result<Vec<Job>, BatchError> {
    let mut inputs: Vec<PathBuf> = if source.is_dir() {
        let found: Vec<PathBuf> = fs::read_dir(source)
            .map_err(io(source))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| (p.is_file() && is_nifti(p)) || is_series_folder(p))
            .collect();
        if found.is_empty() && is_series_folder(source) {
            return Err(BatchError::Plan(format!(
                "{} holds DICOM files but no scans to batch: it looks like one series \
                 (compress it with `medinr compress {}`); batch takes a folder of series folders",
                source.display(),
                source.display()
            )));
        }
        found
    } else {
        let text = fs::read_to_string(source).map_err(io(source))?;
        let base = source.parent().unwrap_or(Path::new("."));
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| base.join(l))
            .collect()
    };
    inputs.sort();
    inputs.dedup();
    if inputs.is_empty() {
        return Err(BatchError::Plan(format!(
            "{} lists no .nii or .nii.gz scans or DICOM series folders",
            source.display()
        )));
    }
    let mut seen: HashMap<String, &Path> = HashMap::new();
    for p in &inputs {
        if !is_scan(p) {
            return Err(BatchError::Plan(format!(
                "{} is not a .nii or .nii.gz file or DICOM input",
                p.display()
            )));
        }
        if let Some(other) = seen.insert(stem(p), p) {
            return Err(BatchError::Plan(format!(
                "{} and {} would both be written as {}.minr",
                other.display(),
                p.display(),
                stem(p)
            )));
        }
    }
    Ok(inputs
        .iter()
        .enumerate()
        .filter(|(k, _)| k % shard.count == shard.index)
        .map(|(_, p)| Job {
            input: p.clone(),
            output: out.join(format!("{}.minr", stem(p))),
        })
        .collect())
}

/// One finished scan, as the journal records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The scan.
    pub input: String,
    /// Its `.minr`.
    pub output: String,
    /// Size of the `.minr`.
    pub bytes: u64,
    /// Compressed bits per voxel.
    pub bits_per_voxel: f64,
    /// PSNR of the decoded file (dB); `None` when the entry was recovered from the file alone.
    pub psnr_db: Option<f64>,
    /// Max abs error of the decoded file (physical units); `None` when recovered.
    pub max_abs_error: Option<f64>,
    /// Seconds the scan took; 0 when recovered.
    pub seconds: f64,
}

/// The journal of an output folder.
pub struct Journal {
    path: PathBuf,
    entries: HashMap<String, Entry>,
}

impl Journal {
    /// Opens (or starts) the journal in `out`; a torn last line is ignored.
    pub fn open(out: &Path) -> Result<Journal, BatchError> {
        let path = out.join(JOURNAL);
        let mut entries = HashMap::new();
        match fs::read_to_string(&path) {
            Ok(text) => {
                for line in text.lines() {
                    if let Ok(e) = serde_json::from_str::<Entry>(line) {
                        entries.insert(e.input.clone(), e);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
        Ok(Journal { path, entries })
    }

    /// The entry of a finished job whose output is still there with the recorded size.
    pub fn done(&self, job: &Job) -> Option<&Entry> {
        let e = self.entries.get(&job.input.display().to_string())?;
        let len = fs::metadata(&job.output).ok()?.len();
        (len == e.bytes).then_some(e)
    }

    /// Appends an entry and flushes it to disk.
    pub fn record(&mut self, entry: Entry) -> Result<(), BatchError> {
        let mut line =
            serde_json::to_string(&entry).map_err(|e| BatchError::Plan(e.to_string()))?;
        line.push('\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io(&self.path))?;
        f.write_all(line.as_bytes()).map_err(io(&self.path))?;
        f.sync_all().map_err(io(&self.path))?;
        self.entries.insert(entry.input.clone(), entry);
        Ok(())
    }

    /// Every entry, in input order.
    pub fn entries(&self) -> Vec<&Entry> {
        let mut v: Vec<&Entry> = self.entries.values().collect();
        v.sort_by(|a, b| a.input.cmp(&b.input));
        v
    }

    /// The entries as CSV (one row per scan).
    pub fn csv(&self) -> String {
        let mut out =
            String::from("input,output,bytes,bits_per_voxel,psnr_db,max_abs_error,seconds\n");
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        for e in self.entries() {
            let opt = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_default();
            out += &format!(
                "{},{},{},{:.6},{},{},{:.2}\n",
                quote(&e.input),
                quote(&e.output),
                e.bytes,
                e.bits_per_voxel,
                opt(e.psnr_db),
                opt(e.max_abs_error),
                e.seconds
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_sorted_list_without_overlap() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["c.nii", "a.nii.gz", "b.nii", "notes.txt"] {
            fs::write(dir.path().join(n), b"x").unwrap();
        }
        let out = dir.path().join("out");
        let all = plan(dir.path(), &out, Shard::ALL).unwrap();
        let names: Vec<String> = all.iter().map(|j| stem(&j.input)).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(all[0].output, out.join("a.minr"));
        let s0 = plan(dir.path(), &out, Shard::parse("0/2").unwrap()).unwrap();
        let s1 = plan(dir.path(), &out, Shard::parse("1/2").unwrap()).unwrap();
        assert_eq!(s0.len() + s1.len(), 3);
        assert!(s0.iter().all(|j| !s1.contains(j)));
        assert!(Shard::parse("2/2").is_err() && Shard::parse("x").is_err());
    }

    #[test]
    fn slurm_array_variables_give_the_shard() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(Shard::from_slurm(env(&[])).unwrap(), None);
        let s = Shard::from_slurm(env(&[
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_MIN", "5"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]))
        .unwrap();
        assert_eq!(s, Some(Shard { index: 2, count: 4 }));
    }

    #[test]
    fn manifests_refuse_clashing_names_and_torn_journal_lines_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("list.txt");
        fs::write(&m, "# scans\na/x.nii\nb/x.nii.gz\n").unwrap();
        assert!(plan(&m, dir.path(), Shard::ALL).is_err());
        fs::write(
            dir.path().join(JOURNAL),
            "{\"input\":\"s.nii\",\"output\":\"o\",\"bytes\":3,\"bits_per_voxel\":1.0,\"psnr_db\":1.0,\"max_abs_error\":1.0,\"seconds\":1.0}\n{\"input\":\"t.n",
        )
        .unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.entries().len(), 1);
    }
}

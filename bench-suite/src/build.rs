//! Building the suite's binaries once per global allocator.

use std::fs;
use std::path::Path;
use std::process::Command;

/// Builds `bins` of `memcg-bench` with the global allocator `alloc-{alloc}`
/// (into `target`, from the workspace at `root`) and copies each to
/// `out/{bin}-{alloc}`.
pub fn build_for(
    root: &Path,
    target: &Path,
    out: &Path,
    alloc: &str,
    bins: &[&str],
) -> Result<(), String> {
    fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let feature = format!("alloc-{alloc}");
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(root)
        .env("CARGO_TARGET_DIR", target)
        .args(["build", "--release", "--quiet", "-p", "memcg-bench"])
        .args(["--no-default-features", "--features", &feature]);
    for b in bins {
        cmd.args(["--bin", b]);
    }
    let st = cmd.status().map_err(|e| format!("cargo: {e}"))?;
    if !st.success() {
        return Err(format!(
            "building {} with {feature} failed ({st})",
            bins.join(", ")
        ));
    }
    for b in bins {
        fs::copy(
            target.join("release").join(b),
            out.join(format!("{b}-{alloc}")),
        )
        .map_err(|e| format!("copy {b}-{alloc}: {e}"))?;
    }
    Ok(())
}

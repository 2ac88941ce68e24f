//! Builds the web console (TypeScript → one ES module) into OUT_DIR, so the binary embeds it.
//! Without Node.js the binary still builds, with a console page that says what is missing.

use std::path::Path;
use std::process::Command;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let console = Path::new(&manifest).join("../../console");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for watched in ["src", "tsconfig.json", "package.json", "package-lock.json"] {
        println!("cargo:rerun-if-changed={}", console.join(watched).display());
    }
    let target = out.join("console");
    match build(&console, &target) {
        Ok(()) => {}
        Err(why) => {
            println!("cargo:warning=the web console was not built ({why}); /console will say so");
            std::fs::create_dir_all(&target).expect("OUT_DIR is writable");
            let stub = format!(
                "document.body.textContent = {:?};",
                format!(
                    "The web console was not built into this binary: {why}. Install Node.js and npm, then rebuild."
                )
            );
            std::fs::write(target.join("console.js"), stub).expect("OUT_DIR is writable");
            for module in ["api.js", "ansi.js", "approvals.js", "zip.js"] {
                std::fs::write(target.join(module), "").expect("OUT_DIR is writable");
            }
        }
    }
}

fn build(console: &Path, target: &Path) -> Result<(), String> {
    let tsc = console.join("node_modules/.bin/tsc");
    if !tsc.exists() {
        run(Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]).current_dir(console))?;
    }
    run(Command::new(&tsc).arg("-p").arg(console.join("tsconfig.json")).arg("--outDir").arg(target))
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

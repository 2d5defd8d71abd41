//! The console's xterm.js files come from `npm ci` in `console/` (scripts/setup runs it): say so
//! plainly when they are missing, rather than as rust-embed's missing-folder error.

fn main() {
    let xterm = std::path::Path::new("../console/node_modules/@xterm/xterm/lib/xterm.js");
    if !xterm.exists() {
        println!(
            "cargo::error=console/node_modules is missing (xterm.js for the web console): run scripts/setup, or `npm ci` in console/"
        );
    }
    println!("cargo::rerun-if-changed=../console/src");
    println!("cargo::rerun-if-changed=../console/package-lock.json");
}

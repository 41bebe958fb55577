// sqlx::migrate! embeds migrations/ at compile time; a new or edited migration
// must rebuild this crate (the build script sqlx's docs give for this). db/'s
// files are embedded the same way: their list, in name order, is generated
// here, so that a new file needs no edit elsewhere.
use std::fmt::Write as _;

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
    println!("cargo:rerun-if-changed=../db");
    let dir = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../db");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("db/ next to shared/")
        .map(|e| {
            e.unwrap()
                .file_name()
                .into_string()
                .expect("UTF-8 file names in db/")
        })
        .filter(|n| n.ends_with(".sql"))
        .collect();
    names.sort();
    let mut out = String::from("&[\n");
    for name in names {
        let path = dir.join(&name).canonicalize().unwrap();
        writeln!(out, "    ({name:?}, include_str!({:?})),", path.display()).unwrap();
    }
    out.push_str("]\n");
    let dest = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("db_files.rs");
    std::fs::write(dest, out).unwrap();
}

// sqlx::migrate! embeds migrations/ at compile time; a new or edited migration
// must rebuild this crate (the build script sqlx's docs give for this).
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}

//! `sqlx::migrate!` embeds `../migrations/postgres` and `../migrations/sqlite` at compile time; rebuild when it changes so that a
//! binary never carries a stale migration set.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}

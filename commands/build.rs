//! `sqlx::migrate!` embeds schemas/sql at compile time; rebuild when it changes.

fn main() {
    println!("cargo:rerun-if-changed=../schemas/sql");
}

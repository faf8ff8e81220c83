//! The `karmem-bridge` command line tool.

fn main() {
    println!("karmem-bridge: no subcommands yet");
}

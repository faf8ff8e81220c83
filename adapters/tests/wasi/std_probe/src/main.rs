//! Exercises WASI through Rust std (wasi-libc underneath) the way ordinary
//! programs do: args, sorted env, stderr, sleep, clocks, files and
//! directories in `/sandbox`, rename, errors, stdin, `HashMap` seeding,
//! `process::exit`. Everything printed is deterministic.

use std::io::{Read, Write};
fn main() {
    let args: Vec<String> = std::env::args().collect();
    println!("args {:?}", args);
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    vars.sort();
    for (k, v) in vars { println!("env {k}={v}"); }
    eprintln!("to stderr");
    let t = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_millis(5));
    println!("slept enough: {}", t.elapsed() >= std::time::Duration::from_millis(5));
    let w = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    println!("wall plausible: {}", w.as_secs() > 1_600_000_000);
    std::fs::create_dir("/sandbox/sub").unwrap();
    std::fs::write("/sandbox/sub/a.txt", b"hello").unwrap();
    std::fs::write("/sandbox/sub/b.txt", b"world!").unwrap();
    {
        let mut f = std::fs::OpenOptions::new().append(true).open("/sandbox/sub/a.txt").unwrap();
        f.write_all(b" again").unwrap();
    }
    let mut s = String::new();
    std::fs::File::open("/sandbox/sub/a.txt").unwrap().read_to_string(&mut s).unwrap();
    let md = std::fs::metadata("/sandbox/sub/a.txt").unwrap();
    println!("{s} {} {} {}", md.len(), md.is_file(), md.is_dir());
    println!("dir is dir: {}", std::fs::metadata("/sandbox/sub").unwrap().is_dir());
    let mut names: Vec<String> = std::fs::read_dir("/sandbox/sub").unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    println!("{names:?}");
    std::fs::rename("/sandbox/sub/b.txt", "/sandbox/moved.txt").unwrap();
    std::fs::remove_file("/sandbox/sub/a.txt").unwrap();
    std::fs::remove_dir("/sandbox/sub").unwrap();
    println!("missing: {:?}", std::fs::read("/sandbox/nope").unwrap_err().kind());
    println!("rmdir nonempty-less: {:?}", std::fs::remove_dir("/sandbox").is_err());
    let mut line = String::new();
    let n = std::io::stdin().read_line(&mut line).unwrap();
    println!("stdin {n}");
    let mut m = std::collections::HashMap::new(); m.insert(1, 2);
    println!("hash {}", m.len());
    std::io::stdout().flush().unwrap();
    std::process::exit(3);
}

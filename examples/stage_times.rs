use std::time::Instant;
fn main() {
    let dir = std::env::args().nth(1).unwrap();
    let mut files = vec![];
    for sub in std::fs::read_dir(&dir).unwrap() {
        let sub = sub.unwrap().path();
        if sub.is_dir() { for f in std::fs::read_dir(&sub).unwrap() { files.push(std::fs::read(f.unwrap().path()).unwrap()); } }
    }
    let limits = chaff::message::Limits::default();
    let t = Instant::now();
    let msgs: Vec<_> = files.iter().map(|f| chaff::message::parse(f, &limits)).collect();
    let parse = t.elapsed().as_secs_f64();
    let tok = chaff::extract::Tokenizer::new(5);
    let t = Instant::now();
    let mut n = 0;
    for m in &msgs { n += chaff::extract::Features::extract(m, &tok).tokens.len(); }
    let ext = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for f in &files { let _ = chaff::engine::message_digest(f); }
    let dig = t.elapsed().as_secs_f64();
    let k = files.len() as f64;
    println!("{} msgs: parse {:.0}/s ({:.1}us), extract {:.0}/s ({:.1}us), digest {:.1}us, avg tokens {}", files.len(), k/parse, parse/k*1e6, k/ext, ext/k*1e6, dig/k*1e6, n/files.len());
}

//! Any bytes after a spamd request line: SpamAssassin's spamd protocol
//! (the `--spamd-bind` port), header block, body (zlib too) and reply.
use chaff_fuzz::server::Role;

const REQUEST_LINES: [&[u8]; 8] = [
    b"CHECK SPAMC/1.5\r\n",
    b"SYMBOLS SPAMC/1.5\r\n",
    b"REPORT SPAMC/1.5\r\n",
    b"REPORT_IFSPAM SPAMC/1.5\r\n",
    b"PROCESS SPAMC/1.5\r\n",
    b"HEADERS SPAMC/1.5\r\n",
    b"TELL SPAMC/1.5\r\n",
    b"",
];

fn main() {
    afl::fuzz!(|data: &[u8]| {
        // Made on the first input, after AFL's fork server has forked: the
        // daemon's threads (scan pool, runtime) do not survive a fork.
        let daemon = chaff_fuzz::Daemon::get();
        let Some((&selector, rest)) = data.split_first() else {
            return;
        };
        let mut request = REQUEST_LINES[usize::from(selector) % REQUEST_LINES.len()].to_vec();
        request.extend_from_slice(rest);
        let _ = daemon.exchange(Role::Spamd, &request);
    });
}

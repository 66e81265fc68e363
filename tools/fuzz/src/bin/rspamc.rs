//! Any bytes after a legacy request line: rspamd's `RSPAMC/1.3` text
//! protocol (and spamc's spelling), header block, body and reply.
use chaff_fuzz::server::Role;

const REQUEST_LINES: [&[u8]; 4] = [
    b"CHECK RSPAMC/1.3\r\n",
    b"SYMBOLS RSPAMC/1.3\r\n",
    b"REPORT SPAMC/1.2\r\n",
    b"PROCESS RSPAMC/1.2\r\n",
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
        let _ = daemon.exchange(Role::Worker, &request);
    });
}

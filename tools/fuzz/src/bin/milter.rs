//! Any bytes as a milter connection: packets framed by their length, as
//! Postfix sends them (negotiation, macros, envelope, headers, body,
//! end-of-body, abort), through the daemon's own milter session.
use chaff_fuzz::server::Role;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        // Made on the first input, after AFL's fork server has forked: the
        // daemon's threads (scan pool, runtime) do not survive a fork.
        let daemon = chaff_fuzz::Daemon::get();
        let _ = daemon.exchange(Role::Milter, data);
    });
}

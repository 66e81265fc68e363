//! Any bytes as an HTTP connection to the worker port (even first byte) or
//! the controller port (odd), through hyper and the daemon's routes.
use chaff_fuzz::server::Role;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        // Made on the first input, after AFL's fork server has forked: the
        // daemon's threads (scan pool, runtime) do not survive a fork.
        let daemon = chaff_fuzz::Daemon::get();
        let Some((&selector, request)) = data.split_first() else {
            return;
        };
        let role = if selector % 2 == 0 {
            Role::Worker
        } else {
            Role::Controller
        };
        let _ = daemon.exchange(role, request);
    });
}

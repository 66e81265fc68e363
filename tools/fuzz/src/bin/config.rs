//! Any text as the admin's config file, merged over the defaults and
//! validated: an error or a configuration, never a panic.
use chaff::config::Config;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let _ = Config::from_toml_over_defaults(text);
    });
}

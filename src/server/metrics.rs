//! `/metrics`: the counters in Prometheus's text format, with rspamd's
//! metric names where rspamd has one (so its dashboards work) and chaff's
//! own for what rspamd does not count (policy, Redis, DNS).

use std::sync::atomic::Ordering;

use hyper::StatusCode;

use super::reply::{Reply, bytes_reply};
use super::state::{ACTIONS, State};

/// The daemon's counters for Prometheus.
pub fn metrics(state: &State) -> Reply {
    let c = &state.counters;
    let scanned = c.scanned.load(Ordering::Relaxed);
    let mut out = String::new();
    out.push_str(
        "# HELP rspamd_scanned_total Scanned messages.\n# TYPE rspamd_scanned_total counter\n",
    );
    out.push_str(&format!("rspamd_scanned_total {scanned}\n"));
    out.push_str(
        "# HELP rspamd_learned_total Learned messages.\n# TYPE rspamd_learned_total counter\n",
    );
    out.push_str(&format!(
        "rspamd_learned_total {}\n",
        c.learned.load(Ordering::Relaxed)
    ));
    out.push_str(
        "# HELP rspamd_actions_total Scans per action.\n# TYPE rspamd_actions_total counter\n",
    );
    for (i, action) in ACTIONS.iter().enumerate() {
        out.push_str(&format!(
            "rspamd_actions_total{{type=\"{}\"}} {}\n",
            action.name(),
            c.actions[i].load(Ordering::Relaxed)
        ));
    }
    out.push_str("# HELP rspamd_scan_time_average Average scan time in seconds.\n# TYPE rspamd_scan_time_average gauge\n");
    let average = c.scan_micros.load(Ordering::Relaxed) as f64 / 1e6 / scanned.max(1) as f64;
    out.push_str(&format!("rspamd_scan_time_average {average}\n"));
    out.push_str(
        "# HELP rspamd_uptime_seconds Seconds since start.\n# TYPE rspamd_uptime_seconds gauge\n",
    );
    out.push_str(&format!(
        "rspamd_uptime_seconds {}\n",
        state.started.elapsed().as_secs()
    ));
    if let Some((down, failed_fast)) = state
        .engine
        .read()
        .ok()
        .and_then(|engine| engine.resolver_down())
    {
        out.push_str("# HELP chaff_dns_resolver_down 1 while nothing listens on the configured nameservers.\n# TYPE chaff_dns_resolver_down gauge\n");
        out.push_str(&format!("chaff_dns_resolver_down {}\n", u8::from(down)));
        out.push_str("# HELP chaff_dns_failed_fast_total Messages whose lookups failed at once because the resolver was down.\n# TYPE chaff_dns_failed_fast_total counter\n");
        out.push_str(&format!("chaff_dns_failed_fast_total {failed_fast}\n"));
    }
    if let Some((up, failures)) = state.engine.read().ok().and_then(|engine| {
        let policy = engine.policy_state()?;
        Some((policy.redis_up()?, policy.redis_failures()?))
    }) {
        out.push_str("# HELP chaff_redis_up 1 while the shared policy state's Redis answers.\n# TYPE chaff_redis_up gauge\n");
        out.push_str(&format!("chaff_redis_up {}\n", u8::from(up)));
        out.push_str("# HELP chaff_redis_failures_total Redis operations that failed (the local state was used).\n# TYPE chaff_redis_failures_total counter\n");
        out.push_str(&format!("chaff_redis_failures_total {failures}\n"));
    }
    for (name, help, counter) in [
        (
            "chaff_ratelimited_total",
            "Messages a rate limit held.",
            &c.ratelimited,
        ),
        (
            "chaff_greylisted_total",
            "Messages greylisting deferred.",
            &c.greylisted,
        ),
        (
            "chaff_spam_burst_total",
            "Spam-scored messages from authenticated users past their spam-burst bucket.",
            &c.spam_bursts,
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
            counter.load(Ordering::Relaxed)
        ));
    }
    out.push_str("# EOF\n");
    bytes_reply(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        out.into_bytes(),
    )
}

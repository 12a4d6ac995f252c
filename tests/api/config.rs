//! Configuration errors: one clear line and exit code 2.

use std::process::Command;

#[test]
fn a_bad_setting_exits_2_with_one_line_naming_it() {
    let cases = [
        ("LISTEN_ADDR", "not-an-address", "listen-addr"),
        ("RATE_LIMIT_WRITES_PER_MINUTE", "0", "rate-limit-writes-per-minute"),
        ("TRUSTED_PROXIES", "10.0.0.0/8,banana", "trusted-proxies"),
        ("MIGRATE_ON_START", "maybe", "migrate-on-start"),
        ("LOG_FORMAT", "xml", "log-format"),
        ("TRENDING_MIN_NETWORKS", "1001", "trending-min-networks"),
        ("TRENDING_MIN_NETWORKS", "-1", "trending-min-networks"),
        ("TRENDING_MIN_NETWORKS", "five", "trending-min-networks"),
        ("VISITOR_SECRET", "too-short", "visitor-secret"),
        ("DATABASE_URL", "mysql://reader:password@127.0.0.1/reactions", "database-url"),
    ];
    for (variable, value, flag) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_reader-reactions"))
            .env(variable, value)
            .env("LISTEN_ADDR", if variable == "LISTEN_ADDR" { value } else { "127.0.0.1:0" })
            .env(
                "DATABASE_URL",
                if variable == "DATABASE_URL" { value } else { "postgres://nobody@127.0.0.1:9/none" },
            )
            .output()
            .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{variable}={value}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{variable}={value}: one line, got {stderr:?}");
        assert!(stderr.contains(flag), "{variable}={value}: names the setting: {stderr}");
        assert!(!stderr.contains("password"), "{variable}={value}: repeats no secret: {stderr}");
    }
}

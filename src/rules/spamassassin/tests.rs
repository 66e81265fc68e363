use super::mapping::{eval_call, known_eval};
use super::tags::split_at_tags;
use super::*;

#[test]
fn perl_patterns_translate_without_changing_meaning() {
    assert_eq!(translate("a$", "", false).unwrap(), r"a(?:\n?\z)");
    // Perl's `\<` and `\>` are `<` and `>` (`__REPTO_QUOTE`), not the
    // regex crate's word boundaries.
    assert_eq!(translate(r"\<a\>", "", false).unwrap(), "<a>");
    assert!(
        regex::Regex::new(&translate(r"^\<\w+\>", "", false).unwrap())
            .unwrap()
            .is_match("<abc>")
    );
    assert_eq!(translate("a$", "m", false).unwrap(), "(?m)a$");
    assert_eq!(translate("a[^b]c", "", true).unwrap(), r"(?m)a[^\nb]c");
    assert_eq!(translate("a[^b]c", "", false).unwrap(), "a[^b]c");
    assert_eq!(translate(r"[[(]x", "i", false).unwrap(), r"(?i)[\[(]x");
    assert_eq!(translate(r"[a&&b]", "", false).unwrap(), r"[a\&\&b]");
    assert_eq!(translate(r"[]a]", "", false).unwrap(), r"[\]a]");
    assert_eq!(translate(r"\x9\0", "", false).unwrap(), r"\x{9}\x{0}");
    assert_eq!(
        translate(r"[\042]\101(a)\1", "", false).unwrap(),
        r"[\x{22}]\x{41}(a)\1"
    );
    assert!(
        translate(r"[\223]", "", false)
            .unwrap_err()
            .0
            .contains("raw bytes")
    );
    assert!(translate(r"\xe9", "", false).is_err());
    assert_eq!(translate(r"[[:alpha:]]", "", false).unwrap(), "[[:alpha:]]");
    assert!(translate(r"\Qa.b\E", "", false).is_err());
    let re = regex::Regex::new(&translate(r"^foo$", "", false).unwrap()).unwrap();
    assert!(re.is_match("foo\n") && !re.is_match("foo\nbar"));
}

#[test]
fn cf_lines_become_specs_and_skips() {
    let mut parser = CfParser::new(0);
    parser.parse(
        "t.cf",
        "header FOO Subject =~ /viagra/i\nscore FOO 2.5\ndescribe FOO Pills\n\
         body __BAR m{cheap\\s+meds}i\nheader EV eval:check_for_x()\n\
         meta BAZ FOO && __BAR\nmeta QUX EV || FOO\nheader EX exists:X-Foo\n\
         uri NET /x/\ntflags NET net\nheader HOST From:host =~ /x/\n\
         header DNSBL eval:check_rbl('x', 'y.example.')\ntflags DNSBL net\n",
    );
    let mut report = LoadReport::default();
    let specs = parser.finish(&mut report);
    let names: Vec<&str> = specs.iter().map(|s| s.symbol.as_str()).collect();
    // A `net` regex runs (SpamAssassin skips only `net` evals).
    assert_eq!(names, vec!["FOO", "__BAR", "BAZ", "QUX", "EX", "NET"]);
    assert_eq!(specs[0].weight, 2.5);
    assert!(specs[1].hidden);
    let reasons: Vec<String> = report.skipped.iter().map(|s| s.reason()).collect();
    assert!(
        reasons.iter().any(|r| r == "eval: check_for_x"),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains(":host")));
    // Score set 0 has no network tests: the DNS eval is not run, as in
    // SpamAssassin, rather than skipped.
    let not_run: Vec<&str> = report.not_run.iter().map(|r| r.symbol.as_str()).collect();
    assert_eq!(not_run, vec!["DNSBL"]);
    assert!(!report.skipped.iter().any(|s| s.symbol == "DNSBL"));
}

#[test]
fn replace_rules_substitute_tags_as_replace_tags_does() {
    let mut config = ReplaceTags::default();
    config.tags.insert("A".into(), "(?:a|4)".into());
    config.tags.insert("B".into(), "b".into());
    config.tags.insert("AB".into(), "<A><B>".into());
    config.inter.insert("W1".into(), r"\W?".into());
    config.post.insert("P2".into(), "{1,2}".into());
    // Modifiers apply to every tag; `inter` fills the empty pieces
    // between adjacent tags (and before a leading one, as in Perl).
    assert_eq!(
        replace_tags("/<inter W1><post P2><A><B>/i", &config),
        r"/(?:a|4){1,2}\W?b{1,2}/i"
    );
    // A replacement with tags of its own is expanded on the next pass;
    // unknown tags stay as written.
    assert_eq!(replace_tags("/x<AB><NOPE>/", &config), "/x(?:a|4)b<NOPE>/");
    assert_eq!(split_at_tags("<A><B>x"), ["", "<A>", "", "<B>", "x"]);
    assert_eq!(split_at_tags("a<>b<<c>"), ["a<>b<", "<c>"]);

    let mut parser = CfParser::new(0);
    parser.parse(
        "t.cf",
        "replace_tag A (?:a|4)\nreplace_tag LATIN [a\\xe4]\nbody FOO /v<A>gr<A>/i\n\
         body BAR /<LATIN>x/\nreplace_rules FOO BAR\n",
    );
    let mut report = LoadReport::default();
    let specs = parser.finish(&mut report);
    let names: Vec<&str> = specs.iter().map(|s| s.symbol.as_str()).collect();
    assert_eq!(names, vec!["FOO"]);
    let SpecKind::Pattern { source, .. } = &specs[0].kind else {
        panic!("FOO is a pattern: {:?}", specs[0].kind);
    };
    assert!(source.ends_with("v(?:a|4)gr(?:a|4)"), "{source}");
    // A tag with a byte escape makes its rule skipped, not compiled with
    // a literal `<LATIN>`.
    assert!(report.skipped.iter().any(|s| s.symbol == "BAR"));
}

proptest::proptest! {
    #[test]
    fn replace_tags_takes_any_pattern(pattern in "[<>a-zA-Z ()|]{0,40}") {
        let mut config = ReplaceTags::default();
        config.tags.insert("A".into(), "<B>x".into());
        config.tags.insert("B".into(), "<A>".into());
        config.pre.insert("P".into(), "y".into());
        config.inter.insert("I".into(), "z".into());
        // Tags that expand to each other stop after the sixth pass.
        let replaced = replace_tags(&format!("<pre P><inter I>{pattern}"), &config);
        proptest::prop_assert!(replaced.len() < 10_000);
    }
}

#[test]
fn net_evals_are_skipped_in_network_score_sets() {
    let mut parser = CfParser::new(1);
    parser.parse(
        "t.cf",
        "header DNSBL eval:check_rbl('x', 'y.example.')\ntflags DNSBL net\n",
    );
    let mut report = LoadReport::default();
    assert!(parser.finish(&mut report).is_empty());
    assert!(report.not_run.is_empty());
    assert_eq!(report.skipped[0].class, SkipClass::Net);
}

#[test]
fn eval_calls_split_arguments_outside_quotes_only() {
    let (name, arguments) = eval_call("check_freemail_header('Reply-To', '\\d{1,3}@')").unwrap();
    assert_eq!(name, "check_freemail_header");
    assert_eq!(arguments, vec!["Reply-To", "\\d{1,3}@"]);
    let (name, arguments) = eval_call(" check_for_shifted_date(\"undef\", -96) ").unwrap();
    assert_eq!(
        (name, arguments),
        ("check_for_shifted_date", vec!["undef".into(), "-96".into()])
    );
    assert_eq!(eval_call("html_test()").unwrap().1, Vec::<String>::new());
    assert!(eval_call("no_parentheses").is_none());
    assert!(known_eval("check_for_shifted_date", &["x".into(), "1".into()]).is_none());
}

#[test]
fn a_rule_without_a_score_line_scores_as_spamassassin_defaults_it() {
    let mut parser = CfParser::new(0);
    parser.parse(
        "t.cf",
        "header PLAIN Subject =~ /a/\n\
         header LIST_MULTI List-Id =~ /b/\ntflags LIST_MULTI nice multiple\n\
         header T_NEW Subject =~ /c/\n\
         header T_NEW_NICE Subject =~ /d/\ntflags T_NEW_NICE nice\n",
    );
    let mut report = LoadReport::default();
    let weights: Vec<(String, f64)> = parser
        .finish(&mut report)
        .into_iter()
        .map(|spec| (spec.symbol, spec.weight))
        .collect();
    assert_eq!(
        weights,
        vec![
            ("PLAIN".to_owned(), 1.0),
            ("LIST_MULTI".to_owned(), -1.0),
            ("T_NEW".to_owned(), 0.01),
            ("T_NEW_NICE".to_owned(), -0.01),
        ]
    );
}

#[test]
fn version_conditions_are_answered_as_spamassassin_4_0_1() {
    let mut parser = CfParser::new(0);
    parser.parse(
        "t.cf",
        "if (version >= 3.004000)\nheader NEW_ENOUGH Subject =~ /a/\nendif\n\
         if (version < 4.000000)\nheader OLD_STAND_IN Subject =~ /b/\nendif\n\
         if (version > 9)\nheader FUTURE Subject =~ /c/\nendif\n\
         if !((version >= 3.003000))\nheader NOT_OLD Subject =~ /d/\nelse\nheader ELSE_BRANCH Subject =~ /e/\nendif\n",
    );
    let mut report = LoadReport::default();
    let names: Vec<String> = parser
        .finish(&mut report)
        .into_iter()
        .map(|spec| spec.symbol)
        .collect();
    assert_eq!(names, vec!["NEW_ENOUGH", "ELSE_BRANCH"]);
}

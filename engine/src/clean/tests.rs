use proptest::prelude::*;

use super::*;

fn cleaner() -> Cleaner {
    Cleaner::new(CleanConfig::default()).unwrap()
}

#[test]
fn every_valid_us_form_becomes_the_same_e164() {
    let c = cleaner();
    for raw in [
        "(512) 555-0134",
        "512-555-0134",
        "512.555.0134",
        "5125550134",
        "+1 512 555 0134",
        "1-512-555-0134",
        "+15125550134",
    ] {
        match c.phone(raw, "Patient.HomePhone → phone") {
            Checked::Keep(e164, flags) => {
                assert_eq!(e164, "+15125550134", "{raw}");
                assert!(flags.is_empty(), "{raw}");
            }
            other => panic!("{raw}: {other:?}"),
        }
    }
}

#[test]
fn an_extension_is_flagged_not_silently_lost() {
    match cleaner().phone("512-555-0134 ext. 12", "Patient.WorkPhone → phone") {
        Checked::Keep(e164, flags) => {
            assert_eq!(e164, "+15125550134");
            assert_eq!(flags[0].code, ReasonCode::PhoneExtensionDropped);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_generators_invalid_forms_are_refused() {
    let c = cleaner();
    for raw in [
        "555-0134",
        "512-555-013",
        "000-000-0000",
        "n/a",
        "call cell",
        "(512) 555-CALL",
        "512-555-013456",
    ] {
        match c.phone(raw, "Patient.MobilePhone → phone") {
            Checked::Block(issue) => {
                assert_eq!(issue.code, ReasonCode::PhoneInvalid, "{raw}");
                assert_eq!(issue.place, "Patient.MobilePhone → phone");
            }
            other => panic!("{raw} was accepted: {other:?}"),
        }
    }
}

#[test]
fn the_default_region_is_configurable() {
    let uk = Cleaner::new(CleanConfig {
        default_region: "GB".into(),
        ..CleanConfig::default()
    })
    .unwrap();
    match uk.phone("020 7946 0018", "x") {
        Checked::Keep(e164, _) => assert_eq!(e164, "+442079460018"),
        other => panic!("{other:?}"),
    }
    // The same digits are no US number.
    assert!(matches!(
        cleaner().phone("020 7946 0018", "x"),
        Checked::Block(_)
    ));
    let err = Cleaner::new(CleanConfig {
        default_region: "ZZ".into(),
        ..CleanConfig::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("default_region"), "{err}");
}

#[test]
fn drop_field_policy_flags_instead_of_blocking() {
    let c = Cleaner::new(CleanConfig {
        invalid_phone: InvalidPolicy::DropField,
        ..CleanConfig::default()
    })
    .unwrap();
    match c.phone("n/a", "p") {
        Checked::Drop(issue) => assert_eq!(issue.severity, Severity::Flag),
        other => panic!("{other:?}"),
    }
}

#[test]
fn emails_are_checked_and_normalised() {
    let mut c = cleaner();
    match c.email(
        "  Jane.Doe@Example.COM ",
        "contact",
        "Patient.Email → email",
    ) {
        Checked::Keep(email, flags) => {
            assert_eq!(email, "Jane.Doe@example.com");
            assert!(flags.is_empty());
        }
        other => panic!("{other:?}"),
    }
    for bad in [
        "jane",
        "jane@",
        "@example.com",
        "jane@localhost",
        "jane doe@example.com",
        "a@@b.com",
    ] {
        assert!(
            matches!(
                c.email(bad, "contact", "p"),
                Checked::Block(Issue {
                    code: ReasonCode::EmailInvalid,
                    ..
                })
            ),
            "{bad} accepted"
        );
    }
}

#[test]
fn duplicate_emails_keep_the_first_by_default_and_follow_the_policy() {
    let mut c = cleaner();
    assert!(matches!(
        c.email("fam@example.com", "contact", "p"),
        Checked::Keep(..)
    ));
    match c.email("FAM@example.com", "contact", "p") {
        Checked::Drop(issue) => {
            assert_eq!(issue.code, ReasonCode::EmailDuplicate);
            assert_eq!(issue.severity, Severity::Flag);
        }
        other => panic!("{other:?}"),
    }
    // Another target object has its own scope.
    assert!(matches!(
        c.email("fam@example.com", "person", "p"),
        Checked::Keep(..)
    ));

    let mut all = Cleaner::new(CleanConfig {
        duplicate_email: EmailPolicy::KeepAll,
        ..CleanConfig::default()
    })
    .unwrap();
    all.email("fam@example.com", "contact", "p");
    assert!(
        matches!(all.email("fam@example.com", "contact", "p"), Checked::Keep(_, flags) if flags.len() == 1)
    );

    let mut strict = Cleaner::new(CleanConfig {
        duplicate_email: EmailPolicy::Quarantine,
        ..CleanConfig::default()
    })
    .unwrap();
    strict.email("fam@example.com", "contact", "p");
    assert!(matches!(
        strict.email("fam@example.com", "contact", "p"),
        Checked::Block(_)
    ));
}

#[test]
fn reasons_name_the_place_and_never_the_value() {
    let mut c = cleaner();
    let secret = "jane.secret.person@@example.com";
    let Checked::Block(issue) = c.email(secret, "contact", "Patient.Email → email") else {
        panic!("accepted")
    };
    let reason = issue.to_reason();
    assert_eq!(reason.code, "email_invalid");
    assert!(reason.detail.contains("Patient.Email"));
    assert!(!reason.detail.contains("jane"), "{}", reason.detail);
    let long = check_length(&"x".repeat(70_000), 65_536, "ProgressNote.Body → body").unwrap();
    assert_eq!(long.to_reason().code, "too_long");
    assert!(long.to_reason().detail.contains("limit 65536"));
}

#[test]
fn reason_codes_are_bounded_and_distinct() {
    let codes: std::collections::BTreeSet<_> = ReasonCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(codes.len(), ReasonCode::ALL.len());
    for code in codes {
        assert!(
            code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{code}"
        );
    }
}

proptest! {
    /// Any 10-digit NANP number with valid area and exchange codes, in any of the
    /// formats front desks type, normalises to the same E.164.
    #[test]
    fn formatting_never_changes_the_e164(area in 201u32..=989, exchange in 200u32..=999, line in 0u32..10000, form in 0usize..6) {
        let c = cleaner();
        let canonical = format!("{area}{exchange}{line:04}");
        let typed = match form {
            0 => format!("({area}) {exchange}-{line:04}"),
            1 => format!("{area}-{exchange}-{line:04}"),
            2 => format!("{area}.{exchange}.{line:04}"),
            3 => canonical.clone(),
            4 => format!("+1 {area} {exchange} {line:04}"),
            _ => format!("1-{area}-{exchange}-{line:04}"),
        };
        let plain = c.phone(&canonical, "p");
        let formatted = c.phone(&typed, "p");
        match (plain, formatted) {
            (Checked::Keep(a, _), Checked::Keep(b, _)) => {
                prop_assert_eq!(&a, &b);
                prop_assert_eq!(a, format!("+1{canonical}"));
            }
            (Checked::Block(_), Checked::Block(_)) => {}
            (a, b) => prop_assert!(false, "{:?} vs {:?}", a, b),
        }
    }

    /// A normalised e-mail is a fixed point and is accepted again.
    #[test]
    fn email_normalisation_is_idempotent(local in "[a-z0-9._%+-]{1,20}", domain in "[a-z0-9-]{1,15}\\.[a-z]{2,6}") {
        let address = format!("{local}@{domain}");
        if let Ok(once) = normalise_email(&address) {
            prop_assert_eq!(normalise_email(&once).unwrap(), once);
        }
    }
}

#[test]
fn unique_phones_follow_the_duplicate_policy() {
    let mut c = cleaner();
    assert!(matches!(
        c.unique_phone("512-555-0134", "contact", "p"),
        Checked::Keep(..)
    ));
    match c.unique_phone("(512) 555-0134", "contact", "p") {
        Checked::Drop(issue) => assert_eq!(issue.code, ReasonCode::PhoneDuplicate),
        other => panic!("{other:?}"),
    }
    // Invalid stays invalid, whatever was seen.
    assert!(matches!(
        c.unique_phone("n/a", "contact", "p"),
        Checked::Block(Issue {
            code: ReasonCode::PhoneInvalid,
            ..
        })
    ));
}

//! The synthetic PANDA Perio practice generator: every table of the
//! reference schema filled with realistic periodontal content, dirt
//! included, written as an export folder (`<out>/export/`, one CSV per table
//! plus `manifest.json`) and as the SQLite practice database
//! (`<out>/panda.sqlite3`, the layout of [`crate::panda::sqlite`]).
//!
//! Deterministic: one ChaCha8 stream seeded from `--seed`, no clock, no hash
//! maps, so the same seed gives byte-identical files. Streaming: each patient
//! is generated and written before the next (only a small ring of recent
//! patients is kept, for families and duplicates), so 50,000 patients take no
//! more memory than 50.
//!
//! Content: a practice, its periodontists and hygienists, referring offices
//! and dentists; per patient 0–5 exams charted with 6 sites on every present
//! tooth (probing depth, recession, CAL, bleeding, suppuration, plaque) and a
//! tooth row for all 32 teeth (mobility, furcation, missing, implant), the AAP
//! stage and grade, BOP % and plaque index; chart comparisons of up to 5
//! exams; treatment plans with phases and CDT-coded procedures; appointments
//! with every outcome; InstaNotes and progress notes; letters rendered from
//! the letter templates; recall rules; small real PDF documents.
//!
//! Deliberate dirt, per patient unless said otherwise ([`rates`]); with 40 or
//! more patients every kind is also forced at least once, so small practices
//! still carry all of it:
//!
//! | dirt | rate |
//! |------|------|
//! | e-mail shared with a family member (same last name and address) | 6 % |
//! | true duplicate patient (same person registered again, new PatientID) | 2 % |
//! | e-mail missing | 8 % |
//! | phone in an invalid form (7 or 9 digits, letters, `n/a`, all zeros), per phone present | 5 % |
//! | phones in every valid format (`(512) 555-0134`, `512.555.0134`, `+1 512 555 0134`, `ext. 12`, …) | always mixed |
//! | first name missing / last name missing | 1.5 % / 1 % |
//! | non-ASCII first or last name (`Zoë`, `Nguyễn`, `王`, `Смирнов`) | 10 % |
//! | emoji in the preferred name or a progress note | 1 % |
//! | a progress note over 64 KB | 0.5 % |
//! | birth date in the future | 0.3 % |
//! | orphan referral id (ReferringDentistID with no ReferringDentist row) | 0.5 % |
//! | ModifiedAt earlier than CreatedAt (patient row) | 0.5 % |

mod pdf;
pub mod sink;
pub mod vocab;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use cutover_engine::Value;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;

use crate::panda::export::manifest::Manifest;
use crate::panda::reference::reference_tables;
use sink::PracticeSink;
use vocab::*;

pub use pdf::one_page_pdf;

/// The documented dirt rates (see the module table and `docs/generator.md`).
pub mod rates {
    pub const FAMILY_EMAIL: f64 = 0.06;
    pub const TRUE_DUPLICATE: f64 = 0.02;
    pub const EMAIL_MISSING: f64 = 0.08;
    pub const PHONE_INVALID: f64 = 0.05;
    pub const MISSING_FIRST_NAME: f64 = 0.015;
    pub const MISSING_LAST_NAME: f64 = 0.01;
    pub const NON_ASCII_NAME: f64 = 0.10;
    pub const EMOJI: f64 = 0.01;
    pub const LONG_NOTE: f64 = 0.005;
    pub const FUTURE_BIRTH_DATE: f64 = 0.003;
    pub const ORPHAN_REFERRAL: f64 = 0.005;
    pub const MODIFIED_BEFORE_CREATED: f64 = 0.005;
}

/// The kinds of dirt, in the order they are forced into small practices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dirt {
    FamilyEmail,
    TrueDuplicate,
    InvalidPhone,
    MissingFirstName,
    MissingLastName,
    NonAsciiName,
    Emoji,
    LongNote,
    FutureBirthDate,
    OrphanReferral,
    ModifiedBeforeCreated,
}

impl Dirt {
    pub const ALL: [Dirt; 11] = [
        Dirt::FamilyEmail,
        Dirt::TrueDuplicate,
        Dirt::InvalidPhone,
        Dirt::MissingFirstName,
        Dirt::MissingLastName,
        Dirt::NonAsciiName,
        Dirt::Emoji,
        Dirt::LongNote,
        Dirt::FutureBirthDate,
        Dirt::OrphanReferral,
        Dirt::ModifiedBeforeCreated,
    ];

    fn rate(self) -> f64 {
        match self {
            Dirt::FamilyEmail => rates::FAMILY_EMAIL,
            Dirt::TrueDuplicate => rates::TRUE_DUPLICATE,
            Dirt::InvalidPhone => rates::PHONE_INVALID,
            Dirt::MissingFirstName => rates::MISSING_FIRST_NAME,
            Dirt::MissingLastName => rates::MISSING_LAST_NAME,
            Dirt::NonAsciiName => rates::NON_ASCII_NAME,
            Dirt::Emoji => rates::EMOJI,
            Dirt::LongNote => rates::LONG_NOTE,
            Dirt::FutureBirthDate => rates::FUTURE_BIRTH_DATE,
            Dirt::OrphanReferral => rates::ORPHAN_REFERRAL,
            Dirt::ModifiedBeforeCreated => rates::MODIFIED_BEFORE_CREATED,
        }
    }

    /// The patient index (0-based) this kind is forced on in practices of 40+ patients.
    fn forced_index(self) -> u32 {
        let position = Dirt::ALL.iter().position(|d| *d == self).expect("listed") as u32;
        5 + 3 * position
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub patients: u32,
    pub seed: u64,
    /// Also write the SQLite practice database (`panda.sqlite3`).
    pub sqlite: bool,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct GenerateSummary {
    pub export_dir: PathBuf,
    pub sqlite_path: Option<PathBuf>,
    /// Row counts and BLAKE3 hashes per table (also written as `manifest.json`).
    pub manifest: Manifest,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the SQLite database {}: {message}", path.display())]
    Sqlite { path: PathBuf, message: String },
}

impl GenerateError {
    fn io(path: &Path, source: std::io::Error) -> GenerateError {
        GenerateError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Writes `<out>/export/` and, with `options.sqlite`, `<out>/panda.sqlite3`.
pub fn generate(out: &Path, options: &GenerateOptions) -> Result<GenerateSummary, GenerateError> {
    let export_dir = out.join("export");
    let sqlite_path = options.sqlite.then(|| out.join("panda.sqlite3"));
    std::fs::create_dir_all(out).map_err(|e| GenerateError::io(out, e))?;
    let sink = PracticeSink::create(&export_dir, sqlite_path.as_deref(), reference_tables())?;
    let mut practice = Practice::new(options, sink);
    practice.write_static_tables()?;
    for index in 0..options.patients {
        practice.write_patient(index)?;
    }
    let manifest = practice.sink.finish()?;
    Ok(GenerateSummary {
        export_dir,
        sqlite_path,
        manifest,
    })
}

/// "Today" for the generated practice: fixed, so output does not depend on the clock.
fn as_of() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 30, 0, 0, 0).unwrap()
}

fn int(i: i64) -> Value {
    Value::Int(i)
}
fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}
fn opt_text(s: Option<String>) -> Value {
    s.map(Value::Text).unwrap_or(Value::Null)
}
fn bit(b: bool) -> Value {
    Value::Bool(b)
}
fn money(cents: i64) -> Value {
    Value::Decimal(Decimal::new(cents, 2))
}
fn at(t: DateTime<Utc>) -> Value {
    Value::DateTime(t)
}
fn day(d: NaiveDate) -> Value {
    Value::Date(d)
}

/// What later patients may borrow from an earlier one (families, duplicates).
#[derive(Clone)]
struct PatientSeed {
    first: Option<String>,
    last: Option<String>,
    dob: Option<NaiveDate>,
    gender: Option<&'static str>,
    email: Option<String>,
    home_phone: Option<String>,
    mobile_phone: Option<String>,
    address1: String,
    city: (&'static str, &'static str, &'static str),
    zip: String,
}

/// An appointment's id, start and status, for the notes that hang off it.
type AppointmentFacts = (i64, DateTime<Utc>, &'static str);

/// One exam's outcome, for letters and comparisons.
struct ExamFacts {
    id: i64,
    date: DateTime<Utc>,
    classification: Option<&'static str>,
    bop: Option<Decimal>,
    is_baseline: bool,
}

struct Practice {
    rng: ChaCha8Rng,
    sink: PracticeSink,
    patients: u32,
    providers: Vec<(i64, bool)>,
    referring_dentists: i64,
    recent: VecDeque<PatientSeed>,
    next_exam: i64,
    next_finding: i64,
    next_comparison: i64,
    next_plan: i64,
    next_phase: i64,
    next_procedure: i64,
    next_appointment: i64,
    next_note: i64,
    next_letter: i64,
    next_document: i64,
}

const PRACTICE_NAME: &str = "Lakeside Periodontics & Implant Center";

impl Practice {
    fn new(options: &GenerateOptions, sink: PracticeSink) -> Practice {
        Practice {
            rng: ChaCha8Rng::seed_from_u64(options.seed),
            sink,
            patients: options.patients,
            providers: Vec::new(),
            referring_dentists: 0,
            recent: VecDeque::with_capacity(64),
            next_exam: 1,
            next_finding: 1,
            next_comparison: 1,
            next_plan: 1,
            next_phase: 1,
            next_procedure: 1,
            next_appointment: 1,
            next_note: 1,
            next_letter: 1,
            next_document: 1,
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.gen_bool(p.clamp(0.0, 1.0))
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        *items.choose(&mut self.rng).expect("non-empty list")
    }

    fn dirt(&mut self, kind: Dirt, index: u32) -> bool {
        let forced = self.patients >= 40 && index == kind.forced_index();
        self.chance(kind.rate()) || forced
    }

    /// A timestamp within `[from, from + span)` at millisecond precision.
    fn time_in(&mut self, from: DateTime<Utc>, span: Duration) -> DateTime<Utc> {
        let ms = span.num_milliseconds().max(1);
        from + Duration::milliseconds(self.rng.gen_range(0..ms))
    }

    /// A business-hours slot on the day of `t` (08:00–16:30, quarter hours).
    fn clinic_slot(&mut self, t: DateTime<Utc>) -> DateTime<Utc> {
        let quarter = self.rng.gen_range(0..35i64);
        Utc.from_utc_datetime(&t.date_naive().and_hms_opt(8, 0, 0).unwrap())
            + Duration::minutes(15 * quarter)
    }

    fn phone(&mut self, invalid: bool) -> String {
        let area = self.pick(AREA_CODES);
        let exchange = self.rng.gen_range(200..999);
        let line = self.rng.gen_range(0..10000);
        if invalid {
            return match self.rng.gen_range(0..7) {
                0 => format!("{exchange}-{line:04}"),
                1 => format!("{area}-{exchange}-{:03}", line % 1000),
                2 => "000-000-0000".to_string(),
                3 => "n/a".to_string(),
                4 => "call cell".to_string(),
                5 => format!("({area}) {exchange}-CALL"),
                _ => format!("{area}-{exchange}-{line:04}{}", self.rng.gen_range(10..99)),
            };
        }
        match self.rng.gen_range(0..8) {
            0 => format!("({area}) {exchange}-{line:04}"),
            1 => format!("{area}-{exchange}-{line:04}"),
            2 => format!("{area}.{exchange}.{line:04}"),
            3 => format!("{area}{exchange}{line:04}"),
            4 => format!("+1 {area} {exchange} {line:04}"),
            5 => format!("1-{area}-{exchange}-{line:04}"),
            6 => format!(
                "{area}-{exchange}-{line:04} ext. {}",
                self.rng.gen_range(1..400)
            ),
            _ => format!("+1{area}{exchange}{line:04}"),
        }
    }

    fn write_static_tables(&mut self) -> Result<(), GenerateError> {
        let founded = Utc.with_ymd_and_hms(2011, 9, 1, 9, 0, 0).unwrap();
        let practice_phone = self.phone(false);
        let row = [
            ("PracticeID", int(1)),
            ("Name", text(PRACTICE_NAME)),
            ("Address1", text("4100 Lakeshore Dr")),
            ("Address2", text("Suite 210")),
            ("City", text("Austin")),
            ("State", text("TX")),
            ("Zip", text("78746")),
            ("Phone", text(practice_phone)),
            ("Website", text("https://lakesideperio.example")),
            ("NPI", text("1932456780")),
            ("CreatedAt", at(founded)),
            ("ModifiedAt", at(founded + Duration::days(4000))),
        ];
        self.sink.named("Practice", &row)?;

        let provider_count = (4 + self.patients as usize / 400).min(PROVIDERS.len());
        for (i, (first, last, credentials)) in PROVIDERS.iter().take(provider_count).enumerate() {
            let id = i as i64 + 1;
            let created = self.time_in(founded, Duration::days(1500));
            let phone = self.phone(false);
            let npi = format!("1{:09}", self.rng.gen_range(0..1_000_000_000u64));
            let row = [
                ("ProviderID", int(id)),
                ("PracticeID", int(1)),
                ("FirstName", text(*first)),
                ("LastName", text(*last)),
                ("Credentials", text(*credentials)),
                ("NPI", text(npi)),
                (
                    "Email",
                    text(format!(
                        "{}.{}@lakesideperio.example",
                        first.to_lowercase(),
                        last.to_lowercase()
                    )),
                ),
                ("Phone", text(phone)),
                ("IsActive", bit(i != 2)),
                ("CreatedAt", at(created)),
                ("ModifiedAt", at(created + Duration::days(200))),
            ];
            self.sink.named("Provider", &row)?;
            self.providers.push((id, credentials.starts_with('D')));
        }

        let offices = (self.patients as i64 / 50).clamp(3, 400);
        let mut dentist_id = 0;
        for office in 1..=offices {
            let last = self.pick(LAST_NAMES);
            let word = self.pick(REFERRING_PRACTICE_WORDS);
            let (city, state, zip3) = self.pick(CITIES);
            let created = self.time_in(founded, Duration::days(4000));
            let phone = self.phone(false);
            let website = self.chance(0.6).then(|| {
                format!(
                    "https://{}{}.example",
                    last.to_lowercase().replace(['\'', ' '], ""),
                    office
                )
            });
            let row = [
                ("ReferringPracticeID", int(office)),
                ("Name", text(format!("{last} {word}"))),
                (
                    "Address1",
                    text(format!(
                        "{} {}",
                        self.rng.gen_range(100..9999),
                        self.pick(STREETS)
                    )),
                ),
                ("City", text(city)),
                ("State", text(state)),
                (
                    "Zip",
                    text(format!("{zip3}{:02}", self.rng.gen_range(0..99))),
                ),
                ("Phone", text(phone)),
                ("Website", opt_text(website)),
                ("CreatedAt", at(created)),
                (
                    "ModifiedAt",
                    at(created + Duration::days(self.rng.gen_range(0..900))),
                ),
            ];
            self.sink.named("ReferringPractice", &row)?;
            let dentists = self.rng.gen_range(1..=2);
            for _ in 0..dentists {
                dentist_id += 1;
                let first = if self.chance(0.05) {
                    None
                } else {
                    Some(self.pick(FIRST_NAMES_M).to_string())
                };
                let dentist_last = self.pick(LAST_NAMES);
                let email = self.chance(0.7).then(|| {
                    format!(
                        "dr.{}@{}",
                        dentist_last.to_lowercase().replace(['\'', ' '], ""),
                        "referrals.example"
                    )
                });
                let phone = self.phone(false);
                let detached = self.chance(0.1);
                let row = [
                    ("ReferringDentistID", int(dentist_id)),
                    (
                        "ReferringPracticeID",
                        if detached { Value::Null } else { int(office) },
                    ),
                    ("FirstName", opt_text(first)),
                    ("LastName", text(dentist_last)),
                    ("Email", opt_text(email)),
                    ("Phone", text(phone)),
                    ("CreatedAt", at(created)),
                    ("ModifiedAt", at(created + Duration::days(30))),
                ];
                self.sink.named("ReferringDentist", &row)?;
            }
        }
        self.referring_dentists = dentist_id;

        for (i, (name, category, body)) in LETTER_TEMPLATES.iter().enumerate() {
            let created = founded + Duration::days(30 * i as i64);
            let row = [
                ("TemplateID", int(i as i64 + 1)),
                ("Name", text(*name)),
                ("Category", text(*category)),
                ("Body", text(*body)),
                ("CreatedAt", at(created)),
                ("ModifiedAt", at(created + Duration::days(700))),
            ];
            self.sink.named("LetterTemplate", &row)?;
        }
        for (i, (name, classification, months, appointment_type, active)) in
            RECALL_RULES.iter().enumerate()
        {
            let row = [
                ("RuleID", int(i as i64 + 1)),
                ("Name", text(*name)),
                ("Classification", opt_text(classification.map(String::from))),
                ("IntervalMonths", int(*months)),
                ("AppointmentType", text(*appointment_type)),
                ("IsActive", bit(*active)),
            ];
            self.sink.named("RecallRule", &row)?;
        }
        Ok(())
    }

    fn write_patient(&mut self, index: u32) -> Result<(), GenerateError> {
        let id = 1001 + index as i64;
        let now = as_of();
        let duplicate = !self.recent.is_empty() && self.dirt(Dirt::TrueDuplicate, index);
        let family = !duplicate && !self.recent.is_empty() && self.dirt(Dirt::FamilyEmail, index);
        let non_ascii = self.dirt(Dirt::NonAsciiName, index);
        let missing_first = self.dirt(Dirt::MissingFirstName, index);
        let missing_last = self.dirt(Dirt::MissingLastName, index);
        let emoji = self.dirt(Dirt::Emoji, index);
        let future_dob = self.dirt(Dirt::FutureBirthDate, index);
        let orphan = self.dirt(Dirt::OrphanReferral, index);
        let modified_before_created = self.dirt(Dirt::ModifiedBeforeCreated, index);
        let invalid_phone_forced =
            self.patients >= 40 && index == Dirt::InvalidPhone.forced_index();
        let long_note = self.dirt(Dirt::LongNote, index);

        let gender = match self.rng.gen_range(0..100) {
            0..=51 => Some("F"),
            52..=97 => Some("M"),
            98 => Some("X"),
            _ => None,
        };
        let mut seed = if duplicate {
            let k = self.rng.gen_range(0..self.recent.len());
            self.recent[k].clone()
        } else {
            let first = if non_ascii && self.chance(0.5) {
                self.pick(NON_ASCII_FIRST).to_string()
            } else if gender == Some("M") {
                self.pick(FIRST_NAMES_M).to_string()
            } else {
                self.pick(FIRST_NAMES_F).to_string()
            };
            let mut last = self.pick(LAST_NAMES).to_string();
            if non_ascii && first.is_ascii() {
                last = self.pick(NON_ASCII_LAST).to_string();
            }
            let age_days = self.rng.gen_range(18 * 365..90 * 365);
            let dob = (now - Duration::days(age_days)).date_naive();
            let (city, zip) = {
                let c = self.pick(CITIES);
                let zip = format!("{}{:02}", c.2, self.rng.gen_range(0..99));
                (c, zip)
            };
            let mut seed = PatientSeed {
                first: Some(first),
                last: Some(last),
                dob: (!self.chance(0.02)).then_some(dob),
                gender,
                email: None,
                home_phone: None,
                mobile_phone: None,
                address1: format!("{} {}", self.rng.gen_range(100..9999), self.pick(STREETS)),
                city,
                zip,
            };
            if family {
                let k = self.rng.gen_range(0..self.recent.len());
                let relative = self.recent[k].clone();
                seed.last = relative.last.clone();
                seed.email = relative.email.clone();
                seed.home_phone = relative.home_phone.clone();
                seed.address1 = relative.address1.clone();
                seed.city = relative.city;
                seed.zip = relative.zip.clone();
                if seed.email.is_none() {
                    seed.email = Some(format!("family{}@{}", id, self.pick(EMAIL_DOMAINS)));
                }
            } else if !self.chance(rates::EMAIL_MISSING) {
                let local = match (&seed.first, &seed.last) {
                    (Some(f), Some(l)) if f.is_ascii() && l.is_ascii() => {
                        format!(
                            "{}.{}{}",
                            f.to_lowercase(),
                            l.to_lowercase().replace(['\'', ' '], ""),
                            self.rng.gen_range(1..99)
                        )
                    }
                    _ => format!("patient{id}"),
                };
                seed.email = Some(format!("{local}@{}", self.pick(EMAIL_DOMAINS)));
            }
            if !family && self.chance(0.6) {
                let invalid = self.chance(rates::PHONE_INVALID);
                seed.home_phone = Some(self.phone(invalid));
            }
            if self.chance(0.85) {
                let invalid = self.chance(rates::PHONE_INVALID) || invalid_phone_forced;
                seed.mobile_phone = Some(self.phone(invalid));
            }
            seed
        };
        if duplicate && self.chance(0.5) {
            // The same person typed in again: the e-mail differs only in case.
            seed.email = seed.email.map(|e| e.to_uppercase());
        }
        if missing_first {
            seed.first = None;
        }
        if missing_last {
            seed.last = None;
        }
        if future_dob {
            seed.dob = Some((now + Duration::days(self.rng.gen_range(1..400))).date_naive());
        }
        let work_phone = if self.chance(0.15) {
            let invalid = self.chance(rates::PHONE_INVALID);
            Some(self.phone(invalid))
        } else {
            None
        };
        let preferred = if emoji {
            Some(format!(
                "{} {}",
                seed.first.clone().unwrap_or_else(|| "Pat".into()),
                self.pick(EMOJI)
            ))
        } else if self.chance(0.08) {
            Some(
                seed.first
                    .as_deref()
                    .map(|f| f.chars().take(3).collect::<String>())
                    .unwrap_or_else(|| "Sam".into()),
            )
        } else {
            None
        };
        let middle = self
            .chance(0.3)
            .then(|| self.pick(MIDDLE_INITIALS).to_string());
        let address2 = self
            .chance(0.12)
            .then(|| format!("Apt {}", self.rng.gen_range(1..400)));
        let country = if self.chance(0.7) {
            Some("USA".to_string())
        } else if self.chance(0.5) {
            Some("United States".to_string())
        } else {
            None
        };

        let referring_dentist = if orphan {
            Some(self.referring_dentists + 1000 + self.rng.gen_range(0..500))
        } else if self.chance(0.55) {
            Some(self.rng.gen_range(1..=self.referring_dentists))
        } else {
            None
        };
        let referral_text = (referring_dentist.is_none() && self.chance(0.6))
            .then(|| self.pick(REFERRAL_TEXT).to_string());
        let (ins1, ins2) = (self.chance(0.75), self.chance(0.15));
        let carrier1 = self.pick(CARRIERS);
        let carrier2 = self.pick(CARRIERS);
        let coverage = self.pick(&[5000i64, 8000, 8000, 10000]);
        let policy = |rng: &mut ChaCha8Rng| {
            format!(
                "{}{:08}",
                ["W", "X", "U", ""][rng.gen_range(0..4)],
                rng.gen_range(0..100_000_000u64)
            )
        };
        let group = |rng: &mut ChaCha8Rng| format!("{:06}", rng.gen_range(0..1_000_000u32));

        let created = self.time_in(
            Utc.with_ymd_and_hms(2012, 1, 1, 0, 0, 0).unwrap(),
            Duration::days(4700),
        );
        let modified = if modified_before_created {
            created - Duration::minutes(self.rng.gen_range(60..40_000))
        } else {
            (created + Duration::days(self.rng.gen_range(0..1200))).min(now - Duration::hours(1))
        };
        let primary_provider = if self.chance(0.9) {
            Some(self.provider(true))
        } else {
            None
        };
        let active = self.chance(0.88);

        let pairs = [
            ("PatientID", int(id)),
            (
                "ChartNumber",
                if self.chance(0.97) {
                    text(format!("C{:06}", id * 7 % 1_000_000))
                } else {
                    Value::Null
                },
            ),
            ("FirstName", opt_text(seed.first.clone())),
            ("MiddleName", opt_text(middle)),
            ("LastName", opt_text(seed.last.clone())),
            ("PreferredName", opt_text(preferred)),
            ("DateOfBirth", seed.dob.map(day).unwrap_or(Value::Null)),
            ("Gender", opt_text(seed.gender.map(String::from))),
            ("Email", opt_text(seed.email.clone())),
            ("HomePhone", opt_text(seed.home_phone.clone())),
            ("MobilePhone", opt_text(seed.mobile_phone.clone())),
            ("WorkPhone", opt_text(work_phone)),
            ("Address1", text(seed.address1.clone())),
            ("Address2", opt_text(address2)),
            ("City", text(seed.city.0)),
            ("State", text(seed.city.1)),
            ("Zip", text(seed.zip.clone())),
            ("Country", opt_text(country)),
            ("PracticeID", int(1)),
            (
                "PrimaryProviderID",
                primary_provider.map(int).unwrap_or(Value::Null),
            ),
            (
                "ReferringDentistID",
                referring_dentist.map(int).unwrap_or(Value::Null),
            ),
            ("ReferralSourceText", opt_text(referral_text)),
            (
                "InsPrimaryCarrier",
                if ins1 { text(carrier1) } else { Value::Null },
            ),
            (
                "InsPrimaryPolicyNumber",
                if ins1 {
                    text(policy(&mut self.rng))
                } else {
                    Value::Null
                },
            ),
            (
                "InsPrimaryGroupNumber",
                if ins1 {
                    text(group(&mut self.rng))
                } else {
                    Value::Null
                },
            ),
            (
                "InsPrimaryCoveragePct",
                if ins1 { money(coverage) } else { Value::Null },
            ),
            (
                "InsSecondaryCarrier",
                if ins2 { text(carrier2) } else { Value::Null },
            ),
            (
                "InsSecondaryPolicyNumber",
                if ins2 {
                    text(policy(&mut self.rng))
                } else {
                    Value::Null
                },
            ),
            (
                "InsSecondaryGroupNumber",
                if ins2 {
                    text(group(&mut self.rng))
                } else {
                    Value::Null
                },
            ),
            ("IsActive", bit(active)),
            ("CreatedAt", at(created)),
            ("ModifiedAt", at(modified)),
        ];
        self.sink.named("Patient", &pairs)?;

        if self.recent.len() == 64 {
            self.recent.pop_front();
        }
        self.recent.push_back(seed.clone());

        let exams = self.write_exams(id, created)?;
        self.write_comparison(id, &exams)?;
        let plans = self.write_plans(id, created, &exams)?;
        let appointments = self.write_appointments(id, created, active)?;
        self.write_notes(id, &exams, &appointments, long_note, emoji)?;
        let dentist = referring_dentist.filter(|d| *d <= self.referring_dentists);
        self.write_letters(id, &seed, dentist, &exams, &plans)?;
        self.write_documents(id, &seed, created)?;
        Ok(())
    }

    fn provider(&mut self, periodontist: bool) -> i64 {
        let candidates: Vec<i64> = self
            .providers
            .iter()
            .filter(|(_, p)| *p == periodontist)
            .map(|(id, _)| *id)
            .collect();
        let list = if candidates.is_empty() {
            self.providers.iter().map(|(id, _)| *id).collect()
        } else {
            candidates
        };
        self.pick(&list)
    }

    fn write_exams(
        &mut self,
        patient: i64,
        created: DateTime<Utc>,
    ) -> Result<Vec<ExamFacts>, GenerateError> {
        let now = as_of();
        let count = match self.rng.gen_range(0..100) {
            0..=7 => 0,
            8..=32 => 1,
            33..=54 => 2,
            55..=74 => 3,
            75..=87 => 4,
            _ => 5,
        };
        // The patient's disease: 0 healthy, 1 gingivitis, 2..=5 Stage I..IV.
        let severity: usize = match self.rng.gen_range(0..100) {
            0..=19 => 0,
            20..=41 => 1,
            42..=56 => 2,
            57..=73 => 3,
            74..=90 => 4,
            _ => 5,
        };
        let classification = [
            "Healthy",
            "Gingivitis",
            "Stage I",
            "Stage II",
            "Stage III",
            "Stage IV",
        ][severity];
        let grade = if severity >= 2 {
            Some(self.pick(&["A", "B", "B", "C"]))
        } else {
            None
        };
        let mut missing = [false; 33];
        let mut implant = [false; 33];
        for wisdom in [1, 16, 17, 32] {
            missing[wisdom] = self.chance(0.7);
        }
        let lost = match severity {
            0 | 1 => self.rng.gen_range(0..2),
            2 | 3 => self.rng.gen_range(0..4),
            4 => self.rng.gen_range(1..6),
            _ => self.rng.gen_range(4..11),
        };
        for _ in 0..lost {
            let tooth = self.rng.gen_range(2..32);
            missing[tooth] = true;
            if self.chance(0.25) {
                missing[tooth] = false;
                implant[tooth] = true;
            }
        }
        let mut facts = Vec::new();
        let first_visit = created + Duration::days(self.rng.gen_range(0..60));
        let mut date = self.clinic_slot(first_visit);
        for visit in 0..count {
            if visit > 0 {
                let next = date + Duration::days(self.rng.gen_range(90..400));
                date = self.clinic_slot(next);
            }
            if date >= now {
                break;
            }
            let exam_id = self.next_exam;
            self.next_exam += 1;
            let is_baseline = visit > 0 && severity >= 4 && self.chance(0.15);
            // Therapy works a little: later visits probe shallower.
            let improvement = if visit > 0 && severity >= 2 {
                self.rng.gen_range(0..2)
            } else {
                0
            };
            if visit > 0 && severity >= 4 && self.chance(0.2) {
                let tooth = self.rng.gen_range(2..32);
                missing[tooth] = true;
            }
            let (mut charted, mut bleeding_sites, mut plaque_sites) = (0u32, 0u32, 0u32);
            let mut site_rows: Vec<Vec<Value>> = Vec::with_capacity(192);
            let present_teeth: Vec<usize> = (1..=32).filter(|t| !missing[*t]).collect();
            for tooth in present_teeth {
                for site in SITES {
                    let interproximal = site.len() == 2;
                    let (low, high) = match severity {
                        0 => (1, 3),
                        1 => (2, 4),
                        2 => (2, 4),
                        3 => (2, 5),
                        4 => (3, 7),
                        _ => (3, 9),
                    };
                    let mut depth: i64 = self.rng.gen_range(low..=high)
                        + (interproximal && self.chance(0.3)) as i64
                        - improvement;
                    depth = depth.max(1);
                    let recession: i64 = if self.chance(0.02) {
                        -1
                    } else if severity >= 3 && self.chance(0.3) {
                        self.rng.gen_range(1..4)
                    } else {
                        0
                    };
                    let not_charted = self.chance(0.004);
                    let bleed_p = [0.05, 0.35, 0.2, 0.25, 0.35, 0.45][severity]
                        + if depth >= 5 { 0.25 } else { 0.0 };
                    let bleeding = !not_charted && self.chance(bleed_p);
                    let suppuration = depth >= 6 && self.chance(0.08);
                    let plaque = self.chance(0.3);
                    if !not_charted {
                        charted += 1;
                        bleeding_sites += bleeding as u32;
                    }
                    plaque_sites += plaque as u32;
                    site_rows.push(vec![
                        int(exam_id),
                        int(tooth as i64),
                        text(site),
                        if not_charted { Value::Null } else { int(depth) },
                        int(recession),
                        if not_charted {
                            Value::Null
                        } else {
                            int(depth + recession)
                        },
                        bit(bleeding),
                        bit(suppuration),
                        bit(plaque),
                    ]);
                }
            }
            let sites_total = site_rows.len().max(1) as i64;
            let bop = (charted > 0)
                .then(|| Decimal::new(bleeding_sites as i64 * 10000 / charted as i64, 2));
            let bop_recorded = if self.chance(0.1) { None } else { bop };
            let plaque_index = if self.chance(0.15) {
                None
            } else {
                Some(Decimal::new(plaque_sites as i64 * 10000 / sites_total, 2))
            };
            let recorded_class = if self.chance(0.03) {
                None
            } else {
                Some(classification)
            };
            let notes = if self.chance(0.6) {
                Some(self.pick(INSTA_NOTES).to_string())
            } else {
                None
            };
            let provider = if self.chance(0.95) {
                {
                    let periodontist = self.rng.gen_bool(0.6);
                    Some(self.provider(periodontist))
                }
            } else {
                None
            };
            let exam_created = date + Duration::minutes(self.rng.gen_range(20..90));
            let exam_modified =
                exam_created + Duration::minutes(self.rng.gen_range(0..60 * 24 * 30));
            let row = [
                ("ExamID", int(exam_id)),
                ("PatientID", int(patient)),
                ("ProviderID", provider.map(int).unwrap_or(Value::Null)),
                ("ExamDate", at(date)),
                ("Classification", opt_text(recorded_class.map(String::from))),
                (
                    "Grade",
                    opt_text(grade.filter(|_| recorded_class.is_some()).map(String::from)),
                ),
                (
                    "BOPPercent",
                    bop_recorded.map(Value::Decimal).unwrap_or(Value::Null),
                ),
                (
                    "PlaqueIndex",
                    plaque_index.map(Value::Decimal).unwrap_or(Value::Null),
                ),
                ("IsBaseline", bit(is_baseline)),
                ("Notes", opt_text(notes)),
                ("CreatedAt", at(exam_created)),
                ("ModifiedAt", at(exam_modified)),
            ];
            self.sink.named("PerioExam", &row)?;
            for row in site_rows {
                self.sink.row("PerioExamSite", row)?;
            }
            for tooth in 1..=32usize {
                let molar = matches!(tooth, 1..=3 | 14..=19 | 30..=32);
                let present = !missing[tooth];
                let mobility = if !present || implant[tooth] {
                    Value::Null
                } else if severity >= 4 && self.chance(0.25) {
                    int(self.rng.gen_range(1..=3))
                } else {
                    int(0)
                };
                let furcation = if !present || !molar || implant[tooth] {
                    Value::Null
                } else if severity >= 4 && self.chance(0.4) {
                    int(self.rng.gen_range(1..=4))
                } else {
                    int(0)
                };
                self.sink.row(
                    "PerioExamTooth",
                    vec![
                        int(exam_id),
                        int(tooth as i64),
                        mobility,
                        furcation,
                        bit(missing[tooth]),
                        bit(implant[tooth]),
                    ],
                )?;
            }
            if self.chance(0.12) {
                for _ in 0..self.rng.gen_range(1..=3) {
                    let (code, label, values) = self.pick(FINDING_CODES);
                    let tooth = self.chance(0.8).then(|| self.rng.gen_range(1..=32i64));
                    let value = self.pick(values);
                    let finding = self.next_finding;
                    self.next_finding += 1;
                    let row = [
                        ("FindingID", int(finding)),
                        ("ExamID", int(exam_id)),
                        ("ToothNumber", tooth.map(int).unwrap_or(Value::Null)),
                        ("Code", text(code)),
                        ("Label", text(label)),
                        ("Value", text(value)),
                    ];
                    self.sink.named("CustomFinding", &row)?;
                }
            }
            facts.push(ExamFacts {
                id: exam_id,
                date,
                classification: recorded_class,
                bop,
                is_baseline,
            });
        }
        Ok(facts)
    }

    fn write_comparison(&mut self, patient: i64, exams: &[ExamFacts]) -> Result<(), GenerateError> {
        if exams.len() < 2 || !self.chance(0.6) {
            return Ok(());
        }
        let shown = &exams[exams.len().saturating_sub(5)..];
        let baseline = shown.iter().find(|e| e.is_baseline).unwrap_or(&shown[0]);
        let id = self.next_comparison;
        self.next_comparison += 1;
        let created = shown.last().expect("two or more").date + Duration::hours(2);
        let row = [
            ("ComparisonID", int(id)),
            ("PatientID", int(patient)),
            ("BaselineExamID", int(baseline.id)),
            ("CreatedAt", at(created)),
            ("ModifiedAt", at(created)),
        ];
        self.sink.named("ChartComparison", &row)?;
        for (position, exam) in shown.iter().enumerate() {
            self.sink.row(
                "ChartComparisonExam",
                vec![int(id), int(exam.id), int(position as i64 + 1)],
            )?;
        }
        Ok(())
    }

    fn write_plans(
        &mut self,
        patient: i64,
        created: DateTime<Utc>,
        exams: &[ExamFacts],
    ) -> Result<Vec<String>, GenerateError> {
        let needs_plan = exams
            .iter()
            .any(|e| matches!(e.classification, Some(c) if c != "Healthy"));
        if !needs_plan && !self.chance(0.05) {
            return Ok(Vec::new());
        }
        let count = if self.chance(0.25) { 2 } else { 1 };
        let mut names = Vec::new();
        for _ in 0..count {
            let plan = self.next_plan;
            self.next_plan += 1;
            let name = self.pick(PLAN_NAMES).to_string();
            let status = self.pick(&[
                "Proposed",
                "Accepted",
                "InProgress",
                "InProgress",
                "Completed",
                "Completed",
                "Declined",
            ]);
            let phase_count = self.rng.gen_range(2..=5usize);
            let presented = exams.first().map(|e| e.date).unwrap_or(created)
                + Duration::days(self.rng.gen_range(0..30));
            let active_phase = match status {
                "Completed" => phase_count,
                "InProgress" => self.rng.gen_range(1..phase_count),
                _ => 0,
            };
            // Procedures are generated first so the plan row can carry their total.
            let mut phases = Vec::new();
            let mut total = 0i64;
            for (seq, phase_name) in PHASES.iter().copied().enumerate().take(phase_count) {
                let procedures: Vec<(&str, &str, String, i64)> = match phase_name {
                    "Diagnosis" => vec![("D0180", CDT[0].1, "full mouth".into(), CDT[0].2)],
                    "Initial Therapy" => {
                        let mut list = Vec::new();
                        for quadrant in ["UR", "UL", "LL", "LR"] {
                            if self.chance(0.75) {
                                list.push(("D4341", CDT[1].1, quadrant.to_string(), CDT[1].2));
                            } else {
                                let a = self.rng.gen_range(2..14);
                                list.push((
                                    "D4342",
                                    CDT[2].1,
                                    format!("{},{},{}", a, a + 1, a + 2),
                                    CDT[2].2,
                                ));
                            }
                        }
                        if self.chance(0.3) {
                            list.push((
                                "D4381",
                                CDT[4].1,
                                format!("{}", self.rng.gen_range(2..31)),
                                CDT[4].2,
                            ));
                        }
                        list
                    }
                    "Re-evaluation" => vec![],
                    "Surgical Therapy" => {
                        let (code, description, fee) = self.pick(&CDT[6..]);
                        let teeth = format!("{}", self.rng.gen_range(2..31));
                        vec![(code, description, teeth, fee)]
                    }
                    _ => vec![("D4910", CDT[5].1, "full mouth".into(), CDT[5].2)],
                };
                let procedures: Vec<(String, Option<String>, String, i64)> = procedures
                    .into_iter()
                    .map(|(code, description, teeth, fee)| {
                        let fee = fee + self.rng.gen_range(-fee / 10..=fee / 10);
                        // The PMS wording, sometimes abbreviated by staff.
                        let wording = if self.chance(0.2) {
                            None
                        } else {
                            Some(description.to_string())
                        };
                        (code.to_string(), wording, teeth, fee)
                    })
                    .collect();
                total += procedures.iter().map(|p| p.3).sum::<i64>();
                phases.push((seq, phase_name, procedures));
            }
            let row = [
                ("PlanID", int(plan)),
                ("PatientID", int(patient)),
                ("ProviderID", int(self.provider(true))),
                ("Name", text(name.clone())),
                ("Status", text(status)),
                (
                    "CurrentPhase",
                    if active_phase == 0 {
                        Value::Null
                    } else {
                        text(PHASES[(active_phase - 1).min(phase_count - 1)])
                    },
                ),
                (
                    "EstimatedValue",
                    if self.chance(0.1) {
                        Value::Null
                    } else {
                        money(total)
                    },
                ),
                ("PresentedDate", day(presented.date_naive())),
                ("CreatedAt", at(presented)),
                (
                    "ModifiedAt",
                    at(presented + Duration::days(self.rng.gen_range(0..200))),
                ),
            ];
            self.sink.named("TreatmentPlan", &row)?;
            for (seq, phase_name, procedures) in phases {
                let phase = self.next_phase;
                self.next_phase += 1;
                let phase_status = if seq + 1 < active_phase || status == "Completed" {
                    "Done"
                } else if seq + 1 == active_phase {
                    "Active"
                } else {
                    "Pending"
                };
                let start = (phase_status != "Pending")
                    .then(|| (presented + Duration::days(45 * seq as i64)).date_naive());
                let done = (phase_status == "Done")
                    .then(|| (presented + Duration::days(45 * seq as i64 + 30)).date_naive());
                let row = [
                    ("PhaseID", int(phase)),
                    ("PlanID", int(plan)),
                    ("Sequence", int(seq as i64 + 1)),
                    ("PhaseName", text(phase_name)),
                    ("Status", text(phase_status)),
                    ("StartDate", start.map(day).unwrap_or(Value::Null)),
                    ("CompletedDate", done.map(day).unwrap_or(Value::Null)),
                    (
                        "Description",
                        if self.chance(0.5) {
                            text(format!("{phase_name} per AAP guidelines"))
                        } else {
                            Value::Null
                        },
                    ),
                ];
                self.sink.named("TreatmentPhase", &row)?;
                for (code, wording, teeth, fee) in procedures {
                    let procedure = self.next_procedure;
                    self.next_procedure += 1;
                    let procedure_status = match phase_status {
                        "Done" => "Completed",
                        "Active" => "Scheduled",
                        _ => "Planned",
                    };
                    let row = [
                        ("ProcedureID", int(procedure)),
                        ("PhaseID", int(phase)),
                        ("AdaCode", text(code)),
                        ("Description", opt_text(wording)),
                        ("ToothNumbers", text(teeth)),
                        ("Fee", money(fee)),
                        ("Status", text(procedure_status)),
                    ];
                    self.sink.named("PlannedProcedure", &row)?;
                }
            }
            names.push(name);
        }
        Ok(names)
    }

    fn write_appointments(
        &mut self,
        patient: i64,
        created: DateTime<Utc>,
        active: bool,
    ) -> Result<Vec<AppointmentFacts>, GenerateError> {
        let now = as_of();
        let count = self.rng.gen_range(1..=8);
        let mut times: Vec<DateTime<Utc>> = (0..count)
            .map(|_| {
                let span = (now - created).num_days().max(1);
                let t = created + Duration::days(self.rng.gen_range(0..span));
                self.clinic_slot(t)
            })
            .collect();
        if active && self.chance(0.4) {
            let t = now + Duration::days(self.rng.gen_range(1..120));
            times.push(self.clinic_slot(t));
        }
        times.sort();
        let mut out = Vec::new();
        for start in times {
            let id = self.next_appointment;
            self.next_appointment += 1;
            let status = if start > now {
                "Scheduled"
            } else {
                match self.rng.gen_range(0..100) {
                    0..=74 => "Completed",
                    75..=82 => "NoShow",
                    83..=92 => "Cancelled",
                    _ => "Rescheduled",
                }
            };
            let booked = start
                - Duration::days(self.rng.gen_range(1..60))
                - Duration::minutes(self.rng.gen_range(0..600));
            let notes = match status {
                "NoShow" if self.chance(0.5) => {
                    Some("Pt did not show, left voicemail.".to_string())
                }
                "Cancelled" if self.chance(0.5) => Some("Pt called to cancel - sick.".to_string()),
                _ if self.chance(0.15) => {
                    Some("Premedicate: amoxicillin 2 g 1 h prior.".to_string())
                }
                _ => None,
            };
            let row = [
                ("AppointmentID", int(id)),
                ("PatientID", int(patient)),
                (
                    "ProviderID",
                    if self.chance(0.97) {
                        {
                            let periodontist = self.rng.gen_bool(0.4);
                            int(self.provider(periodontist))
                        }
                    } else {
                        Value::Null
                    },
                ),
                ("StartTime", at(start)),
                ("DurationMinutes", int(self.pick(&[30, 45, 60, 60, 90]))),
                (
                    "ProcedureType",
                    if self.chance(0.95) {
                        text(self.pick(PROCEDURE_TYPES))
                    } else {
                        Value::Null
                    },
                ),
                (
                    "Operatory",
                    text(format!("Op {}", self.rng.gen_range(1..=5))),
                ),
                ("Status", text(status)),
                ("Notes", opt_text(notes)),
                ("CreatedAt", at(booked)),
                (
                    "ModifiedAt",
                    at(booked.max(start.min(now - Duration::hours(1)))),
                ),
            ];
            self.sink.named("Appointment", &row)?;
            out.push((id, start, status));
        }
        Ok(out)
    }

    fn write_notes(
        &mut self,
        patient: i64,
        exams: &[ExamFacts],
        appointments: &[AppointmentFacts],
        long_note: bool,
        emoji: bool,
    ) -> Result<(), GenerateError> {
        enum Anchor {
            Exam(i64),
            Appointment(i64),
        }
        let mut notes: Vec<(DateTime<Utc>, &str, Anchor)> = Vec::new();
        for exam in exams {
            if self.chance(0.7) {
                notes.push((
                    exam.date + Duration::minutes(45),
                    "InstaNote",
                    Anchor::Exam(exam.id),
                ));
            }
        }
        for (id, start, status) in appointments {
            if *status == "Completed" && self.chance(0.5) {
                notes.push((
                    *start + Duration::minutes(50),
                    self.pick(&["Progress", "Clinical"]),
                    Anchor::Appointment(*id),
                ));
            }
        }
        if (long_note || emoji) && notes.is_empty() {
            let when = appointments.first().map(|a| a.1).unwrap_or_else(as_of) - Duration::days(1);
            notes.push((
                when,
                "Progress",
                Anchor::Appointment(appointments.first().map(|a| a.0).unwrap_or(0)),
            ));
        }
        notes.sort_by_key(|n| n.0);
        for (i, (when, kind, anchor)) in notes.into_iter().enumerate() {
            let id = self.next_note;
            self.next_note += 1;
            let mut body = String::new();
            for _ in 0..self.rng.gen_range(1..=3) {
                if !body.is_empty() {
                    body.push(' ');
                }
                body.push_str(self.pick(INSTA_NOTES));
            }
            if emoji && i == 0 {
                body.push_str(" Pt very happy with results ");
                body.push_str(self.pick(EMOJI));
            }
            if long_note && i == 0 {
                // A pasted-in history: well over 64 KB, the size where naive NVARCHAR(4000)/TEXT handling breaks.
                let mut paragraph = 0;
                while body.len() <= 66_000 {
                    paragraph += 1;
                    body.push_str(&format!("\r\n[{paragraph}] {}", self.pick(INSTA_NOTES)));
                }
            }
            let (exam, appointment) = match anchor {
                Anchor::Exam(e) => (Some(e), None),
                Anchor::Appointment(0) => (None, None),
                Anchor::Appointment(a) => (None, Some(a)),
            };
            let created = when + Duration::minutes(self.rng.gen_range(0..120));
            let row = [
                ("NoteID", int(id)),
                ("PatientID", int(patient)),
                ("ProviderID", {
                    let periodontist = self.rng.gen_bool(0.5);
                    int(self.provider(periodontist))
                }),
                ("ExamID", exam.map(int).unwrap_or(Value::Null)),
                ("AppointmentID", appointment.map(int).unwrap_or(Value::Null)),
                ("NoteType", text(kind)),
                ("NoteDate", at(when)),
                ("Body", text(body)),
                ("CreatedAt", at(created)),
                (
                    "ModifiedAt",
                    at(created + Duration::minutes(self.rng.gen_range(0..5000))),
                ),
            ];
            self.sink.named("ProgressNote", &row)?;
        }
        Ok(())
    }

    fn write_letters(
        &mut self,
        patient: i64,
        seed: &PatientSeed,
        dentist: Option<i64>,
        exams: &[ExamFacts],
        plans: &[String],
    ) -> Result<(), GenerateError> {
        let Some(first_exam) = exams.first() else {
            return Ok(());
        };
        let mut letters: Vec<usize> = Vec::new();
        if dentist.is_some() {
            letters.push(0);
            if exams.len() > 1 && self.chance(0.5) {
                letters.push(4);
            }
            if !plans.is_empty() && self.chance(0.4) {
                letters.push(self.pick(&[1, 2]));
            }
        }
        if self.chance(0.3) {
            letters.push(3);
        }
        for (n, template) in letters.into_iter().enumerate() {
            let id = self.next_letter;
            self.next_letter += 1;
            let exam = if template == 4 {
                exams.last().expect("non-empty")
            } else {
                first_exam
            };
            let (name, _, body) = LETTER_TEMPLATES[template];
            let dentist_last = self.pick(LAST_NAMES);
            let provider_last = PROVIDERS[0].1;
            let fields: [(&str, String); 8] = [
                (
                    "{{Patient.FirstName}}",
                    seed.first.clone().unwrap_or_default(),
                ),
                (
                    "{{Patient.LastName}}",
                    seed.last.clone().unwrap_or_default(),
                ),
                ("{{Practice.Name}}", PRACTICE_NAME.to_string()),
                ("{{Exam.Date}}", exam.date.format("%B %-d, %Y").to_string()),
                (
                    "{{Exam.Classification}}",
                    exam.classification
                        .unwrap_or("periodontal evaluation pending")
                        .to_string(),
                ),
                (
                    "{{Exam.BOP}}",
                    exam.bop
                        .map(|b| b.to_string())
                        .unwrap_or_else(|| "n/a".into()),
                ),
                (
                    "{{Plan.Name}}",
                    plans
                        .first()
                        .cloned()
                        .unwrap_or_else(|| "periodontal maintenance".into())
                        .to_lowercase(),
                ),
                ("{{Dentist.LastName}}", dentist_last.to_string()),
            ];
            let mut rendered = body.replace("{{Provider.LastName}}", provider_last);
            for (field, value) in &fields {
                rendered = rendered.replace(field, value);
            }
            let created = exam.date
                + Duration::days(1 + n as i64)
                + Duration::minutes(self.rng.gen_range(0..300));
            let sent =
                (!self.chance(0.1)).then(|| created + Duration::hours(self.rng.gen_range(1..48)));
            let row = [
                ("LetterID", int(id)),
                ("PatientID", int(patient)),
                ("TemplateID", int(template as i64 + 1)),
                (
                    "ReferringDentistID",
                    if template == 3 {
                        Value::Null
                    } else {
                        dentist.map(int).unwrap_or(Value::Null)
                    },
                ),
                ("SentDate", sent.map(at).unwrap_or(Value::Null)),
                ("Subject", text(name)),
                ("Body", text(rendered)),
                ("CreatedAt", at(created)),
                ("ModifiedAt", at(sent.unwrap_or(created))),
            ];
            self.sink.named("Letter", &row)?;
        }
        Ok(())
    }

    fn write_documents(
        &mut self,
        patient: i64,
        seed: &PatientSeed,
        created: DateTime<Utc>,
    ) -> Result<(), GenerateError> {
        if !self.chance(0.25) {
            return Ok(());
        }
        for _ in 0..self.rng.gen_range(1..=2) {
            let id = self.next_document;
            self.next_document += 1;
            let when = self.time_in(
                created,
                Duration::days(((as_of() - created).num_days()).max(1)),
            );
            let (file, title) = match self.rng.gen_range(0..3) {
                0 => (
                    "consent-srp.pdf".to_string(),
                    "Informed consent: scaling and root planing",
                ),
                1 => (
                    format!("perio-chart-{}.pdf", when.format("%Y-%m-%d")),
                    "Periodontal chart",
                ),
                _ => ("referral-slip.pdf".to_string(), "Referral slip"),
            };
            let name = format!(
                "{} {}",
                seed.first.as_deref().unwrap_or(""),
                seed.last.as_deref().unwrap_or("")
            )
            .trim()
            .to_string();
            let lines = vec![
                format!("Patient: {name}"),
                format!("Chart date: {}", when.format("%Y-%m-%d")),
                format!("{PRACTICE_NAME}, Austin TX"),
                format!("Document {id} of patient {patient}, year {}", when.year()),
            ];
            let pdf = one_page_pdf(title, &lines);
            let row = [
                ("DocumentID", int(id)),
                ("PatientID", int(patient)),
                ("FileName", text(file)),
                ("MimeType", text("application/pdf")),
                ("Content", Value::Bytes(pdf)),
                ("CreatedAt", at(when)),
                ("ModifiedAt", at(when)),
            ];
            self.sink.named("Document", &row)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

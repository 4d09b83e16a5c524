//! Word lists the generator draws from: names (including non-ASCII ones),
//! places, carriers, clinical phrases, CDT codes, letter templates.

pub const FIRST_NAMES_F: &[&str] = &[
    "Mary",
    "Patricia",
    "Jennifer",
    "Linda",
    "Elizabeth",
    "Barbara",
    "Susan",
    "Jessica",
    "Sarah",
    "Karen",
    "Nancy",
    "Lisa",
    "Betty",
    "Margaret",
    "Sandra",
    "Ashley",
    "Kimberly",
    "Emily",
    "Donna",
    "Michelle",
    "Carol",
    "Amanda",
    "Melissa",
    "Deborah",
];
pub const FIRST_NAMES_M: &[&str] = &[
    "James",
    "Robert",
    "John",
    "Michael",
    "David",
    "William",
    "Richard",
    "Joseph",
    "Thomas",
    "Charles",
    "Christopher",
    "Daniel",
    "Matthew",
    "Anthony",
    "Mark",
    "Donald",
    "Steven",
    "Paul",
    "Andrew",
    "Joshua",
    "Kenneth",
    "Kevin",
    "Brian",
    "George",
];
pub const LAST_NAMES: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "O'Brien",
    "McDonald",
    "Van der Berg",
    "Smith-Jones",
];
/// Names that are not ASCII: accents, other scripts, combining-free and not.
pub const NON_ASCII_FIRST: &[&str] = &[
    "José",
    "Zoë",
    "Søren",
    "Ángela",
    "François",
    "Jürgen",
    "Łukasz",
    "Siobhán",
    "Nguyễn Văn",
    "明",
    "Дмитрий",
    "Chloé",
];
pub const NON_ASCII_LAST: &[&str] = &[
    "Müller",
    "Núñez",
    "Øster",
    "Dvořák",
    "Nguyễn",
    "王",
    "Ibáñez",
    "Çelik",
    "Kovač",
    "Смирнов",
    "Groß",
    "Żak",
];
pub const EMOJI: &[&str] = &["😀", "🦷", "👍", "🙂", "⭐", "❤️"];
pub const MIDDLE_INITIALS: &[&str] = &[
    "A.", "B.", "C.", "J.", "L.", "M.", "R.", "S.", "Ann", "Lee", "Marie",
];

pub const STREETS: &[&str] = &[
    "Oak St",
    "Maple Ave",
    "Cedar Ln",
    "Pine Rd",
    "Elm St",
    "Lakeview Dr",
    "Washington Blvd",
    "Park Pl",
    "Hillcrest Rd",
    "Sunset Blvd",
];
pub const CITIES: &[(&str, &str, &str)] = &[
    ("Austin", "TX", "787"),
    ("Denver", "CO", "802"),
    ("Portland", "OR", "972"),
    ("Columbus", "OH", "432"),
    ("Raleigh", "NC", "276"),
    ("Tampa", "FL", "336"),
    ("Madison", "WI", "537"),
    ("Boise", "ID", "837"),
    ("Omaha", "NE", "681"),
    ("Albany", "NY", "122"),
];
pub const AREA_CODES: &[&str] = &[
    "512", "303", "503", "614", "919", "813", "608", "208", "402", "518",
];
pub const EMAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "aol.com",
    "icloud.com",
    "comcast.net",
    "hotmail.com",
];
pub const CARRIERS: &[&str] = &[
    "Delta Dental",
    "MetLife",
    "Cigna Dental",
    "Aetna",
    "Guardian",
    "United Concordia",
    "Humana Dental",
    "BlueCross BlueShield",
];
pub const REFERRAL_TEXT: &[&str] = &[
    "Google search",
    "Friend / family",
    "Insurance directory",
    "Walk-in",
    "Facebook ad",
    "Previous patient",
];

pub const PROVIDERS: &[(&str, &str, &str)] = &[
    ("Alan", "Park", "DDS, MS"),
    ("Rebecca", "Ortiz", "DMD, MS"),
    ("Samuel", "Nakamura", "DDS, MSD"),
    ("Claire", "Dubois", "RDH"),
    ("Tanya", "Brooks", "RDH, BS"),
    ("Hannah", "Meyer", "RDH"),
    ("Victor", "Osei", "DDS, MS"),
    ("Priya", "Raman", "RDH"),
];
pub const REFERRING_PRACTICE_WORDS: &[&str] = &[
    "Family Dentistry",
    "Smile Studio",
    "Dental Care",
    "Dental Group",
    "Gentle Dental",
    "Dental Arts",
];

/// Site order within a tooth, sorted as the primary key sorts it (binary order of the codes).
pub const SITES: [&str; 6] = ["B", "DB", "DL", "L", "MB", "ML"];

pub const CDT: &[(&str, &str, i64)] = &[
    ("D0180", "Comprehensive periodontal evaluation", 11500),
    (
        "D4341",
        "Periodontal scaling and root planing, four or more teeth per quadrant",
        27500,
    ),
    (
        "D4342",
        "Periodontal scaling and root planing, one to three teeth per quadrant",
        19500,
    ),
    ("D4355", "Full mouth debridement", 16000),
    ("D4381", "Localized delivery of antimicrobial agent", 9500),
    ("D4910", "Periodontal maintenance", 15500),
    (
        "D4260",
        "Osseous surgery, four or more teeth per quadrant",
        145000,
    ),
    (
        "D4266",
        "Guided tissue regeneration, resorbable barrier",
        98000,
    ),
    ("D4273", "Autogenous connective tissue graft", 112000),
    (
        "D7210",
        "Extraction, erupted tooth requiring removal of bone",
        36000,
    ),
    (
        "D7953",
        "Bone replacement graft for ridge preservation",
        62000,
    ),
    (
        "D6010",
        "Surgical placement of implant body: endosteal implant",
        225000,
    ),
];
pub const PHASES: [&str; 5] = [
    "Diagnosis",
    "Initial Therapy",
    "Re-evaluation",
    "Surgical Therapy",
    "Maintenance",
];
pub const PLAN_NAMES: &[&str] = &[
    "Non-surgical periodontal therapy, 3-month re-evaluation",
    "Scaling and root planing, four quadrants",
    "Osseous surgery UR/LR after re-evaluation",
    "Periodontal maintenance program",
    "Extraction #19, ridge preservation and implant",
    "Connective tissue graft #8-#9",
];
pub const PROCEDURE_TYPES: &[&str] = &[
    "Perio maintenance",
    "SRP UR/LR",
    "SRP UL/LL",
    "Consult",
    "Re-evaluation",
    "Osseous surgery",
    "Post-op check",
    "Implant consult",
];
pub const APPOINTMENT_STATUSES: [&str; 5] = [
    "Completed",
    "NoShow",
    "Cancelled",
    "Rescheduled",
    "Scheduled",
];
pub const INSTA_NOTES: &[&str] = &[
    "Pt reports bleeding when brushing. OHI given, recommended soft brush and interdental brushes.",
    "Generalized moderate plaque and calculus. Localized heavy subgingival calculus LR.",
    "Reviewed medical history: no changes. BP 124/80.",
    "Anesthetic: 2 carpules 4% articaine 1:100k. Pt tolerated procedure well.",
    "Discussed smoking cessation; pt contemplating quitting.",
    "Pt is diabetic, last A1c 7.4 per pt. Grade modifier applied.",
    "Post-op: healing within normal limits, sutures removed.",
    "Recommended 3-month perio maintenance interval.",
];
pub const FINDING_CODES: &[(&str, &str, &[&str])] = &[
    ("FREMITUS", "Fremitus", &["+", "++"]),
    ("MGJ", "Mucogingival defect", &["present", "absent"]),
    (
        "KG",
        "Keratinized gingiva width (mm)",
        &["0", "1", "2", "3"],
    ),
    ("OCCL", "Occlusal trauma", &["primary", "secondary"]),
    ("RST", "Restoration margin subgingival", &["yes"]),
];

/// Letter templates: (name, category, body with `{{…}}` merge fields).
pub const LETTER_TEMPLATES: &[(&str, &str, &str)] = &[
    (
        "Thank you for your referral",
        "Referral",
        "Dear Dr. {{Dentist.LastName}},\n\nThank you for referring {{Patient.FirstName}} {{Patient.LastName}} to {{Practice.Name}}. \
We examined your patient on {{Exam.Date}}. Diagnosis: {{Exam.Classification}}.\n\nSincerely,\nDr. {{Provider.LastName}}",
    ),
    (
        "Consultation summary",
        "Consult",
        "Dear Dr. {{Dentist.LastName}},\n\n{{Patient.FirstName}} {{Patient.LastName}} was seen for a periodontal consultation on {{Exam.Date}}. \
Findings: {{Exam.Classification}}, bleeding on probing {{Exam.BOP}}%. We recommend {{Plan.Name}}.\n\nDr. {{Provider.LastName}}",
    ),
    (
        "Post-operative report",
        "PostOp",
        "Dear Dr. {{Dentist.LastName}},\n\nYour patient {{Patient.FirstName}} {{Patient.LastName}} completed {{Plan.Name}}. Healing is uneventful.\n\n{{Practice.Name}}",
    ),
    (
        "Recall reminder",
        "Recall",
        "Dear {{Patient.FirstName}},\n\nIt is time for your periodontal maintenance visit at {{Practice.Name}}. Please call us to schedule.",
    ),
    (
        "Re-evaluation results",
        "Consult",
        "Dear Dr. {{Dentist.LastName}},\n\nAt re-evaluation on {{Exam.Date}}, {{Patient.FirstName}} {{Patient.LastName}} showed {{Exam.Classification}}. Next step: {{Plan.Name}}.",
    ),
];

/// Recall rules: (name, classification, interval in months, appointment type, active).
pub const RECALL_RULES: &[(&str, Option<&str>, i64, &str, bool)] = &[
    (
        "Healthy recall",
        Some("Healthy"),
        12,
        "Perio evaluation",
        true,
    ),
    (
        "Gingivitis recall",
        Some("Gingivitis"),
        6,
        "Prophylaxis",
        true,
    ),
    (
        "Stage I maintenance",
        Some("Stage I"),
        6,
        "Perio maintenance",
        true,
    ),
    (
        "Stage II maintenance",
        Some("Stage II"),
        4,
        "Perio maintenance",
        true,
    ),
    (
        "Stage III maintenance",
        Some("Stage III"),
        3,
        "Perio maintenance",
        true,
    ),
    (
        "Stage IV maintenance",
        Some("Stage IV"),
        3,
        "Perio maintenance",
        true,
    ),
    (
        "Legacy 4-month rule",
        Some("Stage III"),
        4,
        "Perio maintenance",
        false,
    ),
    ("Default recall", None, 6, "Recall", true),
];

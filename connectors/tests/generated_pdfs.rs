//! The generator's documents are real PDFs: an independent parser (`pypdf`
//! in strict mode, installed by `scripts/setup-tools` into `.tools/venv`)
//! opens every one, finds one page, and extracts the text we put on it.

use std::path::{Path, PathBuf};
use std::process::Command;

use cutover_connectors::panda::export::ExportSource;
use cutover_connectors::panda::generator::{generate, GenerateOptions};
use cutover_engine::{Source, SourceItem, Value};
use futures::StreamExt;

fn python_with_pypdf() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let python = root.join(".tools/venv/bin/python");
    let installed = python.exists()
        && Command::new(&python)
            .args(["-c", "import pypdf"])
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        installed,
        "pypdf is not installed in {}: run scripts/setup-tools first",
        python.display()
    );
    python
}

const CHECK: &str = r#"
import sys, pypdf
for path in sys.argv[1:]:
    reader = pypdf.PdfReader(path, strict=True)
    assert len(reader.pages) == 1, (path, len(reader.pages))
    text = reader.pages[0].extract_text()
    assert "Patient:" in text and "Lakeside Periodontics" in text, (path, text)
print(len(sys.argv) - 1)
"#;

#[tokio::test]
async fn every_generated_document_opens_in_an_independent_pdf_parser() {
    let python = python_with_pypdf();
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(
        dir.path(),
        &GenerateOptions {
            patients: 40,
            seed: 2,
            sqlite: false,
        },
    )
    .unwrap();
    let source = ExportSource::open(&summary.export_dir).unwrap();
    let mut stream = source.stream("Document", None).await.unwrap();
    let mut paths = Vec::new();
    while let Some(item) = stream.next().await {
        let SourceItem::Record(document) = item.unwrap() else {
            panic!("documents are readable")
        };
        assert_eq!(
            document.get("MimeType"),
            Some(&Value::Text("application/pdf".into()))
        );
        let Some(Value::Bytes(pdf)) = document.get("Content") else {
            panic!("Content is bytes")
        };
        let path = dir.path().join(format!("{}.pdf", document.key));
        std::fs::write(&path, pdf).unwrap();
        paths.push(path);
    }
    assert!(paths.len() >= 5, "a 40-patient practice has documents");
    let output = Command::new(python)
        .arg("-c")
        .arg(CHECK)
        .args(&paths)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "pypdf rejected a document: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        paths.len().to_string()
    );
}

//! Small, real PDF documents (one page of Helvetica text) for `Document.Content`.
//!
//! Assembled by hand because the format is tiny and fixed: a catalog, a page
//! tree, one page, its content stream and a standard font, with a correct
//! cross-reference table, so any PDF reader opens them.

/// A one-page PDF with `title` and `lines` (non-Latin-1 characters become `?`).
pub fn one_page_pdf(title: &str, lines: &[String]) -> Vec<u8> {
    let mut content = String::from("BT\n/F1 16 Tf\n72 720 Td\n");
    content.push_str(&format!("({}) Tj\n/F1 11 Tf\n0 -28 Td\n", escape(title)));
    for line in lines {
        content.push_str(&format!("({}) Tj\n0 -16 Td\n", escape(line)));
    }
    content.push_str("ET\n");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_string(),
        format!("<< /Length {} >>\nstream\n{}endstream", content.len(), content),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_string(),
    ];
    let mut pdf: Vec<u8> = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, body) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{}\nendobj\n", i + 1, body).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        pdf.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '(' => "\\(".to_string(),
            ')' => "\\)".to_string(),
            '\\' => "\\\\".to_string(),
            c if (' '..='~').contains(&c) => c.to_string(),
            _ => "?".to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_reference_offsets_point_at_their_objects() {
        let pdf = one_page_pdf(
            "Consent (SRP)",
            &["Patient: Zoë O'Neil".into(), "back\\slash".into()],
        );
        // ASCII view with the same byte offsets (the binary comment line becomes '?').
        let text: String = pdf
            .iter()
            .map(|&b| if b.is_ascii() { b as char } else { '?' })
            .collect();
        assert!(pdf.starts_with(b"%PDF-1.4\n") && text.ends_with("%%EOF\n"));
        let startxref: usize = text
            .rsplit("startxref\n")
            .next()
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(pdf[startxref..].starts_with(b"xref\n0 6\n"));
        let entries: Vec<&str> = text[startxref..].lines().skip(3).take(5).collect();
        for (i, entry) in entries.iter().enumerate() {
            let offset: usize = entry[..10].parse().unwrap();
            assert!(
                pdf[offset..].starts_with(format!("{} 0 obj", i + 1).as_bytes()),
                "object {}",
                i + 1
            );
            assert_eq!(
                entry.len(),
                19,
                "xref entries are 20 bytes with the newline"
            );
        }
        let length: usize = text
            .split("/Length ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let stream_start = text.find("stream\n").unwrap() + "stream\n".len();
        assert_eq!(
            &text[stream_start + length..stream_start + length + "endstream".len()],
            "endstream"
        );
        assert!(
            text.contains("(Consent \\(SRP\\)) Tj") && text.contains("(Patient: Zo? O'Neil) Tj")
        );
    }
}

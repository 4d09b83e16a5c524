//! The report as one HTML page that needs nothing else: styles and script are
//! inline, and the page names no external resource at all (no `src`, no
//! `href`, no CSS `url()`), so it renders the same from a USB stick on a
//! machine without network. Every value is HTML-escaped.
//!
//! The table sorts by a click on a column header (again: the other way) and is
//! filtered by the object and verdict selects; rows carry `data-object` and
//! `data-verdict`, and filtered-out rows get the `hidden` attribute.

use std::collections::BTreeSet;
use std::io::Write;

use super::{summarise, DiffRow, ReportError, Verdict, COLUMNS};

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em; color: #1d1d1f; }
h1 { font-size: 1.4em; margin: 0 0 .3em; }
p.meta { color: #555; margin: 0 0 1em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #d0d0d7; padding: .25em .5em; vertical-align: top; text-align: left; }
th { background: #f2f2f7; }
table.diff th { cursor: pointer; user-select: none; white-space: nowrap; }
table.diff th[aria-sort="ascending"]::after { content: " \25B2"; }
table.diff th[aria-sort="descending"]::after { content: " \25BC"; }
table.diff td { max-width: 28em; overflow-wrap: anywhere; white-space: pre-wrap; }
tr.v-differs td, tr.v-missing-at-destination td { background: #fde8e8; }
tr.v-normalised td { background: #fff8e1; }
tr.v-quarantined td, tr.v-not-written td { background: #eef0ff; }
tr.v-not-sent td { background: #f4f4f4; }
.filters { margin: 1em 0; }
.filters label { margin-right: 1.5em; }
#shown { color: #555; }
"#;

const SCRIPT: &str = r#"
(function () {
  var table = document.getElementById('diff');
  var body = table.tBodies[0];
  var heads = table.tHead.rows[0].cells;
  var objectFilter = document.getElementById('filter-object');
  var verdictFilter = document.getElementById('filter-verdict');
  var shown = document.getElementById('shown');
  function sortBy(index) {
    var head = heads[index];
    var ascending = head.getAttribute('aria-sort') !== 'ascending';
    for (var i = 0; i < heads.length; i++) { heads[i].removeAttribute('aria-sort'); }
    head.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[index].textContent, y = b.cells[index].textContent;
      var order = x.localeCompare(y, undefined, { numeric: true, sensitivity: 'base' });
      return ascending ? order : -order;
    });
    for (var j = 0; j < rows.length; j++) { body.appendChild(rows[j]); }
  }
  function filter() {
    var object = objectFilter.value, verdict = verdictFilter.value, count = 0;
    var rows = Array.prototype.slice.call(body.rows);
    for (var i = 0; i < rows.length; i++) {
      var show = (object === '' || rows[i].getAttribute('data-object') === object) &&
                 (verdict === '' || rows[i].getAttribute('data-verdict') === verdict);
      rows[i].hidden = !show;
      if (show) { count++; }
    }
    shown.textContent = count + ' of ' + rows.length + ' lines shown';
  }
  for (var i = 0; i < heads.length; i++) {
    heads[i].addEventListener('click', sortBy.bind(null, i));
  }
  objectFilter.addEventListener('change', filter);
  verdictFilter.addEventListener('change', filter);
  filter();
})();
"#;

/// Writes the page. `title` and `meta` (run, destination, time) are shown on top.
pub fn write_html(
    rows: &[DiffRow],
    title: &str,
    meta: &str,
    mut out: impl Write,
) -> Result<(), ReportError> {
    let mut page = String::with_capacity(4096 + rows.len() * 400);
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    page.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    page.push_str(&format!("<title>{}</title>\n", escape(title)));
    page.push_str(&format!("<style>{STYLE}</style>\n</head>\n<body>\n"));
    page.push_str(&format!("<h1>{}</h1>\n", escape(title)));
    page.push_str(&format!("<p class=\"meta\">{}</p>\n", escape(meta)));

    // Summary per object.
    let summary = summarise(rows);
    page.push_str(
        "<table class=\"summary\" id=\"summary\">\n<thead><tr><th>object</th><th>records</th>",
    );
    for verdict in Verdict::ALL {
        page.push_str(&format!("<th>{}</th>", escape(verdict.as_str())));
    }
    page.push_str("</tr></thead>\n<tbody>\n");
    for object in &summary {
        page.push_str(&format!(
            "<tr><td>{}</td><td>{}</td>",
            escape(&object.object),
            object.records
        ));
        for verdict in Verdict::ALL {
            let n = object.verdicts.get(verdict.as_str()).copied().unwrap_or(0);
            page.push_str(&format!("<td>{n}</td>"));
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</tbody>\n</table>\n");

    // Filters.
    let objects: BTreeSet<&str> = rows.iter().map(|r| r.object.as_str()).collect();
    page.push_str("<div class=\"filters\">\n<label>object <select id=\"filter-object\"><option value=\"\">all</option>");
    for object in objects {
        let object = escape(object);
        page.push_str(&format!("<option value=\"{object}\">{object}</option>"));
    }
    page.push_str("</select></label>\n<label>verdict <select id=\"filter-verdict\"><option value=\"\">all</option>");
    for verdict in Verdict::ALL {
        let verdict = escape(verdict.as_str());
        page.push_str(&format!("<option value=\"{verdict}\">{verdict}</option>"));
    }
    page.push_str("</select></label>\n<span id=\"shown\"></span>\n</div>\n");

    // The lines.
    page.push_str("<table class=\"diff\" id=\"diff\">\n<thead><tr>");
    for column in COLUMNS {
        page.push_str(&format!("<th>{}</th>", escape(&column.replace('_', " "))));
    }
    page.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        let verdict = row.verdict.as_str();
        page.push_str(&format!(
            "<tr class=\"v-{}\" data-object=\"{}\" data-verdict=\"{}\">",
            verdict.replace(' ', "-"),
            escape(&row.object),
            escape(verdict)
        ));
        for value in row.cells() {
            page.push_str("<td>");
            page.push_str(&escape(value));
            page.push_str("</td>");
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</tbody>\n</table>\n");
    page.push_str(&format!("<script>{SCRIPT}</script>\n</body>\n</html>\n"));
    out.write_all(page.as_bytes())?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::row;
    use super::*;

    #[test]
    fn values_are_escaped_and_nothing_external_is_named() {
        let rows = vec![row(
            "contact",
            "1",
            Verdict::Differs,
            "<script>alert('x')</script> & \"q\"",
        )];
        let mut out = Vec::new();
        write_html(&rows, "Sample <run 3>", "meta", &mut out).unwrap();
        let page = String::from_utf8(out).unwrap();
        assert!(!page.contains("<script>alert"));
        assert!(
            page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;")
        );
        assert!(page.contains("Sample &lt;run 3&gt;"));
        for banned in [
            "src=", "href=", "url(", "http:", "https:", "@import", "//cdn",
        ] {
            assert!(!page.contains(banned), "the page contains {banned}");
        }
        assert_eq!(page.matches("<script>").count(), 1);
        assert!(page.contains("data-verdict=\"differs\""));
    }
}

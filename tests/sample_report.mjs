// The sample report in a browser without network: loads the HTML in jsdom with
// its scripts running and every resource load refused (and counted), then
// checks that nothing in the page names an external resource, that a click on
// a column header sorts the table (and a second click reverses it), and that
// the object and verdict filters show exactly the matching rows.
//
// usage: node sample_report.mjs <report.html>
// env:   CUTOVER_NODE_MODULES = directory holding jsdom (scripts/setup-tools)
// prints one JSON summary line; exit 0 = all checks passed, 1 = a check failed, 2 = setup error.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const modules = process.env.CUTOVER_NODE_MODULES;
if (!modules || !fs.existsSync(path.join(modules, 'jsdom'))) {
  console.error(`jsdom not found under ${modules}: run scripts/setup-tools`);
  process.exit(2);
}
const require = createRequire(path.join(modules, 'noop.js'));
const { JSDOM, ResourceLoader, VirtualConsole } = require('jsdom');

const [htmlPath] = process.argv.slice(2);
const html = fs.readFileSync(htmlPath, 'utf8');

const failures = [];
const check = (ok, what) => { if (!ok) failures.push(what); };

// Every load the page would make is refused and recorded.
const attempts = [];
class NoNetwork extends ResourceLoader {
  fetch(url) {
    attempts.push(url);
    return null;
  }
}
const errors = [];
const virtualConsole = new VirtualConsole();
virtualConsole.on('jsdomError', (e) => errors.push(String(e && e.message || e)));
virtualConsole.on('error', (e) => errors.push(String(e)));

const dom = new JSDOM(html, {
  runScripts: 'dangerously',
  resources: new NoNetwork(),
  pretendToBeVisual: true,
  virtualConsole,
  // An opaque origin: nothing could be fetched relative to it either.
  url: 'about:blank',
});
const { window } = dom;
const doc = window.document;

// --- no external reference of any kind -------------------------------------
const urlAttributes = ['src', 'href', 'srcset', 'action', 'formaction', 'poster', 'data', 'background', 'xlink:href', 'ping', 'manifest', 'cite', 'longdesc'];
let referencing = [];
for (const el of doc.querySelectorAll('*')) {
  for (const name of urlAttributes) {
    if (el.hasAttribute(name)) referencing.push(`${el.tagName.toLowerCase()}[${name}]`);
  }
  const style = el.getAttribute('style') || '';
  if (/url\s*\(|@import/i.test(style)) referencing.push(`${el.tagName.toLowerCase()}[style]`);
}
for (const style of doc.querySelectorAll('style')) {
  if (/url\s*\(|@import/i.test(style.textContent)) referencing.push('style url()/@import');
}
for (const link of doc.querySelectorAll('link, iframe, img, object, embed, video, audio, source, base')) {
  referencing.push(link.tagName.toLowerCase());
}
for (const script of doc.querySelectorAll('script')) {
  if (script.hasAttribute('src')) referencing.push('script[src]');
  if (/\bfetch\s*\(|XMLHttpRequest|import\s*\(|WebSocket|EventSource|sendBeacon/.test(script.textContent)) {
    referencing.push('script that talks to the network');
  }
}
check(referencing.length === 0, `external references: ${referencing.join(', ')}`);
check(attempts.length === 0, `resource loads attempted: ${attempts.join(', ')}`);
check(errors.length === 0, `script errors: ${errors.join(' | ')}`);

// --- the table --------------------------------------------------------------
const table = doc.getElementById('diff');
check(!!table, 'no table#diff');
const heads = Array.from(table.tHead.rows[0].cells).map((c) => c.textContent.trim());
const column = (name) => heads.indexOf(name);
const rows = () => Array.from(table.tBodies[0].rows);
const visible = () => rows().filter((r) => !r.hidden);
const texts = (index) => rows().map((r) => r.cells[index].textContent);
const total = rows().length;
check(total > 0, 'the table has no rows');

// Sorting: a click sorts by the column, a second click reverses.
const cmp = (a, b) => a.localeCompare(b, undefined, { numeric: true, sensitivity: 'base' });
let sortColumn = null;
for (const name of ['key', 'field', 'object', 'verdict']) {
  const values = texts(column(name));
  if (new Set(values).size > 1) { sortColumn = name; break; }
}
let sorted = {};
if (sortColumn) {
  const index = column(sortColumn);
  const before = texts(index);
  const clickable = table.tHead.rows[0].cells[index];
  clickable.dispatchEvent(new window.MouseEvent('click', { bubbles: true }));
  const ascending = texts(index);
  const expected = [...before].sort(cmp);
  check(JSON.stringify(ascending) === JSON.stringify(expected), `a click on "${sortColumn}" did not sort ascending`);
  check(clickable.getAttribute('aria-sort') === 'ascending', 'aria-sort is not ascending after one click');
  clickable.dispatchEvent(new window.MouseEvent('click', { bubbles: true }));
  const descending = texts(index);
  check(JSON.stringify(descending) === JSON.stringify([...expected].reverse()) ||
        descending.every((v, i) => i === 0 || cmp(descending[i - 1], v) >= 0),
        `a second click on "${sortColumn}" did not sort descending`);
  check(JSON.stringify(ascending) !== JSON.stringify(descending), 'the order did not change between clicks');
  check(rows().length === total, 'sorting lost rows');
  sorted = { column: sortColumn, first_ascending: ascending[0], first_descending: descending[0] };
} else {
  failures.push('no column with two distinct values to sort by');
}

// Filters.
const setFilter = (id, value) => {
  const select = doc.getElementById(id);
  select.value = value;
  select.dispatchEvent(new window.Event('change', { bubbles: true }));
};
const objectOptions = Array.from(doc.getElementById('filter-object').options).map((o) => o.value).filter((v) => v);
const verdictOptions = Array.from(doc.getElementById('filter-verdict').options).map((o) => o.value).filter((v) => v);
check(visible().length === total, 'rows hidden before any filter');
const filtered = {};
const all = rows();
for (const object of objectOptions) {
  setFilter('filter-object', object);
  const shown = visible();
  const want = all.filter((r) => r.getAttribute('data-object') === object).length;
  check(shown.length === want && want > 0, `object filter ${object}: ${shown.length} shown, ${want} rows`);
  check(shown.every((r) => r.cells[column('object')].textContent === object), `object filter ${object} shows other objects`);
  filtered[object] = shown.length;
}
setFilter('filter-object', '');
check(visible().length === total, 'clearing the object filter does not show every row');
const byVerdict = {};
for (const verdict of verdictOptions) {
  setFilter('filter-verdict', verdict);
  const shown = visible();
  const want = all.filter((r) => r.getAttribute('data-verdict') === verdict).length;
  check(shown.length === want, `verdict filter ${verdict}: ${shown.length} shown, ${want} rows`);
  check(shown.every((r) => r.cells[column('verdict')].textContent === verdict), `verdict filter ${verdict} shows other verdicts`);
  byVerdict[verdict] = shown.length;
}
// Both at once.
if (objectOptions.length > 0) {
  const object = objectOptions[0];
  const verdict = rows().find((r) => r.getAttribute('data-object') === object).getAttribute('data-verdict');
  setFilter('filter-object', object);
  setFilter('filter-verdict', verdict);
  const want = rows().filter((r) => r.getAttribute('data-object') === object && r.getAttribute('data-verdict') === verdict).length;
  check(visible().length === want, `object ${object} and verdict ${verdict}: ${visible().length} shown, ${want} rows`);
  check(doc.getElementById('shown').textContent.startsWith(`${want} of ${total}`), 'the shown count is wrong');
}

console.log(JSON.stringify({ ok: failures.length === 0, failures, rows: total, sorted, objects: filtered, verdicts: byVerdict, attempts: attempts.length }));
window.close();
process.exit(failures.length === 0 ? 0 : 1);

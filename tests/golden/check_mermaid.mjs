import { JSDOM } from 'jsdom';
import fs from 'fs';
const dom = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = dom.window; globalThis.document = dom.window.document;
globalThis.DOMParser = dom.window.DOMParser;
const mermaid = (await import('mermaid')).default;
mermaid.initialize({startOnLoad:false});
let bad = 0;
for (const f of process.argv.slice(2)) {
  const text = fs.readFileSync(f, 'utf8');
  try { const r = await mermaid.parse(text); console.log('ok', f, r.diagramType); }
  catch (e) { bad++; console.log('FAIL', f, String(e.message || e).slice(0, 400)); }
}
process.exit(bad ? 1 : 0);

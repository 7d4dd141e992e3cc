// Measure the page on a bundle in headless Chromium: load time, WASM memory
// after loading (KV cache allocated) and after generating, decode tok/s.
//   node web/measure.mjs BUNDLE_DIR [--ctx N] [-n TOKENS] [--prompt TEXT]
// Needs `make wasm` (dist/web) and playwright-core in build/web/npm
// (`make test-web` installs it). Prints one JSON line. See docs/WEB.md.
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const NPM = path.resolve(process.env.WEB_NPM || 'build/web/npm');
const { chromium } = createRequire(path.join(NPM, 'package.json'))('playwright-core');
const DIST = process.env.WEB_DIST || 'dist/web';

const argv = process.argv.slice(2);
const bundle = argv[0];
const opt = (k, d) => { const i = argv.indexOf(k); return i >= 0 ? argv[i + 1] : d; };
const ctxLen = parseInt(opt('--ctx', '2048'), 10);
const nTok = parseInt(opt('-n', '32'), 10);
const prompt = opt('--prompt', 'Once upon a time');
if (!bundle || !fs.existsSync(path.join(bundle, 'manifest.json'))) {
  console.error('usage: node web/measure.mjs BUNDLE_DIR [--ctx N] [-n TOKENS] [--prompt TEXT]');
  process.exit(2);
}

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css',
  '.wasm': 'application/wasm', '.json': 'application/json' };
const server = http.createServer((req, res) => {
  const p = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  const root = p.startsWith('/bundle/') ? bundle : DIST;
  const file = path.join(root, p.startsWith('/bundle/') ? p.slice(8) : (p === '/' ? 'index.html' : p));
  if (!path.resolve(file).startsWith(path.resolve(root)) || !fs.existsSync(file) ||
      fs.statSync(file).isDirectory()) { res.writeHead(404); res.end(); return; }
  res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream' });
  fs.createReadStream(file).pipe(res);
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lmpack-measure-'));
const ctx = await chromium.launchPersistentContext(dir, { executablePath: '/usr/bin/chromium',
  headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
let out;
try {
  const page = ctx.pages()[0] || await ctx.newPage();
  await page.goto(`http://127.0.0.1:${server.address().port}/?bundle=/bundle/&ctx=${ctxLen}`);
  await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.state),
    null, { timeout: 600000 });
  const s = await page.evaluate(() => ({ state: document.body.dataset.state,
    stats: window.lmpackStats, mem: window.lmpackDebug.memory(), used: window.lmpackDebug.heapUsed() }));
  out = { bundle, ctx: ctxLen, state: s.state, error: s.stats.error || undefined,
    bundle_bytes: s.stats.bytesTotal, load_s: +(s.stats.loadMs / 1000).toFixed(2),
    wasm_memory_loaded: s.mem, malloc_in_use_loaded: s.used };
  if (s.state === 'ready') {
    await page.fill('#prompt', prompt);
    await page.fill('#temperature', '0');
    await page.fill('#max-tokens', String(nTok));
    await page.click('#generate');
    await page.waitForFunction(() => window.lmpackLast || document.body.dataset.state === 'error',
      null, { timeout: 600000 });
    const g = await page.evaluate(() => ({ last: window.lmpackLast,
      toks: document.getElementById('toks').textContent, mem: window.lmpackDebug.memory() }));
    Object.assign(out, { tokens: g.last && g.last.tokens, decode_tok_s: parseFloat(g.toks),
      wasm_memory_after_generate: g.mem });
  }
} finally {
  await ctx.close();
  server.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
console.log(JSON.stringify(out));

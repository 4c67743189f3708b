#!/usr/bin/env node
// Development helper: serves web/ and forwards everything else to a gateway, for gateways that do
// not serve the page or `/auth/dev-login` themselves yet.
//
//   node dev-proxy.mjs                       # starts `agentgate serve` itself (temp data dir)
//   AGENTGATE_UPSTREAM=http://127.0.0.1:4444 AGENTGATE_DATA_DIR=./data node dev-proxy.mjs
//
// Env: PORT (default 4480, 0 = any), AGENTGATE_UPSTREAM (a running gateway; otherwise one is
// started from AGENTGATE_BIN, default the newer of target/release and target/debug agentgate),
// AGENTGATE_DATA_DIR (the gateway's data dir, so `agentgate token` can mint dev sign-in tokens).
//
// The proxy answers `GET/POST /auth/dev-login` itself when it can mint tokens and the gateway
// has no such route. Download links point at the gateway's public URL; a gateway started here
// gets the proxy's URL as its public URL so they stay same-origin.

import { spawn, execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../..');
const WEB_DIR = path.join(repoRoot, 'web');

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
};

export const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; " +
  "connect-src 'self' https:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/** The newest of target/release/agentgate and target/debug/agentgate, or null. */
export function defaultBinary() {
  const found = ['target/release/agentgate', 'target/debug/agentgate']
    .map((p) => path.join(repoRoot, p))
    .filter((p) => existsSync(p))
    .map((p) => ({ p, mtime: statSync(p).mtimeMs }))
    .sort((a, b) => b.mtime - a.mtime);
  return found[0]?.p || null;
}

/** Starts `agentgate serve` on a free port; resolves to {url, token, dataDir, child, stop()}. */
export function startGateway({ bin = defaultBinary(), dataDir, env = {}, log = false } = {}) {
  if (!bin) throw new Error('no agentgate binary found (set AGENTGATE_BIN)');
  const ownDir = !dataDir;
  dataDir ||= mkdtempSync(path.join(os.tmpdir(), 'agentgate-web-'));
  const child = spawn(bin, ['serve', '--bind', '127.0.0.1:0', '--data-dir', dataDir], {
    env: { ...process.env, AGENTGATE__LOG__LEVEL: process.env.AGENTGATE__LOG__LEVEL || 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    let settled = false;
    const timer = setTimeout(() => fail(new Error(`gateway did not start in 30 s:\n${out}`)), 30_000);
    const fail = (e) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill('SIGTERM');
      reject(e);
    };
    const onData = (chunk) => {
      const text = chunk.toString();
      out += text;
      if (log) process.stderr.write(text);
      const url = out.match(/listening on (http:\/\/\S+)/)?.[1];
      const token = out.match(/dev token[^:]*:\s*(\S+)/)?.[1];
      if (url && token && !settled) {
        settled = true;
        clearTimeout(timer);
        const stop = () =>
          new Promise((done) => {
            if (child.exitCode !== null) return done();
            child.once('exit', () => done());
            child.kill('SIGTERM');
            setTimeout(() => child.kill('SIGKILL'), 5000).unref();
          }).then(() => {
            if (ownDir) rmSync(dataDir, { recursive: true, force: true });
          });
        resolve({ url: url.replace(/\/$/, ''), token, dataDir, child, stop, bin });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => fail(new Error(`gateway exited with ${code}:\n${out}`)));
  });
}

function mintToken(bin, dataDir, user) {
  return new Promise((resolve, reject) => {
    execFile(bin, ['token', '--user', user, '--data-dir', dataDir], { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(stderr || err.message));
      else resolve(stdout.trim());
    });
  });
}

async function serveStatic(req, res) {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  const url = new URL(req.url, 'http://x');
  const name = url.pathname === '/' ? 'index.html' : url.pathname.slice(1);
  if (!/^[A-Za-z0-9_-]+\.(html|js|css|svg|png|ico)$/.test(name)) return false;
  const file = path.join(WEB_DIR, name);
  try {
    if (!(await stat(file)).isFile()) return false;
  } catch {
    return false;
  }
  const body = await readFile(file);
  const headers = {
    'Content-Type': TYPES[path.extname(name)] || 'application/octet-stream',
    'Cache-Control': 'no-cache',
    'X-Content-Type-Options': 'nosniff',
  };
  // The policy the page is written to work under (no inline script or style).
  if (name.endsWith('.html')) headers['Content-Security-Policy'] = CSP;
  res.writeHead(200, headers);
  res.end(req.method === 'HEAD' ? undefined : body);
  return true;
}

function forward(req, res, upstream) {
  const target = new URL(req.url, upstream);
  const headers = { ...req.headers, host: target.host };
  const out = http.request(target, { method: req.method, headers }, (up) => {
    res.writeHead(up.statusCode, up.statusMessage, up.headers);
    res.flushHeaders();
    up.pipe(res);
    up.on('error', () => res.destroy());
  });
  out.on('error', (e) => {
    if (!res.headersSent) {
      res.writeHead(502, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ code: 'bad_gateway', message: `dev proxy: ${e.message}` }));
    } else {
      res.destroy();
    }
  });
  // A client that goes away ends the upstream request too, as a real connection drop would.
  res.on('close', () => {
    if (!res.writableFinished) out.destroy();
  });
  req.pipe(out);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.on('data', (c) => (data += c));
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}

function json(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
  res.end(JSON.stringify(body));
}

/**
 * Starts the proxy. With no `upstream`, starts a gateway too (its public URL = the proxy's).
 * Resolves to {url, upstream, token, stop()}.
 */
export async function startDevProxy({ port = 0, upstream, bin, dataDir, log = false } = {}) {
  let gateway = null;
  let mint = null;
  const server = http.createServer(async (req, res) => {
    try {
      const { pathname } = new URL(req.url, 'http://x');
      if (pathname === '/auth/dev-login' && mint) {
        if (req.method === 'GET') return json(res, 200, { enabled: true });
        if (req.method === 'POST') {
          let user = '';
          try {
            user = String(JSON.parse((await readBody(req)) || '{}').user || '').trim();
          } catch {
            return json(res, 400, { code: 'invalid_body', message: 'expected {"user": "..."}' });
          }
          if (!/^[A-Za-z0-9._@-]{1,64}$/.test(user)) {
            return json(res, 400, { code: 'invalid_user', message: 'user must be 1-64 letters, digits, . _ @ -' });
          }
          return json(res, 200, { token: await mint(user), user });
        }
      }
      if (await serveStatic(req, res)) return;
      forward(req, res, upstream);
    } catch (e) {
      if (!res.headersSent) json(res, 500, { code: 'dev_proxy_error', message: e.message });
      else res.destroy();
    }
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  let token = null;
  if (!upstream) {
    gateway = await startGateway({ bin, dataDir, log, env: { AGENTGATE__SERVER__PUBLIC_URL: url } });
    upstream = gateway.url;
    token = gateway.token;
    bin = gateway.bin;
    dataDir = gateway.dataDir;
  }
  if (bin && dataDir) mint = (user) => mintToken(bin, dataDir, user);
  const stop = async () => {
    server.closeAllConnections?.();
    await new Promise((resolve) => server.close(() => resolve()));
    await gateway?.stop();
  };
  return { url, upstream, token, stop };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const proxy = await startDevProxy({
    port: Number(process.env.PORT ?? 4480),
    upstream: process.env.AGENTGATE_UPSTREAM || undefined,
    bin: process.env.AGENTGATE_BIN || defaultBinary(),
    dataDir: process.env.AGENTGATE_DATA_DIR || undefined,
    log: true,
  });
  console.log(`dev proxy on ${proxy.url} → gateway ${proxy.upstream}`);
  if (proxy.token) console.log(`dev token: ${proxy.token}`);
  const shutdown = async () => {
    await proxy.stop();
    process.exit(0);
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}

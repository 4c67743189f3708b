// Server-Sent Events over fetch (EventSource cannot POST or send headers), and a run connection
// that survives dropped streams: it resumes with `Last-Event-ID` and never shows an event twice.

import { rawFetch, errorFrom, ApiError } from './api.js';
import { sleep } from './dom.js';

/**
 * An incremental parser for the text/event-stream format (WHATWG HTML §9.2.6): LF, CRLF or CR line
 * ends, comments, multi-line data, events split anywhere across chunks.
 */
export class SSEParser {
  constructor(onEvent, onComment = () => {}) {
    this.onEvent = onEvent;
    this.onComment = onComment;
    this.buffer = '';
    this.first = true;
    this.reset();
  }

  reset() {
    this.event = '';
    this.data = [];
    this.id = null;
    this.hasData = false;
  }

  feed(text) {
    if (this.first && text) {
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      this.first = false;
    }
    this.buffer += text;
    let start = 0;
    for (;;) {
      const cr = this.buffer.indexOf('\r', start);
      const lf = this.buffer.indexOf('\n', start);
      if (cr < 0 && lf < 0) break;
      let end;
      let next;
      if (cr >= 0 && (lf < 0 || cr < lf)) {
        // A CR at the very end may be the first half of a CRLF: wait for more.
        if (cr === this.buffer.length - 1) break;
        end = cr;
        next = this.buffer[cr + 1] === '\n' ? cr + 2 : cr + 1;
      } else {
        end = lf;
        next = lf + 1;
      }
      this.line(this.buffer.slice(start, end));
      start = next;
    }
    this.buffer = this.buffer.slice(start);
  }

  /** The stream ended: a lone trailing CR still ends its line; an unterminated event is dropped. */
  end() {
    if (this.buffer.endsWith('\r')) {
      this.line(this.buffer.slice(0, -1));
    }
    this.buffer = '';
    this.reset();
  }

  line(line) {
    if (line === '') {
      if (this.hasData) {
        this.onEvent({ event: this.event || 'message', data: this.data.join('\n'), id: this.id });
      }
      this.reset();
      return;
    }
    if (line[0] === ':') {
      this.onComment(line.slice(1).trim());
      return;
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (field === 'data') {
      this.data.push(value);
      this.hasData = true;
    } else if (field === 'event') {
      this.event = value;
    } else if (field === 'id') {
      if (!value.includes('\0')) this.id = value;
    }
    // `retry` and unknown fields are ignored: reconnection timing is ours.
  }
}

/**
 * Reads a fetch Response body as SSE, calling onEvent for each event, until it ends.
 * onChunk is called for every chunk received (keep-alives included).
 */
export async function readEventStream(res, onEvent, { onComment, onChunk } = {}) {
  const parser = new SSEParser(onEvent, onComment);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      onChunk?.();
      parser.feed(decoder.decode(value, { stream: true }));
    }
    parser.feed(decoder.decode());
    parser.end();
  } finally {
    reader.releaseLock?.();
  }
}

class StreamDropped extends Error {
  constructor(reason = 'the stream was dropped') {
    super(reason);
    this.name = 'StreamDropped';
  }
}

/** The gateway sends a keep-alive every ~15 s; this much silence means a dead connection. */
const STALL_MS = 45_000;

/** Reconnections in a row without a new event before giving up (about 8 minutes). */
const MAX_ATTEMPTS = 60;

/** 0.4 s, 0.8 s, 1.6 s, ... up to 8 s, with some jitter. */
function backoff(attempt) {
  const base = Math.min(8000, 400 * 2 ** Math.max(0, attempt - 1));
  return base * (0.8 + Math.random() * 0.4);
}

/** Resolves after `ms`, or earlier when the browser comes back online or the signal aborts. */
function waitForRetry(ms, signal) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      window.removeEventListener('online', done);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    window.addEventListener('online', done);
    signal?.addEventListener('abort', done);
  });
}

/**
 * One run as seen by this page. Feed it a POST (`send`) or an existing run id (`attach`); it calls
 *   onEvent({event, seq, data})   once per event, in seq order, never twice,
 *   onStart({runId, appId})       when the run id is known,
 *   onState({state, attempt?, error?}) with state 'connecting' | 'streaming' | 'reconnecting' |
 *                                      'done' | 'failed' | 'closed'.
 * After the first response it reconnects by itself, with backoff, until `done` arrives.
 */
export class RunConnection {
  constructor({ onEvent, onStart = () => {}, onState = () => {} }) {
    this.onEvent = onEvent;
    this.onStart = onStart;
    this.onState = onState;
    this.runId = null;
    this.appId = null;
    this.lastSeq = 0;
    this.done = false;
    this.closed = false;
    this.controller = null;
    this.gapRetriedAt = -1;
    this.lifetime = new AbortController();
  }

  /**
   * Starts a run with POST /message. Network failures before any answer are retried with the same
   * Idempotency-Key (the gateway attaches the retry to the same run). Errors answered before the
   * stream (400, 404, 409, 429, ...) reject with an ApiError.
   */
  async send(body, idempotencyKey) {
    this.onState({ state: 'connecting' });
    let res;
    for (let attempt = 0; ; attempt++) {
      this.controller = new AbortController();
      try {
        res = await rawFetch('/message', {
          method: 'POST',
          body,
          headers: { 'Idempotency-Key': idempotencyKey, Accept: 'text/event-stream' },
          signal: this.controller.signal,
        });
        break;
      } catch (e) {
        if (this.closed) return this.finish('closed');
        if (!(e instanceof ApiError) && !(e instanceof StreamDropped) && e?.name !== 'AbortError') {
          throw e;
        }
        if (attempt >= 6) throw new ApiError(0, 'network_error', 'Cannot reach the server.');
        this.onState({ state: 'reconnecting', attempt: attempt + 1 });
        await waitForRetry(backoff(attempt + 1), this.lifetime.signal);
        if (this.closed) return this.finish('closed');
      }
    }
    if (!res.ok) {
      this.onState({ state: 'failed' });
      throw await errorFrom(res);
    }
    this.adopt(res);
    try {
      await this.consume(res);
    } catch {
      // The stream broke before `done`: follow() resumes it from the last seq seen.
    }
    return this.follow();
  }

  /** Follows an existing run from just after `lastSeq` (0 = from the start). */
  async attach(runId, lastSeq = 0) {
    this.runId = runId;
    this.lastSeq = Math.max(this.lastSeq, lastSeq);
    this.onStart({ runId: this.runId, appId: this.appId });
    return this.follow(true);
  }

  adopt(res) {
    this.runId = res.headers.get('x-run-id') || this.runId;
    this.appId = res.headers.get('x-app-id') || this.appId;
    this.onStart({ runId: this.runId, appId: this.appId });
  }

  /** Reconnects with `GET /runs/:id/events` + `Last-Event-ID` until `done`. */
  async follow(immediate = false) {
    let attempt = immediate ? 0 : 1;
    while (!this.done && !this.closed) {
      if (!this.runId) {
        return this.finish('failed', new ApiError(0, 'no_run_id', 'The server did not name the run.'));
      }
      if (attempt > MAX_ATTEMPTS) {
        return this.finish('failed', new ApiError(0, 'network_error', 'The server stopped answering.'));
      }
      if (attempt > 0) {
        this.onState({ state: 'reconnecting', attempt });
        await waitForRetry(backoff(attempt), this.lifetime.signal);
        if (this.closed) break;
      }
      this.controller = new AbortController();
      const before = this.lastSeq;
      try {
        const res = await rawFetch(`/runs/${encodeURIComponent(this.runId)}/events`, {
          headers: { 'Last-Event-ID': String(this.lastSeq), Accept: 'text/event-stream' },
          signal: this.controller.signal,
        });
        if (!res.ok) {
          const error = await errorFrom(res);
          // 5xx and 429 are worth another try; anything else will not get better.
          if (res.status < 500 && res.status !== 429) return this.finish('failed', error);
        } else {
          await this.consume(res);
        }
      } catch (e) {
        if (this.closed) break;
        // A broken body is a TypeError ("network error"); all of these just mean: try again.
        console.debug('run stream interrupted:', e?.message || e);
      }
      attempt = this.lastSeq > before ? 1 : attempt + 1;
    }
    return this.finish(this.done ? 'done' : 'closed');
  }

  finish(state, error) {
    this.controller = null;
    this.onState({ state, error });
    return { state, error, runId: this.runId, appId: this.appId };
  }

  /** Reads one response body; returns when it ends, throws when it breaks. */
  async consume(res) {
    this.onState({ state: 'streaming' });
    const controller = this.controller;
    let watchdog;
    const feed = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => controller?.abort(new StreamDropped('the stream went silent')), STALL_MS);
    };
    feed();
    try {
      await readEventStream(res, (raw) => this.handle(raw, controller), { onChunk: feed });
    } catch (e) {
      if (this.done) return; // we stopped reading after `done`
      if (controller?.signal.aborted && controller.signal.reason instanceof StreamDropped) {
        throw controller.signal.reason;
      }
      throw e;
    } finally {
      clearTimeout(watchdog);
    }
  }

  handle(raw, controller) {
    if (this.done) return;
    const seq = raw.id !== null && /^\d+$/.test(raw.id) ? Number(raw.id) : null;
    if (seq !== null) {
      if (seq <= this.lastSeq) return; // already shown
      if (seq > this.lastSeq + 1 && this.gapRetriedAt !== this.lastSeq) {
        // Something between lastSeq and seq never reached us: read it again from the log.
        this.gapRetriedAt = this.lastSeq;
        controller?.abort(new StreamDropped('gap in event ids'));
        return;
      }
      this.lastSeq = seq;
    }
    let data;
    try {
      data = JSON.parse(raw.data);
    } catch {
      data = { text: raw.data };
    }
    if (raw.event === 'done') this.done = true;
    try {
      this.onEvent({ event: raw.event, seq, data });
    } catch (e) {
      console.error('rendering an event failed', e);
    }
    if (this.done) controller?.abort(new StreamDropped('done'));
  }

  /** Simulates a network drop (test hook): the current body breaks and the run resumes. */
  drop() {
    if (!this.controller || this.done || this.closed) return false;
    this.controller.abort(new StreamDropped('dropped on purpose'));
    return true;
  }

  /** Stops following the run (the run itself goes on on the server). */
  close() {
    if (this.closed) return;
    this.closed = true;
    this.lifetime.abort();
    this.controller?.abort(new StreamDropped('closed'));
  }
}

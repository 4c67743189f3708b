// A deployment's log under the app header: the stored lines at once, then the live tail while
// the deployment runs (SSE, resumed with Last-Event-ID after a drop, never a line twice). When
// the deployment failed, the line that says why is highlighted.

import { rawFetch, errorFrom } from './api.js';
import { readEventStream } from './sse.js';
import { h, mount, sleep } from './dom.js';

/** Reconnections in a row without a new line before the view stops following. */
const MAX_ATTEMPTS = 8;

export class DeploymentLogView {
  constructor(deploymentId) {
    this.deploymentId = deploymentId;
    this.lastSeq = 0;
    this.closed = false;
    this.controller = null;
    this.list = h('ol.deploy-log-lines', { dataset: { testid: 'deploy-log-lines' } });
    this.state = h('span.muted.small', { dataset: { testid: 'deploy-log-state' } }, 'loading…');
    this.el = h(
      'details.deploy-log',
      { dataset: { testid: 'deploy-log', deploymentId, status: 'loading' } },
      h('summary', null, 'Deployment log ', this.state),
      this.list,
    );
    this.follow();
  }

  /** Reads the log: JSON once for a finished deployment, SSE until `end` for a running one. */
  async follow() {
    let attempt = 0;
    while (!this.closed && attempt <= MAX_ATTEMPTS) {
      if (attempt > 0) await sleep(Math.min(8000, 500 * 2 ** attempt));
      if (this.closed) return;
      this.controller = new AbortController();
      const before = this.lastSeq;
      try {
        const res = await rawFetch(`/deployments/${encodeURIComponent(this.deploymentId)}/logs`, {
          headers: this.lastSeq ? { 'Last-Event-ID': String(this.lastSeq) } : {},
          signal: this.controller.signal,
        });
        if (res.status === 204) return this.finish(this.el.dataset.status);
        if (!res.ok) {
          const error = await errorFrom(res);
          return this.finish('unavailable', error.message);
        }
        if ((res.headers.get('content-type') || '').startsWith('application/json')) {
          const body = await res.json();
          for (const line of body.lines) this.add(line);
          return this.finish(body.status, null, body.failedLine);
        }
        this.setState('live');
        let ended = false;
        await readEventStream(res, (event) => {
          if (event.event === 'line') this.add(JSON.parse(event.data));
          else if (event.event === 'note') this.add({ seq: 0, stream: 'note', text: JSON.parse(event.data).text });
          else if (event.event === 'end') {
            const end = JSON.parse(event.data);
            ended = true;
            this.finish(end.status, null, end.failedLine);
          }
        });
        if (ended) return;
      } catch (e) {
        if (this.closed) return;
        console.debug('deployment log interrupted:', e?.message || e);
      }
      attempt = this.lastSeq > before ? 1 : attempt + 1;
      this.setState('reconnecting');
    }
    if (!this.closed) this.finish('unavailable', 'the log stopped answering');
  }

  add(line) {
    if (line.seq > 0) {
      if (line.seq <= this.lastSeq) return; // already shown
      this.lastSeq = line.seq;
    }
    const at = line.at ? new Date(line.at).toLocaleTimeString() : '';
    this.list.append(
      h(
        'li.deploy-log-line',
        { class: `stream-${line.stream}`, dataset: { testid: 'deploy-log-line', seq: line.seq, stream: line.stream } },
        h('time.muted', null, at),
        h('span.stream', null, line.stream),
        h('span.text', null, line.text),
      ),
    );
    if (this.el.open) this.list.lastElementChild.scrollIntoView({ block: 'nearest' });
  }

  setState(status, detail) {
    this.el.dataset.status = status;
    this.state.textContent = detail ? `${status}: ${detail}` : status;
  }

  finish(status, detail = null, failedLine = null) {
    this.setState(status || 'ended', detail);
    if (failedLine !== null && failedLine !== undefined) {
      const line = this.list.querySelector(`[data-seq="${failedLine}"]`);
      if (line) {
        line.classList.add('failed');
        line.dataset.failed = 'true';
        this.el.open = true;
        line.scrollIntoView({ block: 'nearest' });
      }
    }
    if (!this.list.children.length) mount(this.list, h('li.muted', null, 'No log lines.'));
  }

  close() {
    this.closed = true;
    this.controller?.abort();
  }
}

// The conversation with one app: its history, live runs, and the prompt box.

import { ApiError, cancelRun, getHistory } from './api.js';
import { h, mount, resetPhrase, toast, uuid } from './dom.js';
import { fromHistoryItem, fromStreamEvent, renderItem } from './events.js';
import { RunConnection } from './sse.js';

const ACTIVE_RUNS_KEY = 'agentgate.activeRuns';

/** Runs this browser was following when the page went away, by app id, to re-attach on return. */
const activeRuns = {
  all() {
    try {
      return JSON.parse(localStorage.getItem(ACTIVE_RUNS_KEY) || '{}') || {};
    } catch {
      return {};
    }
  },
  get(appId) {
    return this.all()[appId] || null;
  },
  set(appId, runId) {
    const all = this.all();
    all[appId] = runId;
    localStorage.setItem(ACTIVE_RUNS_KEY, JSON.stringify(all));
  },
  clear(appId, runId) {
    const all = this.all();
    if (all[appId] && (!runId || all[appId] === runId)) {
      delete all[appId];
      localStorage.setItem(ACTIVE_RUNS_KEY, JSON.stringify(all));
    }
  },
};

const SUGGESTIONS = ['a todo list', 'a pomodoro timer', 'a notes app with search', 'a click counter'];

/**
 * ctx: {
 *   limits(): current limit or null,
 *   testSettings(): extra `settings` for POST /message (test hook) or undefined,
 *   onAppCreated(appId, view), onAppChanged(appId, info), onRunState(appId, running),
 *   openFiles(appId, version), hasApps(): bool
 * }
 */
export class ChatView {
  constructor(appId, ctx) {
    this.appId = appId;
    this.ctx = ctx;
    this.connection = null;
    this.runId = null;
    this.running = false;
    this.cancelRequested = false;
    this.loaded = false;
    this.runOutcome = new WeakMap();

    this.timeline = h('div.timeline', { dataset: { testid: 'timeline' } });
    this.scroller = h('div.scroller', null, this.timeline);
    // Follow new events while the reader is at the bottom; stop when they scroll up to read.
    this.stick = true;
    this.scroller.addEventListener('scroll', () => {
      this.stick = this.nearBottom();
    });
    this.prompt = h('textarea.prompt', {
      rows: 3,
      placeholder: appId
        ? 'Ask for a change, e.g. "add a dark mode"…'
        : 'Describe the app you want, e.g. "build a todo list"…',
      dataset: { testid: 'prompt' },
      'aria-label': 'Message',
      onkeydown: (e) => this.onKey(e),
      oninput: () => this.updateComposer(),
    });
    this.sendBtn = h(
      'button.btn.primary.send',
      { type: 'button', dataset: { testid: 'send' }, onclick: () => this.submit() },
      'Send',
    );
    this.statusText = h('span.status-text', null, 'Running…');
    this.cancelBtn = h(
      'button.btn.danger.small',
      { type: 'button', dataset: { testid: 'cancel' }, onclick: () => this.cancel() },
      'Cancel',
    );
    this.runningBar = h(
      'div.running-bar',
      { dataset: { testid: 'running' }, hidden: true, role: 'status' },
      h('span.spinner', { 'aria-hidden': 'true' }),
      this.statusText,
      this.cancelBtn,
    );
    this.composerNote = h('div.composer-note', { dataset: { testid: 'composer-note' } });
    this.el = h(
      'div.chat',
      { dataset: { testid: 'chat', appId: appId || 'new' } },
      this.scroller,
      h(
        'div.composer',
        null,
        this.runningBar,
        h('div.composer-row', null, this.prompt, this.sendBtn),
        h(
          'div.composer-foot',
          null,
          h('span.kbd-hint', null, 'Enter to send · Shift+Enter for a new line'),
          this.composerNote,
        ),
      ),
    );
    if (!appId) this.showIntro();
    this.updateComposer();
  }

  // ---- loading ----------------------------------------------------------------------------

  async load() {
    if (!this.appId || this.loaded) return;
    this.loaded = true;
    mount(this.timeline, h('div.state.loading', { dataset: { testid: 'loading' } }, h('span.spinner'), 'Loading the conversation…'));
    let history;
    try {
      history = await getHistory(this.appId);
    } catch (e) {
      this.loaded = false;
      mount(
        this.timeline,
        h(
          'div.state.error',
          { role: 'alert' },
          e.status === 404 ? 'This app does not exist any more.' : `Could not load the conversation: ${e.message}`,
          e.status === 404 ? null : h('button.btn.small', { type: 'button', onclick: () => this.load() }, 'Try again'),
        ),
      );
      return;
    }
    this.timeline.replaceChildren();
    const active = activeRuns.get(this.appId);
    for (const item of history || []) {
      // The run we re-attach to is replayed from its log; keep only the user's message of it.
      if (active && item.runId === active && item.kind !== 'user') continue;
      const section = item.runId ? this.section(item.runId) : this.section(`history:${item.id}`, false);
      section.append(
        renderItem(fromHistoryItem(item), {
          dataset: { source: 'history' },
          actions: this.actions(),
        }),
      );
    }
    if (!this.timeline.children.length && !active) {
      this.timeline.append(h('div.state.empty', null, 'No messages yet — describe what to build below.'));
    }
    this.scrollToEnd(true);
    if (active && !this.connection) this.attach(active);
  }

  showIntro() {
    const hasApps = this.ctx.hasApps?.();
    mount(
      this.timeline,
      h(
        'div.intro',
        { dataset: { testid: 'empty-state' } },
        h('h2', null, hasApps ? 'Start a new app' : 'No apps yet — describe one below'),
        h('p', null, 'Say what you want in plain words. You will see it being built, step by step, and get a preview link at the end.'),
        h(
          'div.suggestions',
          null,
          SUGGESTIONS.map((s) =>
            h(
              'button.chip-btn',
              {
                type: 'button',
                onclick: () => {
                  this.prompt.value = `Build ${s}`;
                  this.prompt.focus();
                  this.updateComposer();
                },
              },
              s,
            ),
          ),
        ),
      ),
    );
  }

  actions() {
    return {
      openFiles: this.appId ? (version) => this.ctx.openFiles(this.appId, version) : null,
    };
  }

  /**
   * The <section> of one run, created at the end of the timeline when new. `key` is the run id,
   * or a placeholder (`isRun` false) until the run id is known.
   */
  section(key, isRun = true) {
    let section = [...this.timeline.children].find((el) => el.dataset.runKey === key);
    if (!section) {
      this.timeline.querySelector(':scope > .state, :scope > .intro')?.remove();
      section = h('section.run', { dataset: { runKey: key, testid: 'run', runId: isRun ? key : undefined } });
      this.timeline.append(section);
    }
    return section;
  }

  // ---- composer ---------------------------------------------------------------------------

  onKey(e) {
    if (e.key !== 'Enter' || e.isComposing || e.keyCode === 229) return;
    if (e.shiftKey && !(e.ctrlKey || e.metaKey)) return; // a new line
    e.preventDefault();
    this.submit();
  }

  updateComposer() {
    const limit = this.ctx.limits?.();
    const exhausted = limit && limit.remaining <= 0;
    this.sendBtn.disabled = this.running || exhausted || !this.prompt.value.trim();
    this.composerNote.textContent = exhausted
      ? `Daily message limit reached${limit.reset ? ` — resets ${resetPhrase(limit.reset)}` : ''}.`
      : this.running
        ? 'You can type your next message while this run finishes.'
        : '';
    this.composerNote.classList.toggle('warn', Boolean(exhausted));
  }

  setRunning(running) {
    this.running = running;
    this.runningBar.hidden = !running;
    this.el.classList.toggle('is-running', running);
    if (running) {
      this.statusText.textContent = 'Running…';
      this.cancelBtn.disabled = false;
      this.cancelBtn.textContent = 'Cancel';
    } else {
      this.cancelRequested = false;
      for (const el of this.timeline.querySelectorAll('.progress.current')) el.classList.remove('current');
    }
    this.updateComposer();
    if (this.appId) this.ctx.onRunState?.(this.appId, running);
  }

  submit() {
    const text = this.prompt.value.trim();
    if (!text || this.running) return;
    const limit = this.ctx.limits?.();
    if (limit && limit.remaining <= 0) {
      toast(`You have no messages left today${limit.reset ? `; resets ${resetPhrase(limit.reset)}` : ''}.`, 'error');
      return;
    }
    this.prompt.value = '';
    this.send(text, uuid());
  }

  /** Sends a message (a retry passes the same idempotency key, so it cannot run twice). */
  async send(text, key, section = null) {
    if (!section) {
      section = this.section(`pending:${key}`, false);
      section.append(renderItem({ kind: 'UserMessage', role: 'user', text }, { dataset: { source: 'live' } }));
    } else {
      section.querySelector('.send-failure')?.remove();
      section.querySelector('.msg.user')?.classList.remove('failed');
    }
    this.scrollToEnd(true);
    if (!this.appId && !this.firstMessage) this.firstMessage = text;
    const body = { message: text };
    if (this.appId) body.applicationId = this.appId;
    const settings = this.ctx.testSettings?.();
    if (settings) body.settings = settings;

    this.runId = null;
    if (this.appId) this.prompt.placeholder = 'Ask for a change, e.g. "add a dark mode"…';
    this.setRunning(true);
    const connection = this.connect(section);
    try {
      const result = await connection.send(body, key);
      this.afterRun(result, section);
    } catch (e) {
      this.connection = null;
      this.setRunning(false);
      this.showSendError(e, text, key, section);
    }
  }

  /** Follows a run that is already going (after a reload, or a 409 run_active). */
  async attach(runId) {
    if (this.connection) return;
    const section = this.section(runId);
    this.setRunning(true);
    const connection = this.connect(section);
    try {
      const result = await connection.attach(runId, 0);
      this.afterRun(result, section);
    } catch (e) {
      this.connection = null;
      this.setRunning(false);
      section.append(this.errorCard(`Could not follow the run: ${e.message}`));
    }
  }

  connect(section) {
    const connection = new RunConnection({
      onStart: ({ runId, appId }) => this.onRunStart(runId, appId, section),
      onEvent: (ev) => this.onEvent(ev, section),
      onState: ({ state, attempt }) => this.onConnectionState(state, attempt),
    });
    this.connection = connection;
    return connection;
  }

  onRunStart(runId, appId, section) {
    this.runId = runId;
    if (runId) {
      section.dataset.runId = runId;
      section.dataset.runKey = runId;
    }
    if (!this.appId && appId) {
      this.appId = appId;
      this.el.dataset.appId = appId;
      this.loaded = true;
      this.prompt.placeholder = 'Ask for a change, e.g. "add a dark mode"…';
      this.ctx.onAppCreated?.(appId, this);
    }
    if (this.appId && runId) activeRuns.set(this.appId, runId);
    if (this.appId) this.ctx.onRunState?.(this.appId, true);
    if (this.cancelRequested) this.cancel();
  }

  onConnectionState(state, attempt) {
    if (!this.running) return;
    if (state === 'reconnecting') {
      this.statusText.textContent = `Connection lost — reconnecting${attempt > 1 ? ` (attempt ${attempt})` : ''}…`;
      this.runningBar.classList.add('reconnecting');
    } else if (state === 'streaming') {
      this.statusText.textContent = this.cancelRequested ? 'Cancelling…' : 'Running…';
      this.runningBar.classList.remove('reconnecting');
    }
  }

  onEvent(ev, section) {
    const item = fromStreamEvent(ev);
    let outcome;
    if (item.kind === 'RefinementRequest') this.runOutcome.set(section, 'Waiting for your answer');
    if (item.kind === 'error') this.runOutcome.set(section, item.code === 'run_cancelled' ? 'Run cancelled' : 'Run ended with an error');
    if (item.kind === 'done') outcome = this.runOutcome.get(section) || 'Run finished';
    const el = renderItem(item, {
      dataset: { source: 'live', seq: ev.seq ?? undefined, event: ev.event },
      actions: this.actions(),
      outcome,
    });
    if (item.kind === 'WipUpdate') {
      for (const prev of section.querySelectorAll('.progress.current')) prev.classList.remove('current');
      el.classList.add('current');
    }
    section.append(el);
    this.scrollToEnd();

    if (item.kind === 'RefinementRequest') {
      this.prompt.placeholder = 'Answer the question…';
    }
    if (this.appId) {
      const info = {};
      if (item.appName) info.appName = item.appName;
      if ((item.kind === 'PlatformMessage' || item.kind === 'RuntimeError') && item.meta) {
        const m = item.meta;
        // app.build's notice types are in `type`; the gateway's own (and a failed
        // deployment, sent as a RuntimeError) in `notice`.
        const type = m.type || m.notice;
        if (type === 'version_created' && m.version) info.version = m.version;
        if (type === 'repo_created' && m.githubUrl) info.repositoryUrl = m.githubUrl;
        if (type === 'deployment_in_progress') info.deployStatus = 'deploying';
        if (type === 'deployment_complete') Object.assign(info, { deployStatus: 'deployed', appUrl: m.deploymentUrl });
        if (type === 'deployment_failed') info.deployStatus = 'failed';
        // The header follows this deployment's log from here on.
        if (type?.startsWith('deployment_') && m.deploymentId) info.deploymentId = m.deploymentId;
      }
      if (Object.keys(info).length) this.ctx.onAppChanged?.(this.appId, info);
    }
  }

  afterRun(result, section) {
    this.connection = null;
    this.setRunning(false);
    if (result.state === 'closed') return; // signed out or discarded: nothing more to show
    if (result.state === 'done') {
      if (this.appId) activeRuns.clear(this.appId, result.runId);
    } else if (result.state === 'failed') {
      if (this.appId) activeRuns.clear(this.appId, result.runId);
      section.append(this.errorCard(`Lost the connection to this run: ${result.error?.message || 'unknown error'}`));
    }
    if (this.appId) this.ctx.onRunFinished?.(this.appId);
    if (section.querySelector('[data-kind="RefinementRequest"]') && result.state === 'done') this.prompt.focus();
  }

  showSendError(e, text, key, section) {
    section.querySelector('.msg.user')?.classList.add('failed');
    if (!this.prompt.value) this.prompt.value = text;
    this.updateComposer();
    const err = e instanceof ApiError ? e : new ApiError(0, 'client_error', String(e?.message || e));
    let card;
    if (err.status === 409 && err.code === 'run_active' && err.body?.runId) {
      const runId = err.body.runId;
      card = this.errorCard(
        'This app is still working on an earlier message. Wait for it to finish, or cancel it first.',
        h(
          'button.btn.small',
          {
            type: 'button',
            dataset: { testid: 'attach-run' },
            onclick: () => {
              card.remove();
              section.remove();
              this.attach(runId);
            },
          },
          'Show its progress',
        ),
      );
    } else if (err.status === 429) {
      const limit = this.ctx.limits?.();
      card = this.errorCard(
        `You have reached today's message limit${limit?.limit ? ` (${limit.limit})` : ''}.${limit?.reset ? ` It resets ${resetPhrase(limit.reset)}.` : ''}`,
      );
    } else if (err.status === 0) {
      card = this.errorCard(
        'Could not reach the server, so the message was not sent.',
        h(
          'button.btn.small',
          {
            type: 'button',
            onclick: () => {
              if (this.prompt.value.trim() === text) this.prompt.value = '';
              this.send(text, key, section);
            },
          },
          'Retry',
        ),
      );
    } else if (err.status === 404) {
      card = this.errorCard('This app does not exist any more.');
    } else if (err.status === 401) {
      card = this.errorCard('You were signed out.');
    } else {
      card = this.errorCard(`The message was not sent: ${err.message}`);
    }
    card.classList.add('send-failure');
    card.dataset.code = err.code;
    section.append(card);
    this.scrollToEnd();
  }

  errorCard(text, ...extra) {
    return h(
      'div.msg.error',
      { role: 'alert', dataset: { testid: 'error' } },
      h('div.text', null, text),
      extra.length ? h('div.actions', null, extra) : null,
    );
  }

  async cancel() {
    if (!this.running) return;
    this.cancelRequested = true;
    this.cancelBtn.disabled = true;
    this.cancelBtn.textContent = 'Cancelling…';
    this.statusText.textContent = 'Cancelling…';
    if (!this.runId) return; // sent as soon as the run id is known
    try {
      await cancelRun(this.runId);
    } catch (e) {
      // 409: the run has already ended; its `done` is on the way.
      if (e.status !== 409) {
        toast(`Could not cancel: ${e.message}`, 'error');
        this.cancelBtn.disabled = false;
        this.cancelBtn.textContent = 'Cancel';
        this.cancelRequested = false;
      }
    }
  }

  // ---- misc -------------------------------------------------------------------------------

  nearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  scrollToEnd(force = false) {
    if (force) this.stick = true;
    if (!this.stick) return;
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  /** Called when the view is put (back) on screen: a re-attached element starts at the top. */
  shown() {
    if (this.stick) this.scrollToEnd();
  }

  focus() {
    this.prompt.focus();
  }

  /** The seqs shown for a run, in order (for tests and debugging). */
  seqs(runId) {
    const section = this.timeline.querySelector(`section[data-run-id="${CSS.escape(runId)}"]`);
    return section ? [...section.querySelectorAll('[data-seq]')].map((el) => Number(el.dataset.seq)) : [];
  }

  close() {
    this.connection?.close();
    this.connection = null;
  }
}

export { activeRuns };

// Turns stream events and history items into timeline elements. One renderer for both, so a
// conversation looks the same live and after a reload.

import { h, linkify, safeUrl } from './dom.js';

const PLATFORM_ICONS = {
  version_created: '📦',
  storage_pending: '⏳',
  repo_created: '🗂️',
  commit_created: '✔️',
  deployment_in_progress: '🚀',
  deployment_complete: '🌐',
  deployment_failed: '⚠️',
};

const KIND_LABELS = {
  StageResult: 'Progress',
  ReviewResult: 'Result',
  RefinementRequest: 'Question from the agent',
  RuntimeError: 'Error',
};

/** The text of an agent message: `messages[].content`, or a legacy `content`. */
export function messageText(message) {
  if (!message) return '';
  if (Array.isArray(message.messages)) {
    return message.messages
      .map((m) => (typeof m === 'string' ? m : m?.content ?? ''))
      .filter(Boolean)
      .join('\n\n');
  }
  if (typeof message.content === 'string') return message.content;
  if (Array.isArray(message.content)) return message.content.map((c) => c?.text ?? '').join('\n');
  return '';
}

/**
 * A common shape for everything the timeline shows:
 *   {kind, role, text, meta, appName, commitMessage, code}
 */
export function fromStreamEvent({ event, data }) {
  if (event === 'done') return { kind: 'done', role: 'platform', text: '', meta: data };
  if (event === 'error') {
    return {
      kind: 'error',
      role: 'platform',
      text: data?.error || messageText(data?.message) || 'Something went wrong.',
      code: data?.code || '',
      meta: data,
    };
  }
  const message = data?.message || {};
  return {
    kind: message.kind || 'Unknown',
    role: message.role || 'assistant',
    text: messageText(message) || data?.text || '',
    meta: message.metadata || data?.metadata || null,
    appName: message.app_name || null,
    commitMessage: message.commit_message || null,
  };
}

/**
 * One row of `GET /apps/:id/history` (app.build's `AppPrompts`): `kind` is `user` or
 * `assistant`, `messageKind` the agent's or the gateway's kind, `prompt` the text.
 */
export function fromHistoryItem(item) {
  const meta = item.metadata && typeof item.metadata === 'object' ? item.metadata : null;
  const user = item.kind === 'user';
  const kind = user ? 'UserMessage' : item.messageKind || 'AgentMessage';
  return {
    kind,
    role: user ? 'user' : kind === 'PlatformMessage' ? 'platform' : 'assistant',
    text: typeof item.prompt === 'string' ? item.prompt : '',
    meta,
    code: meta?.code || '',
    appName: meta?.app_name || null,
    commitMessage: meta?.commit_message || null,
  };
}

function link(href, label, attrs = {}) {
  return h('a', { href: safeUrl(href), target: '_blank', rel: 'noopener', ...attrs }, label);
}

function body(text) {
  return h('div.text', null, linkify(text));
}

/**
 * The element for one item. `actions.openFiles(version)` is offered on saved versions.
 * `attrs` become data attributes (seq, source, ...).
 */
export function renderItem(item, { dataset = {}, actions = {}, outcome } = {}) {
  const data = { testid: 'event', kind: item.kind, ...dataset };
  switch (item.kind) {
    case 'UserMessage':
      return h('div.msg.user', { dataset: { ...data, testid: 'user-message' } }, body(item.text));

    case 'WipUpdate':
      return h(
        'div.ev.progress',
        { dataset: data },
        h('span.dot', { 'aria-hidden': 'true' }),
        h('span.progress-text', null, item.text || 'Working…'),
      );

    case 'StageResult':
    case 'ReviewResult':
      return h(
        'div.msg.agent',
        { class: item.kind === 'ReviewResult' ? 'result' : 'stage', dataset: data },
        h(
          'div.msg-head',
          null,
          h('span.label', null, KIND_LABELS[item.kind]),
          item.appName ? h('span.chip', null, item.appName) : null,
        ),
        body(item.text),
        item.commitMessage && item.kind === 'ReviewResult'
          ? h('div.meta', null, 'Commit: ', h('code', null, item.commitMessage))
          : null,
      );

    case 'RefinementRequest':
      return h(
        'div.msg.question',
        { dataset: data, role: 'note' },
        h('div.msg-head', null, h('span.label', null, '❓ The agent has a question')),
        body(item.text),
        h('div.hint', null, 'Answer in the box below to continue.'),
      );

    case 'RuntimeError':
    case 'error':
      return h(
        'div.msg.error',
        { dataset: data, role: 'alert' },
        h(
          'div.msg-head',
          null,
          h('span.label', null, item.code === 'run_cancelled' ? 'Cancelled' : 'Error'),
          item.code ? h('code.chip', null, item.code) : null,
        ),
        body(item.text),
      );

    case 'PlatformMessage':
      return renderPlatform(item, data, actions);

    case 'done':
      return h(
        'div.ev.done',
        { dataset: data },
        h('span.rule'),
        h('span.done-text', null, outcome || 'Run finished'),
        h('span.rule'),
      );

    default:
      return h(
        'div.msg.agent.other',
        { dataset: data },
        h('div.msg-head', null, h('span.label', null, item.kind || 'Message')),
        body(item.text || JSON.stringify(item.meta ?? {})),
      );
  }
}

function renderPlatform(item, data, actions) {
  const meta = item.meta || {};
  // app.build's notices say what happened in `type`, the gateway's own in `notice`.
  const type = meta.type || meta.notice || 'platform';
  const dataset = { ...data, type };
  const icon = PLATFORM_ICONS[type] || 'ℹ️';
  const extra = [];
  let cls = 'platform';
  let text = item.text;
  switch (type) {
    case 'version_created':
      text = text || `Saved version ${meta.version}.`;
      if (actions.openFiles && meta.version) {
        extra.push(
          h(
            'button.link-btn',
            {
              type: 'button',
              dataset: { testid: 'browse-version' },
              onclick: () => actions.openFiles(meta.version),
            },
            `Browse files of version ${meta.version}`,
          ),
        );
      }
      break;
    case 'storage_pending':
      text = text || 'Saving the files to storage…';
      break;
    case 'repo_created':
      if (safeUrl(meta.githubUrl)) extra.push(link(meta.githubUrl, 'Open repository', { dataset: { testid: 'repo-link' } }));
      break;
    case 'commit_created':
      if (safeUrl(meta.commitUrl)) extra.push(link(meta.commitUrl, 'View commit', { dataset: { testid: 'commit-link' } }));
      break;
    case 'deployment_in_progress':
      text = text || 'Deploying your app…';
      break;
    case 'deployment_complete':
      cls = 'platform deployed';
      text = text || 'Your app is live.';
      if (safeUrl(meta.deploymentUrl)) {
        extra.push(
          link(meta.deploymentUrl, 'Open preview ↗', {
            class: 'btn primary',
            dataset: { testid: 'deploy-link' },
          }),
        );
      }
      break;
    case 'deployment_failed':
      cls = 'platform failed';
      text = [text, meta.reason || meta.error].filter(Boolean).join(' — ') || 'The deployment failed.';
      break;
    default:
      break;
  }
  return h(
    'div.ev',
    { class: cls, dataset },
    h('span.icon', { 'aria-hidden': 'true' }, icon),
    h('div.platform-body', null, body(text || type.replace(/_/g, ' ')), extra.length ? h('div.actions', null, extra) : null),
  );
}

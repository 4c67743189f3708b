// Small DOM and formatting helpers shared by the views. Text is always set through
// textContent, never innerHTML, so nothing an agent or a user writes can inject markup.

/**
 * Creates an element: h('a.btn.primary', {href, dataset:{testid:'x'}, onclick}, 'text', child...)
 * The tag may carry classes after dots. `null`/`false` children are skipped.
 */
export function h(tag, attrs, ...children) {
  const [name, ...classes] = tag.split('.');
  const el = document.createElement(name || 'div');
  if (classes.length) el.className = classes.join(' ');
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'dataset') {
        for (const [k, v] of Object.entries(value)) {
          if (v !== undefined && v !== null) el.dataset[k] = String(v);
        }
      } else if (key === 'class') {
        el.className = [el.className, value].filter(Boolean).join(' ');
      } else if (key.startsWith('on') && typeof value === 'function') {
        el.addEventListener(key.slice(2), value);
      } else if (key === 'text') {
        el.textContent = value;
      } else if (value === true) {
        el.setAttribute(key, '');
      } else {
        el.setAttribute(key, String(value));
      }
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces all children of `el`. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** `url` if it is an http(s) or same-origin relative link, else null (no javascript: links). */
export function safeUrl(url) {
  if (typeof url !== 'string' || !url) return null;
  try {
    const parsed = new URL(url, location.href);
    return parsed.protocol === 'http:' || parsed.protocol === 'https:' ? url : null;
  } catch {
    return null;
  }
}

const URL_RE = /\bhttps?:\/\/[^\s<>"')\]]+/g;

/** Text with bare http(s) URLs turned into links (opened in a new tab). */
export function linkify(text) {
  const out = [];
  let last = 0;
  for (const match of String(text ?? '').matchAll(URL_RE)) {
    let url = match[0].replace(/[.,;:!?]+$/, '');
    out.push(text.slice(last, match.index));
    out.push(h('a', { href: url, target: '_blank', rel: 'noopener' }, url));
    last = match.index + url.length;
  }
  out.push(String(text ?? '').slice(last));
  return out.filter((part) => part !== '');
}

/** "just now", "5 min ago", "3 h ago", or a date. */
export function relativeTime(iso) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '';
  const s = Math.round((Date.now() - t) / 1000);
  if (s < 45) return 'just now';
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  if (s < 7 * 86400) return `${Math.round(s / 86400)} d ago`;
  return new Date(t).toLocaleDateString();
}

/** When a reset happens, as "at 14:00", "tomorrow at 00:00" or "on Mon, Nov 24 at 14:00". */
export function resetPhrase(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const today = new Date();
  if (d.toDateString() === today.toDateString()) return `at ${time}`;
  const tomorrow = new Date(today);
  tomorrow.setDate(today.getDate() + 1);
  if (d.toDateString() === tomorrow.toDateString()) return `tomorrow at ${time}`;
  return `on ${d.toLocaleDateString([], { weekday: 'short', month: 'short', day: 'numeric' })} at ${time}`;
}

export function formatBytes(n) {
  if (!Number.isFinite(n)) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A random UUID, also on plain-http origins where crypto.randomUUID is missing. */
export function uuid() {
  if (globalThis.crypto?.randomUUID) {
    try {
      return crypto.randomUUID();
    } catch {
      // randomUUID needs a secure context; fall through.
    }
  }
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** A short-lived notice in the corner. */
export function toast(message, kind = 'info') {
  const host = document.getElementById('toasts');
  if (!host) return;
  const el = h('div.toast', { class: kind, role: 'status', dataset: { testid: 'toast' } }, message);
  host.append(el);
  setTimeout(() => el.classList.add('leaving'), 4500);
  setTimeout(() => el.remove(), 5000);
}

//! Focus (pomodoro) timer: focus/short/long modes, start/pause/reset.

use super::Template;

pub static TEMPLATE: Template = Template {
    body: BODY,
    script: SCRIPT,
    style: STYLE,
    summary: "A pomodoro-style focus timer with focus, short-break and long-break modes. Finished focus sessions are counted and saved in your browser (localStorage).",
    features: &[
        "Focus (25 min), short break (5 min) and long break (15 min) modes",
        "Start / pause and reset",
        "The remaining time shows in the tab title while running",
        "Completed focus sessions are counted (localStorage)",
    ],
};

const BODY: &str = r##"    <section class="timer">
      <nav class="modes" aria-label="Timer mode">
        <button type="button" data-mode="focus" class="active">Focus</button>
        <button type="button" data-mode="short">Short break</button>
        <button type="button" data-mode="long">Long break</button>
      </nav>
      <output id="time-left" class="time" aria-live="polite">25:00</output>
      <div class="row controls">
        <button id="start-pause" type="button">Start</button>
        <button id="reset-timer" type="button" class="secondary">Reset</button>
      </div>
      <p class="muted">Completed focus sessions: <strong id="sessions">0</strong></p>
    </section>
"##;

const SCRIPT: &str = r##"// Focus timer: counts down the selected mode; finished focus sessions are saved.
(() => {
  'use strict';
  const KEY = '__STORE__:sessions';
  const DURATIONS = { focus: 25 * 60, short: 5 * 60, long: 15 * 60 };
  const display = document.getElementById('time-left');
  const startPause = document.getElementById('start-pause');
  const sessionsEl = document.getElementById('sessions');
  const modeButtons = document.querySelectorAll('[data-mode]');
  const baseTitle = document.title;
  let mode = 'focus';
  let remaining = DURATIONS[mode];
  let endsAt = 0;
  let ticker = null;
  let sessions = load();

  function load() {
    try {
      const n = Number(localStorage.getItem(KEY));
      return Number.isInteger(n) && n > 0 ? n : 0;
    } catch (e) {
      return 0;
    }
  }

  function format(seconds) {
    const m = String(Math.floor(seconds / 60)).padStart(2, '0');
    const s = String(seconds % 60).padStart(2, '0');
    return m + ':' + s;
  }

  function render() {
    display.textContent = format(remaining);
    startPause.textContent = ticker ? 'Pause' : 'Start';
    sessionsEl.textContent = String(sessions);
    document.title = ticker ? format(remaining) + ' · ' + baseTitle : baseTitle;
    modeButtons.forEach((b) => b.classList.toggle('active', b.dataset.mode === mode));
  }

  function stop() {
    clearInterval(ticker);
    ticker = null;
  }

  function tick() {
    // Wall-clock based, so a throttled background tab stays accurate.
    remaining = Math.max(0, Math.round((endsAt - Date.now()) / 1000));
    if (remaining === 0) {
      stop();
      if (mode === 'focus') {
        sessions += 1;
        try {
          localStorage.setItem(KEY, String(sessions));
        } catch (e) {
          // Storage may be unavailable; the count lasts for this visit.
        }
      }
      remaining = DURATIONS[mode];
    }
    render();
  }

  startPause.addEventListener('click', () => {
    if (ticker) {
      stop();
    } else {
      endsAt = Date.now() + remaining * 1000;
      ticker = setInterval(tick, 250);
    }
    render();
  });

  document.getElementById('reset-timer').addEventListener('click', () => {
    stop();
    remaining = DURATIONS[mode];
    render();
  });

  modeButtons.forEach((button) => {
    button.addEventListener('click', () => {
      stop();
      mode = button.dataset.mode;
      remaining = DURATIONS[mode];
      render();
    });
  });

  render();
})();
"##;

const STYLE: &str = r##"/* Focus timer */
.timer {
  display: flex;
  flex-direction: column;
  align-items: center;
  gap: 1rem;
}

.modes {
  display: flex;
  gap: 0.5rem;
}

.modes button.active {
  background: var(--accent);
  color: var(--accent-text);
}

.time {
  font-size: 4.5rem;
  font-weight: 700;
  font-variant-numeric: tabular-nums;
}

.controls button {
  min-width: 6rem;
}
"##;

//! Counter: increment, decrement, reset, adjustable step; persisted.

use super::Template;

pub static TEMPLATE: Template = Template {
    body: BODY,
    script: SCRIPT,
    style: STYLE,
    summary: "A counter with increment, decrement, reset and an adjustable step. The value is saved in your browser (localStorage).",
    features: &[
        "+ / − buttons (or the arrow keys) change the value by the step",
        "Reset back to zero",
        "Adjustable step size",
        "The value survives a reload (localStorage)",
    ],
};

const BODY: &str = r##"    <section class="counter">
      <output id="count-value" class="count" aria-live="polite">0</output>
      <div class="row controls">
        <button id="decrement" type="button" aria-label="Decrement">−</button>
        <button id="reset" type="button" class="secondary">Reset</button>
        <button id="increment" type="button" aria-label="Increment">+</button>
      </div>
      <label class="step">Step
        <input id="step" type="number" min="1" max="1000" value="1">
      </label>
    </section>
"##;

const SCRIPT: &str = r##"// Counter: +/- by a step, reset; the value is saved in localStorage.
(() => {
  'use strict';
  const KEY = '__STORE__:count';
  const output = document.getElementById('count-value');
  const stepInput = document.getElementById('step');
  let value = load();

  function load() {
    try {
      const n = Number(localStorage.getItem(KEY));
      return Number.isFinite(n) ? n : 0;
    } catch (e) {
      return 0;
    }
  }

  function step() {
    const n = Math.floor(Number(stepInput.value));
    return Number.isFinite(n) && n > 0 ? n : 1;
  }

  function set(next) {
    value = next;
    output.textContent = String(value);
    output.classList.toggle('negative', value < 0);
    try {
      localStorage.setItem(KEY, String(value));
    } catch (e) {
      // Storage may be unavailable (private mode); counting still works.
    }
  }

  document.getElementById('increment').addEventListener('click', () => set(value + step()));
  document.getElementById('decrement').addEventListener('click', () => set(value - step()));
  document.getElementById('reset').addEventListener('click', () => set(0));
  document.addEventListener('keydown', (event) => {
    if (event.target instanceof HTMLInputElement) return;
    if (event.key === 'ArrowUp' || event.key === '+') set(value + step());
    if (event.key === 'ArrowDown' || event.key === '-') set(value - step());
  });

  set(value);
})();
"##;

const STYLE: &str = r##"/* Counter */
.counter {
  display: flex;
  flex-direction: column;
  align-items: center;
  gap: 1rem;
}

.count {
  font-size: 4rem;
  font-weight: 700;
  font-variant-numeric: tabular-nums;
}

.count.negative {
  color: var(--danger);
}

.controls button {
  min-width: 4rem;
  font-size: 1.25rem;
}

.step input {
  width: 5rem;
  margin-left: 0.5rem;
}
"##;

// Polling while the tab is visible: run `tick` now, then every `ms` after each run ends (never two at
// once), pause while the page is hidden, and run at once when it shows again.

/** Starts polling; returns {now(), stop()}: `now` runs a tick soon (after the one in flight). */
export function poll(tick, ms) {
  let timer = null;
  let running = false;
  let again = false;
  let stopped = false;

  async function run() {
    timer = null;
    if (stopped || document.visibilityState !== 'visible') return;
    running = true;
    try {
      await tick();
    } catch (e) {
      console.error(e);
    }
    running = false;
    if (stopped) return;
    if (again) { again = false; run(); return; }
    timer = setTimeout(run, ms);
  }

  function now() {
    if (stopped) return;
    if (running) { again = true; return; }
    clearTimeout(timer);
    run();
  }

  function onVisibility() {
    if (document.visibilityState === 'visible' && timer === null && !running) now();
  }

  document.addEventListener('visibilitychange', onVisibility);
  run();
  return {
    now,
    stop() {
      stopped = true;
      clearTimeout(timer);
      document.removeEventListener('visibilitychange', onVisibility);
    },
  };
}

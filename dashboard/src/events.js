// One event stream for the whole page (GET /v1/events?follow=true): pages subscribe to it, nothing polls.

const listeners = new Set();
const openListeners = new Set();
let source = null;

// Back from the back-forward cache (the stream was closed on pagehide): open it again, and let pages refetch.
window.addEventListener("pageshow", (event) => {
  if (event.persisted && listeners.size) ensure();
});

export function subscribe(listener, onOpen) {
  listeners.add(listener);
  if (onOpen) openListeners.add(onOpen);
  ensure();
  return () => {
    listeners.delete(listener);
    if (onOpen) openListeners.delete(onOpen);
  };
}

function ensure() {
  if (source) return;
  // From now on: the pages fetch the current state once the stream is open, so no change falls between.
  source = new EventSource(`/v1/events?follow=true&since=${Date.now() / 1000 - 2}`);
  source.onopen = () => openListeners.forEach((f) => f());
  source.onmessage = (message) => {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return;
    }
    listeners.forEach((f) => f(event));
  };
}

export function closeEvents() {
  if (source) source.close();
  source = null;
}

export function forgetListeners() {
  listeners.clear();
  openListeners.clear();
}

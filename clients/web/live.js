// live.js - one live session of the v1 protocol (docs/protocol.md) over a WebSocket at
// /v1/listen: the start message, audio as binary messages, end; the server's ready, partial,
// final, warning and error messages become callbacks. It also measures latency: for each new
// word, the time from when the audio at its end was captured to when its text arrived.

import { wsUrl, messages, diagnoseConnectFailure, ServerError } from './api.js';

/** The close code of a server that is full or draining. */
const CLOSE_FULL = 1013;

export class LiveSession {
  /**
   * start: the start message's fields (sample_rate, encoding, chunk_ms, ...).
   * handlers: onReady(msg), onPartial(msg), onFinal(msg), onWarning(msg), onLatency(ms),
   * onClose(error|null) - error is a ServerError, null for a normal end.
   */
  constructor(start, handlers) {
    this.handlers = handlers;
    this.sentSeconds = 0;
    this.sendTimes = []; // per message: [its first and end second of audio, performance.now() when captured]
    this.lastWordEnd = 0;
    this.ready = false;
    this.error = null;
    this.closed = false;
    this.aborted = false;
    this.pending = []; // audio captured before the socket opened
    this.ws = new WebSocket(wsUrl('/v1/listen'));
    this.ws.binaryType = 'arraybuffer';
    this.ws.onopen = () => {
      this.ws.send(JSON.stringify({ type: 'start', interim_results: true, word_timestamps: true, ...start }));
      for (const [buf, seconds, at] of this.pending) this.sendAudio(buf, seconds, at);
      this.pending = [];
    };
    this.ws.onmessage = (e) => this.onMessage(e.data);
    this.ws.onclose = (e) => this.onClose(e);
  }

  /** Sends one binary message holding `seconds` of audio captured at time `at` (queued until the socket is open). */
  sendAudio(buf, seconds, at = performance.now()) {
    if (this.closed) return;
    if (this.ws.readyState === WebSocket.CONNECTING) {
      this.pending.push([buf, seconds, at]);
      return;
    }
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.sendTimes.push([this.sentSeconds, this.sentSeconds + seconds, at]);
    this.sentSeconds += seconds;
    this.ws.send(buf);
  }

  /** No more audio: the server sends the last finals, then closes (onClose(null)). */
  end() {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: 'end' }));
    else this.abort();
  }

  /** Closes at once, without waiting for finals. */
  abort() {
    this.aborted = true;
    if (this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000);
  }

  onMessage(data) {
    if (typeof data !== 'string') return;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    const h = this.handlers;
    switch (msg.type) {
      case 'ready':
        this.ready = true;
        h.onReady?.(msg);
        break;
      case 'partial':
        this.measure(msg);
        h.onPartial?.(msg);
        break;
      case 'final':
        this.measure(msg);
        h.onFinal?.(msg);
        break;
      case 'warning':
        h.onWarning?.(msg);
        break;
      case 'error':
        this.error = msg.code === 'over_capacity'
          ? new ServerError(msg.code, messages.over_capacity)
          : new ServerError(msg.code, `The server ended the session: ${msg.message} (${msg.code})`);
        break;
    }
  }

  /** Latency of a message that brings a word ending later than any before it. */
  measure(msg) {
    if (!(msg.end > this.lastWordEnd) || !this.sendTimes.length) return;
    this.lastWordEnd = msg.end;
    // the last message sent that starts at or before the word's end holds its last sample
    const t = this.sendTimes;
    let lo = 0, hi = t.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (t[mid][0] <= msg.end) lo = mid;
      else hi = mid - 1;
    }
    const [, end, at] = t[lo]; // `at` is when the message's last sample was captured
    this.handlers.onLatency?.(performance.now() - at + Math.max(0, end - msg.end) * 1000);
    t.splice(0, lo); // later words end later: the older messages are not needed again
  }

  async onClose(e) {
    if (this.closed) return;
    this.closed = true;
    let error = this.error;
    if (this.aborted && !error) return this.handlers.onClose?.(null);
    if (!error && e.code === CLOSE_FULL) error = new ServerError('over_capacity', messages.over_capacity);
    if (!error && !this.ready && e.code !== 1000) error = await diagnoseConnectFailure();
    if (!error && e.code !== 1000 && e.code !== 1005) {
      error = new ServerError('closed', `The connection to the server was lost (code ${e.code}).`);
    }
    this.handlers.onClose?.(error);
  }
}

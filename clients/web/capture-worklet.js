// capture-worklet.js - the AudioWorklet processor behind capture.js. It mixes the microphone to
// mono and posts frames of a fixed duration (20 ms by default) to the page: 16-bit PCM samples
// (Int16Array, for pcm_s16le) or floats (Float32Array, for the Opus encoder). On 'flush' it
// posts the samples it still holds, then 'flushed', and stops.

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = options.processorOptions || {};
    this.floats = opts.format === 'f32';
    this.frame = new Float32Array(Math.max(1, Math.round((sampleRate * (opts.frameMs || 20)) / 1000)));
    this.fill = 0;
    this.done = false;
    this.port.onmessage = (e) => {
      if (e.data === 'flush' && !this.done) {
        this.post();
        this.done = true;
        this.port.postMessage({ type: 'flushed' });
      }
    };
  }

  process(inputs) {
    if (this.done) return false;
    const channels = inputs[0];
    if (channels && channels.length) {
      const n = channels[0].length, k = channels.length;
      for (let i = 0; i < n; i++) {
        let s = channels[0][i];
        for (let c = 1; c < k; c++) s += channels[c][i];
        this.frame[this.fill++] = k > 1 ? s / k : s;
        if (this.fill === this.frame.length) this.post();
      }
    }
    return true;
  }

  /** Posts the samples held so far (transferring their buffer) and starts a new frame. */
  post() {
    if (!this.fill) return;
    let out;
    if (this.floats) {
      out = this.frame.slice(0, this.fill);
    } else {
      out = new Int16Array(this.fill);
      // the inverse of how browsers turn 16-bit capture into floats (s / 32768 below zero,
      // s / 32767 above), so 16-bit microphone samples come out unchanged
      for (let i = 0; i < this.fill; i++) {
        const x = this.frame[i];
        out[i] = x < 0 ? Math.max(-32768, Math.round(x * 32768)) : Math.min(32767, Math.round(x * 32767));
      }
    }
    this.port.postMessage({ type: 'audio', samples: out }, [out.buffer]);
    this.fill = 0;
  }
}

registerProcessor('earshot-capture', CaptureProcessor);

// capture.js - the microphone, as a stream of binary messages for the live protocol.
// getUserMedia -> AudioContext -> capture-worklet.js, which posts 20 ms mono frames; they leave
// as pcm_s16le at the AudioContext's own rate (the server resamples), or, with encoding 'opus',
// through WebCodecs' AudioEncoder as one raw Opus packet per message.

import { httpUrl } from './api.js';

/** Why the microphone could not be opened, in words for people. */
export class CaptureError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

const MIN_RATE = 8000, MAX_RATE = 48000; // the protocol's sample_rate range

/** Whether this browser can encode Opus with WebCodecs (then 'opus' may be asked of openCapture). */
export async function opusSupported() {
  if (typeof AudioEncoder === 'undefined') return false;
  try {
    const { supported } = await AudioEncoder.isConfigSupported({ codec: 'opus', sampleRate: 48000, numberOfChannels: 1 });
    return !!supported;
  } catch {
    return false;
  }
}

async function openMicrophone() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new CaptureError('insecure', 'This browser gives no microphone here: open the page over https:// or from localhost.');
  }
  try {
    // Raw audio: echo cancellation, noise suppression and gain control are not for recognisers.
    return await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
  } catch (e) {
    if (e.name === 'NotAllowedError' || e.name === 'SecurityError') {
      throw new CaptureError('refused', 'Microphone access was refused. Allow it for this site (the icon in the address bar) and press Start again.');
    }
    if (e.name === 'NotFoundError' || e.name === 'OverconstrainedError') {
      throw new CaptureError('no_microphone', 'No microphone was found.');
    }
    if (e.name === 'NotReadableError') {
      throw new CaptureError('busy', 'The microphone could not be opened: another program may be using it.');
    }
    throw new CaptureError('failed', `The microphone could not be opened: ${e.message || e.name}`);
  }
}

/**
 * Opens the microphone and starts capturing. onMessage(ArrayBuffer, seconds) is called with each
 * binary message and the seconds of audio it holds. Resolves to
 * { sampleRate, encoding, channels, stop() } where sampleRate and encoding are what the start
 * message must say; stop() flushes the last samples (and the encoder) and releases the microphone.
 */
export async function openCapture({ encoding = 'pcm', onMessage }) {
  // The audio graph is ready before the microphone opens, so that no speech is lost meanwhile.
  let ctx, stream;
  try {
    ctx = new AudioContext({ latencyHint: 'interactive' });
    if (ctx.sampleRate < MIN_RATE || ctx.sampleRate > MAX_RATE) {
      await ctx.close();
      ctx = new AudioContext({ latencyHint: 'interactive', sampleRate: MAX_RATE });
    }
    await ctx.audioWorklet.addModule(httpUrl('capture-worklet.js'));
  } catch (e) {
    if (ctx) ctx.close();
    throw new CaptureError('audio_failed', `Audio processing could not start: ${e.message || e.name}`);
  }
  try {
    stream = await openMicrophone();
  } catch (e) {
    ctx.close();
    throw e;
  }
  const rate = ctx.sampleRate;
  let source, node, opus = null;
  try {
    source = ctx.createMediaStreamSource(stream);
    node = new AudioWorkletNode(ctx, 'earshot-capture', {
      numberOfInputs: 1, numberOfOutputs: 0,
      processorOptions: { format: encoding === 'opus' ? 'f32' : 's16', frameMs: 20 },
    });
    if (encoding === 'opus') opus = makeOpusEncoder(rate, onMessage);
  } catch (e) { // e.g. a browser that cannot mix a microphone of another rate into the context
    stream.getTracks().forEach((t) => t.stop());
    ctx.close();
    throw new CaptureError('audio_failed', `Audio processing could not start: ${e.message || e.name}`);
  }
  let flushed;
  const whenFlushed = new Promise((resolve) => { flushed = resolve; });
  let frames = 0; // samples posted so far: the encoder's timestamps
  node.port.onmessage = ({ data }) => {
    if (data.type === 'flushed') return flushed();
    const samples = data.samples;
    if (opus) opus.encode(samples, frames);
    else onMessage(samples.buffer, samples.length / rate);
    frames += samples.length;
  };
  source.connect(node);
  if (ctx.state === 'suspended') await ctx.resume();

  let stopped = false;
  return {
    sampleRate: opus ? 48000 : rate, // Opus packets are decoded at any Opus rate: ask for 48 kHz
    encoding: opus ? 'opus' : 'pcm_s16le',
    channels: 1,
    async stop() {
      if (stopped) return;
      stopped = true;
      stream.getTracks().forEach((t) => t.stop());
      node.port.postMessage('flush');
      await Promise.race([whenFlushed, new Promise((r) => setTimeout(r, 500))]);
      source.disconnect();
      if (opus) await opus.flush();
      await ctx.close();
    },
  };
}

/** A WebCodecs Opus encoder: encode(Float32Array, firstFrame) and flush(); packets go to onMessage. */
function makeOpusEncoder(rate, onMessage) {
  const enc = new AudioEncoder({
    output: (chunk) => {
      const packet = new Uint8Array(chunk.byteLength);
      chunk.copyTo(packet);
      onMessage(packet.buffer, (chunk.duration || 20000) / 1e6);
    },
    error: (e) => console.error('Opus encoder:', e),
  });
  enc.configure({ codec: 'opus', sampleRate: rate, numberOfChannels: 1, bitrate: 32000 });
  return {
    encode(samples, firstFrame) {
      const data = new AudioData({
        format: 'f32', sampleRate: rate, numberOfChannels: 1, numberOfFrames: samples.length,
        timestamp: Math.round((firstFrame * 1e6) / rate), data: samples,
      });
      enc.encode(data);
      data.close();
    },
    async flush() {
      try {
        await enc.flush();
      } finally {
        enc.close();
      }
    },
  };
}

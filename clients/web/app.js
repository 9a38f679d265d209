// app.js - the page's controller: loads the model's latency modes, runs a live session
// (capture.js -> live.js) when Start is pressed, shows partials and finals, uploads a picked file
// (upload.js), offers the transcript as text, SRT and VTT (transcript.js), and says plainly what
// went wrong. document.body's data-state (idle, connecting, live, stopping, uploading) is what
// the page is doing; tests/web/test_web.py waits on it.

import { fetchModel, httpUrl } from './api.js';
import { openCapture, opusSupported } from './capture.js';
import { LiveSession } from './live.js';
import { Transcript, shortClock, download } from './transcript.js';
import { transcribeFile } from './upload.js';

const $ = (id) => document.getElementById(id);
const ui = {
  model: $('model'), mode: $('mode'), encoding: $('encoding'), start: $('start'), stop: $('stop'),
  latency: $('latency'), message: $('message'), title: $('transcript-title'), list: $('transcript'),
  partial: $('partial'), file: $('file'), uploadStatus: $('upload-status'),
  dlTxt: $('dl-txt'), dlSrt: $('dl-srt'), dlVtt: $('dl-vtt'),
};

const transcript = new Transcript();
let baseName = 'transcript';
let live = null, capture = null, latencies = [];

function showMessage(text, kind = 'error') {
  ui.message.textContent = text || '';
  ui.message.className = kind;
  ui.message.hidden = !text;
}

function setState(state) {
  document.body.dataset.state = state;
  const idle = state === 'idle';
  ui.start.disabled = !idle;
  ui.stop.disabled = state !== 'live' && state !== 'connecting';
  ui.mode.disabled = !idle || !ui.mode.options.length;
  ui.encoding.disabled = !idle;
  ui.file.disabled = !idle;
}

function updateDownloads() {
  const none = transcript.spoken().length === 0;
  ui.dlTxt.disabled = ui.dlSrt.disabled = ui.dlVtt.disabled = none;
}

function addSegment(start, end, text) {
  const seg = transcript.add(start, end, text);
  if (!seg.text) return;
  const li = document.createElement('li');
  const time = document.createElement('span');
  time.className = 'time';
  time.textContent = `${shortClock(seg.start)}–${shortClock(seg.end)}`;
  const words = document.createElement('span');
  words.className = 'text';
  words.textContent = seg.text;
  li.append(time, ' ', words);
  ui.list.append(li);
  li.scrollIntoView({ block: 'nearest' });
  updateDownloads();
}

function clearTranscript(title, name) {
  transcript.clear();
  ui.list.replaceChildren();
  ui.partial.textContent = '';
  ui.title.textContent = title;
  baseName = name;
  updateDownloads();
}

async function loadModel() {
  try {
    const m = await fetchModel();
    const chosen = ui.mode.value;
    ui.model.textContent = `Model ${m.id} · ${m.sample_rate / 1000} kHz · up to ${m.max_sessions} live sessions`;
    ui.mode.replaceChildren(...(m.lookaheads || []).map((la) => {
      const o = document.createElement('option');
      o.value = la.chunk_ms;
      o.textContent = `${la.chunk_ms} ms chunks`;
      return o;
    }));
    if (chosen) ui.mode.value = chosen;
    return true;
  } catch (e) {
    ui.model.textContent = 'No server information.';
    showMessage(e.message);
    return false;
  } finally {
    setState(document.body.dataset.state || 'idle');
  }
}

async function start() {
  showMessage('');
  setState('connecting');
  // the server first: unreachable or needing a token, it is said before the microphone is asked for
  if (!(await loadModel())) return setState('idle');
  const stamp = new Date().toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '-');
  clearTranscript('Live transcript', `earshot-${stamp}`);
  latencies = [];
  ui.latency.value = '–';
  try {
    capture = await openCapture({ encoding: ui.encoding.value, onMessage: (buf, seconds) => live?.sendAudio(buf, seconds) });
  } catch (e) {
    showMessage(e.message);
    return setState('idle');
  }
  live = new LiveSession(
    { sample_rate: capture.sampleRate, encoding: capture.encoding, channels: capture.channels, chunk_ms: +ui.mode.value || 0 },
    {
      onReady: (m) => {
        setState('live');
        ui.title.textContent = `Live transcript · ${m.chunk_ms} ms chunks · ${m.decoder}`;
      },
      onPartial: (m) => { ui.partial.textContent = m.text; },
      onFinal: (m) => {
        ui.partial.textContent = '';
        addSegment(m.start, m.end, m.text);
      },
      onWarning: (m) => showMessage(m.message, 'warning'),
      onLatency: (ms) => {
        latencies = [...latencies.slice(-9), ms];
        const sorted = [...latencies].sort((a, b) => a - b);
        ui.latency.value = `${Math.round(sorted[sorted.length >> 1])} ms`;
      },
      onClose: async (error) => {
        const c = capture;
        capture = live = null;
        ui.partial.textContent = '';
        if (c) await c.stop();
        if (error) showMessage(error.message);
        setState('idle');
      },
    },
  );
}

async function stop() {
  if (!live) return;
  setState('stopping');
  const c = capture, l = live;
  capture = null;
  if (c) await c.stop(); // its last samples are sent before the end message
  l.end();
}

async function upload() {
  const file = ui.file.files[0];
  if (!file) return;
  showMessage('');
  setState('uploading');
  ui.uploadStatus.textContent = `Transcribing ${file.name}…`;
  try {
    const r = await transcribeFile(file);
    clearTranscript(`Transcript of ${file.name}`, file.name.replace(/\.[^.]*$/, '') || 'transcript');
    for (const s of r.segments || []) addSegment(s.start, s.end, s.text);
    if (!(r.segments || []).length && r.text) addSegment(0, r.duration || 0, r.text);
    ui.uploadStatus.textContent = `Done: ${(r.duration || 0).toFixed(1)} s of audio.`;
  } catch (e) {
    ui.uploadStatus.textContent = '';
    showMessage(e.message);
  } finally {
    ui.file.value = '';
    setState('idle');
  }
}

ui.start.addEventListener('click', start);
ui.stop.addEventListener('click', stop);
ui.file.addEventListener('change', upload);
ui.dlTxt.addEventListener('click', () => download(transcript.toText(), `${baseName}.txt`, 'text/plain'));
ui.dlSrt.addEventListener('click', () => download(transcript.toSrt(), `${baseName}.srt`, 'application/x-subrip'));
ui.dlVtt.addEventListener('click', () => download(transcript.toVtt(), `${baseName}.vtt`, 'text/vtt'));
window.addEventListener('pagehide', () => live?.abort());

for (const a of document.querySelectorAll('footer a[href^="/"]')) a.href = httpUrl(a.getAttribute('href'));
setState('idle');
loadModel();
opusSupported().then((ok) => { ui.encoding.querySelector('option[value="opus"]').disabled = !ok; });

// transcript.js - the transcript as a list of segments {start, end, text} (seconds), whether
// they came from live finals or a file, and its downloads: plain text, SRT and WebVTT.

export class Transcript {
  constructor() {
    this.segments = [];
    this.source = '';
  }

  clear(source = '') {
    this.segments = [];
    this.source = source;
  }

  add(start, end, text) {
    const seg = { start: +start || 0, end: +end || 0, text: (text || '').trim() };
    this.segments.push(seg);
    return seg;
  }

  /** Segments with text: empty finals (a segment that held no word) are kept out of files. */
  spoken() {
    return this.segments.filter((s) => s.text);
  }

  toText() {
    return this.spoken().map((s) => s.text).join('\n') + '\n';
  }

  toSrt() {
    return this.spoken()
      .map((s, i) => `${i + 1}\n${clock(s.start, ',')} --> ${clock(s.end, ',')}\n${s.text}\n`)
      .join('\n');
  }

  toVtt() {
    return 'WEBVTT\n\n' + this.spoken().map((s) => `${clock(s.start, '.')} --> ${clock(s.end, '.')}\n${s.text}\n`).join('\n');
  }
}

/** HH:MM:SS,mmm (SRT) or HH:MM:SS.mmm (VTT). */
export function clock(seconds, sep) {
  const ms = Math.max(0, Math.round(seconds * 1000));
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${pad(Math.floor(ms / 3600000))}:${pad(Math.floor(ms / 60000) % 60)}:${pad(Math.floor(ms / 1000) % 60)}${sep}${pad(ms % 1000, 3)}`;
}

/** M:SS.s for the page. */
export function shortClock(seconds) {
  const t = Math.max(0, seconds);
  const m = Math.floor(t / 60);
  return `${m}:${(t - m * 60).toFixed(1).padStart(4, '0')}`;
}

/** Saves text as a file through a temporary link. */
export function download(text, filename, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

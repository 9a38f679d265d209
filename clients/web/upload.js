// upload.js - file transcription: POST /v1/audio/transcriptions (multipart, as OpenAI's API
// takes it) with response_format=verbose_json; resolves to the server's JSON answer
// {text, duration, segments: [{start, end, text}], ...} or throws a ServerError.

import { httpUrl, authHeaders, errorFromResponse, messages, ServerError } from './api.js';

export async function transcribeFile(file, { decoder } = {}) {
  const form = new FormData();
  form.append('file', file, file.name || 'audio');
  form.append('response_format', 'verbose_json');
  if (decoder) form.append('decoder', decoder);
  let res;
  try {
    res = await fetch(httpUrl('/v1/audio/transcriptions'), { method: 'POST', body: form, headers: authHeaders() });
  } catch {
    throw new ServerError('unreachable', messages.unreachable);
  }
  if (!res.ok) throw await errorFromResponse(res);
  return res.json();
}

// Experiment-context validation: the same rules as dashboard/context.py, checked in the
// page so a researcher sees the problem before anything is sent.

export const MAX_CONTEXT_CHARS = 65536;

// Python's str.strip() whitespace set (JS trim() differs on U+001C..U+001F, U+0085, U+FEFF).
const PY_SPACE = " \\t\\n\\v\\f\\r\\x1c-\\x1f\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const STRIP = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, "g");
// Unicode category Cc, except tab and line feed.
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/u;

export function normaliseNewlines(text) {
  return text.replace(/\r\n?/g, "\n");
}

function checkText(raw, what) {
  const text = normaliseNewlines(raw).replace(STRIP, "");
  if (!text) {
    return { error: `${capitalise(what)} is empty; describe the experiment in a few words.` };
  }
  const length = [...text].length; // code points, as the server counts them
  if (length > MAX_CONTEXT_CHARS) {
    return {
      error: `${capitalise(what)} is ${length.toLocaleString("en")} characters long; the limit is ${MAX_CONTEXT_CHARS.toLocaleString("en")}.`,
    };
  }
  const bad = text.match(CONTROL);
  if (bad) {
    const code = bad[0].codePointAt(0).toString(16).toUpperCase().padStart(4, "0");
    return { error: `${capitalise(what)} contains an invisible control character (U+${code}); remove it.` };
  }
  return { text };
}

function capitalise(s) {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function parseObject(text) {
  if (!text.startsWith("{")) return null;
  try {
    const value = JSON.parse(text);
    return value && typeof value === "object" && !Array.isArray(value) ? value : null;
  } catch {
    return null;
  }
}

/**
 * Validate the context field.
 * Returns {ok: true, value, key} where value is what to send as `experiment_context`
 * (the parsed object when the text is a JSON object, else the normalised text) and key
 * is a stable string for comparing contexts; or {ok: false, error}.
 */
export function validateContext(raw) {
  const normalised = normaliseNewlines(String(raw ?? ""));
  const trimmed = normalised.replace(STRIP, "");
  const object = parseObject(trimmed);
  if (object) {
    if (typeof object.description !== "string") {
      return { ok: false, error: 'A JSON experiment context needs a "description" string.' };
    }
    const checked = checkText(object.description, "the description");
    if (checked.error) return { ok: false, error: checked.error };
    return { ok: true, value: object, key: JSON.stringify(object) };
  }
  const checked = checkText(normalised, "the experiment context");
  if (checked.error) return { ok: false, error: checked.error };
  return { ok: true, value: checked.text, key: checked.text };
}

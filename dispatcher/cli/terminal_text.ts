/**
 * Text from the broker (a function's result or error, a dead letter's
 * headers, a worker's name) is hostile: printed as it is, an escape
 * sequence in it would clear the screen, retitle the window, hide text,
 * print fake lines or, through OSC 52, write the clipboard. The tools print
 * such text only through {@linkcode escapeControls}, or, for JSON,
 * {@linkcode escapeJsonControls}.
 *
 * @module
 */

/**
 * C0 controls (ESC among them), DEL, C1 controls (U+009B is a one-character
 * CSI on some terminals), and the Unicode marks that reorder or hide text
 * on screen (bidirectional overrides and isolates, line and paragraph
 * separators).
 */
const CONTROLS =
  // deno-lint-ignore no-control-regex
  /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** What `JSON.stringify` leaves raw of {@linkcode CONTROLS}: all but C0. */
const RAW_IN_JSON = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

const NAMED: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

function unicodeEscape(char: string): string {
  return `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`;
}

function escapeOne(char: string): string {
  return NAMED[char] ?? unicodeEscape(char);
}

/**
 * `text` with every control character written out (`\u001b`, `\n`), so that
 * the terminal shows it and acts on none of it; a backslash stays as it is.
 */
export function escapeControls(text: string): string {
  return text.replace(CONTROLS, escapeOne);
}

/**
 * JSON text with the controls that `JSON.stringify` leaves raw (DEL, C1,
 * the Unicode marks) escaped as `\uXXXX`, which keeps it the same JSON.
 * `JSON.stringify` already escapes C0, ESC included, inside strings, and the
 * newlines of its indentation stay.
 */
export function escapeJsonControls(json: string): string {
  return json.replace(RAW_IN_JSON, unicodeEscape);
}

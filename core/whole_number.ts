/**
 * Reading a whole number from text, as settings and flags give them: only
 * decimal digits, so that `1e3`, `0x10`, ` 5` or `2.0` are refused rather
 * than read as something the user did not write. Each caller words its own
 * error (a worker's variable, a tool's flag), so this only parses and says
 * the range.
 *
 * @module
 */

/**
 * `text` as a whole number from `min` to `max`, or `undefined` when it is not
 * one (not only digits, not a safe integer, or out of range).
 */
export function parseWholeNumber(
  text: string,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) return undefined;
  return value;
}

/** How to say the range in an error message: `>= 1`, or `from 1 to 1024`. */
export function wholeNumberRange(min = 0, max = Number.MAX_SAFE_INTEGER): string {
  return max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
}

/**
 * A strict reader of the Prometheus text exposition format, for tests that
 * check `/metrics`: it fails on any line that is not a comment, a `# TYPE`
 * or `# HELP` line, or a well-formed sample of a declared metric family.
 *
 * @module
 */

/** One sample: a metric name, its labels and its value. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A parsed exposition. */
export interface Exposition {
  /** Family name to type (`counter`, `gauge`, `histogram`, ...). */
  types: Map<string, string>;
  samples: Sample[];
  /** The value of the one sample with `name` and (at least) these labels. */
  value(name: string, labels?: Record<string, string>): number;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const HISTOGRAM_SUFFIXES = ["_bucket", "_sum", "_count"];

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  const pattern = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)/y;
  let index = 0;
  while (index < text.length) {
    pattern.lastIndex = index;
    const match = pattern.exec(text);
    if (!match) throw new SyntaxError(`Cannot parse the labels of: ${line}`);
    labels[match[1]] = match[2].replace(/\\(.)/g, (_, c) => c === "n" ? "\n" : c);
    index = pattern.lastIndex;
  }
  return labels;
}

function familyOf(name: string, types: Map<string, string>): string | undefined {
  if (types.has(name)) return name;
  for (const suffix of HISTOGRAM_SUFFIXES) {
    const base = name.slice(0, -suffix.length);
    if (name.endsWith(suffix) && types.get(base) === "histogram") return base;
  }
  return undefined;
}

/** Parses `text`; throws a `SyntaxError` naming the first bad line. */
export function parsePrometheus(text: string): Exposition {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  if (!text.endsWith("\n")) throw new SyntaxError("Cannot parse the exposition: no final newline");
  for (const line of text.split("\n")) {
    if (line === "") continue;
    if (line.startsWith("# TYPE ")) {
      const type = line.match(
        /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/,
      );
      if (!type) throw new SyntaxError(`Cannot parse: ${line}`);
      if (types.has(type[1])) throw new SyntaxError(`Cannot parse a second TYPE: ${line}`);
      types.set(type[1], type[2]);
      continue;
    }
    if (line.startsWith("# HELP ") && !/^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* \S/.test(line)) {
      throw new SyntaxError(`Cannot parse: ${line}`);
    }
    if (line.startsWith("#")) continue;
    const name = line.match(NAME)?.[0];
    if (!name) throw new SyntaxError(`Cannot parse a sample without a name: ${line}`);
    let rest = line.slice(name.length);
    let labels: Record<string, string> = {};
    if (rest.startsWith("{")) {
      const end = rest.lastIndexOf("}");
      if (end === -1) throw new SyntaxError(`Cannot parse unclosed labels: ${line}`);
      labels = parseLabels(rest.slice(1, end), line);
      rest = rest.slice(end + 1);
    }
    const value = rest.match(/^ (\S+)( -?\d+)?$/)?.[1];
    const number = value === "+Inf" ? Infinity : value === "-Inf" ? -Infinity : Number(value);
    if (value === undefined || (Number.isNaN(number) && value !== "NaN")) {
      throw new SyntaxError(`Cannot parse the value of: ${line}`);
    }
    if (!familyOf(name, types)) throw new SyntaxError(`Cannot find a TYPE for: ${line}`);
    samples.push({ name, labels, value: number });
  }
  return {
    types,
    samples,
    value(name, labels = {}) {
      const found = samples.filter((s) =>
        s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
      );
      if (found.length !== 1) {
        throw new Error(
          `Expected one sample ${name}${JSON.stringify(labels)}, found ${found.length}`,
        );
      }
      return found[0].value;
    },
  };
}

/**
 * The `{name}` placeholder grammar of llm_notebook/placeholders.py, in the browser, for live
 * highlighting, the variables form and an instant preview while the user types.
 *
 *     {name}  {name[0]}  {name['key']}     placeholders (one optional subscript)
 *     {{  }}                               literal braces
 *
 * Python stays the authority (it checks again on preview, run and save); this copy mirrors its
 * scanning order, error kinds and messages so both sides report the same first error at the same
 * line and column. js/test/fixtures/placeholder_cases.json holds cases answered by Python, and a
 * Python test checks them again, so the two grammars cannot drift apart unnoticed.
 *
 * Columns count characters (code points), like Python; offsets are JS string (UTF-16) offsets,
 * which is what CodeMirror positions are.
 */

export type Key = number | string | null;

export interface Placeholder {
  /** The variable: "In" for {In[3]}. */
  name: string;
  key: Key;
  /** The text between the braces. */
  source: string;
  /** Offset of "{" and just past "}" (UTF-16, like CodeMirror positions). */
  from: number;
  to: number;
  line: number;
  column: number;
}

export interface SyntaxProblem {
  message: string;
  kind: string;
  /** Where Python reports it (1-based line, 1-based column in code points)... */
  line: number;
  column: number;
  /** ...the same spot as an offset, and the span to underline. */
  offset: number;
  from: number;
  to: number;
}

export interface Token {
  kind: "placeholder" | "escape" | "error";
  from: number;
  to: number;
}

export interface Parsed {
  text: string;
  placeholders: Placeholder[];
  /** Variable names in order of first use, each once (Python's `Template.variables`). */
  variables: string[];
  /** The first error, the one Python raises; null when the text is valid. */
  error: SyntaxProblem | null;
  /** Every error: scanning goes on after one, so later placeholders are still highlighted. */
  errors: SyntaxProblem[];
  tokens: Token[];
}

const FORMS = "placeholders look like {name}, {name[0]} or {name['key']}";
// Python's [^\W\d]\w* with Unicode classes: \w is letters, numbers and "_", \d decimal digits.
const NAME = /[\p{L}\p{Nl}\p{No}_][\p{L}\p{N}_]*/uy;
const INT = /-?\p{Nd}+/uy;
const DECIMAL = /^\p{Nd}$/u;
const SPACE = /^\s$/u;

function countCodePoints(text: string, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (c < 0xdc00 || c > 0xdfff || i === from) n++; // a low surrogate continues the previous one
  }
  return n;
}

/** Python's (line, column) of an offset: 1-based, the column in code points. */
export function position(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = text.indexOf("\n"); i !== -1 && i < offset; i = text.indexOf("\n", i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return { line, column: countCodePoints(text, lineStart, offset) + 1 };
}

/** The offset of a Python (line, column) in `text`, clamped to the text. */
export function offsetOf(text: string, line: number, column: number): number {
  let start = 0;
  for (let l = 1; l < line; l++) {
    const nl = text.indexOf("\n", start);
    if (nl === -1) return text.length;
    start = nl + 1;
  }
  let offset = start;
  for (let c = 1; c < column && offset < text.length && text[offset] !== "\n"; c++) {
    const code = text.charCodeAt(offset);
    offset += code >= 0xd800 && code <= 0xdbff && offset + 1 < text.length ? 2 : 1;
  }
  return offset;
}

class Problem extends Error {
  constructor(
    readonly offset: number,
    readonly problem: string,
    readonly kind: string,
  ) {
    super(problem);
  }
}

function pyRepr(char: string): string {
  if (char === "'") return `"'"`;
  return char === "\\" ? "'\\\\'" : `'${char}'`;
}

function parseSubscript(text: string, bracket: number, close: number): [Key, number] {
  let pos = bracket + 1;
  let key: Key;
  INT.lastIndex = pos;
  const int = INT.exec(text);
  if (int && int.index + int[0].length <= close) {
    key = /^-?[0-9]+$/.test(int[0]) ? Number(int[0]) : int[0];
    pos = int.index + int[0].length;
  } else if (pos < close && (text[pos] === "'" || text[pos] === '"')) {
    const quote = text[pos]!;
    const end = text.indexOf(quote, pos + 1);
    if (end === -1 || end >= close) {
      throw new Problem(pos, `unterminated string key: close it with ${quote}`, "subscript");
    }
    key = text.slice(pos + 1, end);
    pos = end + 1;
  } else {
    throw new Problem(pos, "a subscript must be an integer like {In[3]} or a quoted key like {d['key']}", "subscript");
  }
  if (pos >= close || text[pos] !== "]") throw new Problem(pos, "missing ']' to close the subscript", "subscript");
  return [key, pos + 1];
}

function unexpected(text: string, pos: number): Problem {
  const char = text[pos]!;
  switch (char) {
    case ".":
      return new Problem(pos, "attribute access (.) is not allowed in placeholders — put the value in a variable and write {name}", "attribute");
    case "!":
      return new Problem(pos, "conversions like '!r' are not allowed in placeholders — values are inserted with str(); convert the value in Python first", "conversion");
    case ":":
      return new Problem(pos, "format specs like ':>10' are not allowed in placeholders — format the value in Python first", "format_spec");
    case "(":
      return new Problem(pos, "calls are not allowed in placeholders — compute the value in Python and write {name}", "call");
    case "{":
      return new Problem(pos, "'{' inside a placeholder — write '{{' for a literal brace", "unexpected");
  }
  const shown = SPACE.test(char) ? "a space" : pyRepr(String.fromCodePoint(text.codePointAt(pos)!));
  return new Problem(pos, `unexpected ${shown} in placeholder: ${FORMS}. For a literal brace write '{{' and '}}'`, "unexpected");
}

function parseInside(text: string, open: number, close: number): [string, Key] {
  const start = open + 1;
  if (start === close) {
    throw new Problem(open, "empty placeholder '{}' — put a variable name inside, like {text}, or write '{{}}' for literal braces", "empty");
  }
  NAME.lastIndex = start;
  const name = NAME.exec(text);
  if (!name || name.index + name[0].length > close) {
    if (DECIMAL.test(String.fromCodePoint(text.codePointAt(start)!))) {
      throw new Problem(start, "positional placeholders like {0} are not supported — use a variable name, like {text}", "positional");
    }
    throw new Problem(start, `'{${text.slice(start, close)}}' is not a placeholder: ${FORMS}. For a literal brace write '{{' and '}}'`, "invalid_name");
  }
  let pos = name.index + name[0].length;
  if (pos === close) return [name[0], null];
  let key: Key = null;
  if (text[pos] === "[") {
    [key, pos] = parseSubscript(text, pos, close);
    if (pos === close) return [name[0], key];
    if (text[pos] === "[") throw new Problem(pos, "only one subscript is allowed in a placeholder, like {In[3]}", "subscript");
  }
  throw unexpected(text, pos);
}

/**
 * `position` for offsets met in increasing order, in one pass over the text: scanning from the
 * start for each placeholder would make a long template quadratic.
 */
function positions(text: string): (offset: number) => { line: number; column: number } {
  let at = 0;
  let line = 1;
  let column = 1;
  return (offset) => {
    if (offset < at) return position(text, offset);
    for (; at < offset; at++) {
      const c = text.charCodeAt(at);
      if (c === 10) {
        line++;
        column = 1;
      } else if (c < 0xdc00 || c > 0xdfff || at === 0) {
        column++; // a low surrogate continues the character before it
      }
    }
    return { line, column };
  };
}

/** Scans template text like Python's `placeholders.parse`, but never throws. */
export function parse(text: string): Parsed {
  const placeholders: Placeholder[] = [];
  const errors: SyntaxProblem[] = [];
  const tokens: Token[] = [];
  const where = positions(text);
  const fail = (offset: number, message: string, kind: string, from: number, to: number): void => {
    errors.push({ message, kind, offset, from, to, ...where(offset) });
    tokens.push({ kind: "error", from, to });
  };
  const braces = /[{}]/g;
  let i = 0;
  while (i < text.length) {
    braces.lastIndex = i;
    const found = braces.exec(text);
    if (!found) break;
    const at = found.index;
    if (text[at] === "}") {
      if (text[at + 1] === "}") {
        tokens.push({ kind: "escape", from: at, to: at + 2 });
        i = at + 2;
      } else {
        fail(at, "unmatched '}' — write '}}' for a literal brace", "unmatched_close", at, at + 1);
        i = at + 1;
      }
      continue;
    }
    if (text[at + 1] === "{") {
      tokens.push({ kind: "escape", from: at, to: at + 2 });
      i = at + 2;
      continue;
    }
    const close = text.indexOf("}", at + 1);
    // A placeholder never spans lines (Python's rule): "{" with no "}" on its line is unmatched.
    if (close === -1 || text.slice(at + 1, close).includes("\n")) {
      fail(at, "unmatched '{' — write '{{' for a literal brace", "unmatched_open", at, at + 1);
      i = at + 1;
      continue;
    }
    try {
      const [name, key] = parseInside(text, at, close);
      placeholders.push({ name, key, source: text.slice(at + 1, close), from: at, to: close + 1, ...where(at) });
      tokens.push({ kind: "placeholder", from: at, to: close + 1 });
    } catch (err) {
      if (!(err instanceof Problem)) throw err;
      fail(err.offset, err.problem, err.kind, at, close + 1);
    }
    i = close + 1;
  }
  const variables = Array.from(new Set(placeholders.map((p) => p.name)));
  return { text, placeholders, variables, error: errors[0] ?? null, errors, tokens };
}

/** Python's message for a syntax error: "line L, column C: message". */
export function describe(problem: { line: number; column: number; message: string }): string {
  return `line ${problem.line}, column ${problem.column}: ${problem.message}`;
}

function subscript(value: string, key: Key): string | undefined {
  // Form values are text: Python indexes a str by character (negative from the end); a quoted
  // key on a str is an error in Python, so it stays unfilled here.
  if (typeof key !== "number") return undefined;
  const chars = Array.from(value);
  const at = key < 0 ? chars.length + key : key;
  return at >= 0 && at < chars.length ? chars[at] : undefined;
}

/**
 * Fills placeholders with form values, keeping `{source}` for those without one (Python's
 * `render(..., missing="keep")`); literal braces become single braces. Only for valid text.
 */
export function fill(parsed: Parsed, values: Record<string, string>): string {
  const { text } = parsed;
  const parts: string[] = [];
  let last = 0;
  let next = 0; // placeholders come in the same order as their tokens
  for (const token of parsed.tokens) {
    parts.push(text.slice(last, token.from));
    if (token.kind === "escape") {
      parts.push(text[token.from]!);
    } else {
      const ph = token.kind === "placeholder" ? parsed.placeholders[next++] : undefined;
      const value = ph && Object.prototype.hasOwnProperty.call(values, ph.name) ? values[ph.name] : undefined;
      const filled = value === undefined || !ph ? undefined : ph.key === null ? value : subscript(value, ph.key);
      parts.push(filled ?? text.slice(token.from, token.to));
    }
    last = token.to;
  }
  parts.push(text.slice(last));
  return parts.join("");
}

/** Variables of several texts (prompt, then system), each once, in order of first use. */
export function variablesOf(...parsed: Parsed[]): string[] {
  return Array.from(new Set(parsed.flatMap((p) => p.variables)));
}

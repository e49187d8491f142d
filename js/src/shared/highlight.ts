/**
 * A small code highlighter for the languages LLM answers use most.
 *
 * highlight.js cost ~20 KB gzipped in every widget bundle (anywidget bundles cannot share
 * code), which the 250 KB budget for all widgets could not afford. A tokenizer of comments,
 * strings, numbers and keywords covers what readers need from colour in a chat answer.
 * Output is HTML built only from escaped text and fixed class names.
 */

interface Language {
  comment: string; // regex source for comments
  string: string; // regex source for string literals
  keywords: ReadonlySet<string>;
  literals: ReadonlySet<string>;
  caseInsensitive?: boolean;
}

const words = (s: string): ReadonlySet<string> => new Set(s.split(/\s+/).filter(Boolean));

const DQ = String.raw`"(?:[^"\\\n]|\\.)*"?`;
const SQ = String.raw`'(?:[^'\\\n]|\\.)*'?`;

const PYTHON: Language = {
  comment: "#.*",
  string: String.raw`[rRbBfFuU]{0,2}(?:"""[\s\S]*?(?:"""|$)|'''[\s\S]*?(?:'''|$)|${DQ}|${SQ})`,
  keywords: words(`and as assert async await break class continue def del elif else except finally
    for from global if import in is lambda nonlocal not or pass raise return try while with yield
    match case print self`),
  literals: words("True False None"),
};

const JAVASCRIPT: Language = {
  comment: String.raw`\/\/.*|\/\*[\s\S]*?(?:\*\/|$)`,
  string: String.raw`${DQ}|${SQ}|\x60(?:[^\x60\\]|\\.)*\x60?`,
  keywords: words(`async await break case catch class const continue debugger default delete do
    else export extends finally for from function if import in instanceof interface let new of
    return static super switch this throw try type typeof var void while with yield`),
  literals: words("true false null undefined NaN Infinity"),
};

const JSON_LANG: Language = {
  comment: "(?!)",
  string: DQ,
  keywords: words(""),
  literals: words("true false null"),
};

const BASH: Language = {
  comment: "#.*",
  string: String.raw`${DQ}|'[^'\n]*'?`,
  keywords: words(`if then else elif fi for while until do done case esac function in return
    export local echo cd pip python npm git sudo apt-get cat ls rm mkdir`),
  literals: words("true false"),
};

const SQL: Language = {
  comment: String.raw`--.*|\/\*[\s\S]*?(?:\*\/|$)`,
  string: String.raw`'(?:[^']|'')*'?`,
  keywords: words(`select from where and or not insert into values update set delete create table
    index view drop alter join left right inner outer on group by order having limit offset as
    distinct union all case when then else end in is like between with primary key`),
  literals: words("null true false"),
  caseInsensitive: true,
};

const LANGUAGES: Record<string, Language> = {
  python: PYTHON, py: PYTHON,
  javascript: JAVASCRIPT, js: JAVASCRIPT, typescript: JAVASCRIPT, ts: JAVASCRIPT,
  json: JSON_LANG,
  bash: BASH, sh: BASH, shell: BASH, console: BASH,
  sql: SQL,
};

const compiled = new Map<Language, RegExp>();

function tokenizer(lang: Language): RegExp {
  let re = compiled.get(lang);
  if (!re) {
    re = new RegExp(
      `(${lang.comment})|(${lang.string})|(\\b\\d[\\d_]*(?:\\.\\d+)?(?:[eE][+-]?\\d+)?\\b)|([A-Za-z_$][\\w$-]*)`,
      "g",
    );
    compiled.set(lang, re);
  }
  return re;
}

export function escapeHtml(text: string): string {
  return text
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

export function isKnownLanguage(name: string): boolean {
  return Object.prototype.hasOwnProperty.call(LANGUAGES, name.toLowerCase());
}

const span = (cls: string, text: string): string => `<span class="hljs-${cls}">${escapeHtml(text)}</span>`;

/** Highlight `code` as `lang`; unknown languages come back escaped, uncoloured. */
export function highlight(code: string, lang: string): string {
  const language = LANGUAGES[lang.toLowerCase()];
  if (!language) return escapeHtml(code);
  const re = tokenizer(language);
  re.lastIndex = 0;
  let out = "";
  let last = 0;
  for (let m = re.exec(code); m !== null; m = re.exec(code)) {
    if (m[0] === "") {
      re.lastIndex++;
      continue;
    }
    out += escapeHtml(code.slice(last, m.index));
    if (m[1] !== undefined) out += span("comment", m[0]);
    else if (m[2] !== undefined) out += span("string", m[0]);
    else if (m[3] !== undefined) out += span("number", m[0]);
    else {
      const word = language.caseInsensitive ? m[0].toLowerCase() : m[0];
      if (language.keywords.has(word)) out += span("keyword", m[0]);
      else if (language.literals.has(word)) out += span("literal", m[0]);
      else out += escapeHtml(m[0]);
    }
    last = m.index + m[0].length;
  }
  return out + escapeHtml(code.slice(last));
}

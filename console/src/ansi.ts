// Output with ANSI colours. The state is two fields whatever the output holds, and the panel
// holds at most MAX_STYLED_SPANS spans: past that, the rest of the output is plain text in one
// last span. A flood of escape codes (or of colour changes) costs the reader's tab a bounded DOM.

const MAX_STYLED_SPANS = 2000;

export class AnsiOutput {
  private bold = false;
  private fg: number | null = null;

  constructor(private readonly panel: HTMLElement) {}

  /** Empties the panel and forgets the style, for the next command's output. */
  clear(): void {
    this.panel.replaceChildren();
    this.reset();
  }

  private reset(): void {
    this.bold = false;
    this.fg = null;
  }

  /** Applies one SGR sequence's parameters (`1;31`) to the state. */
  private applySgr(parameters: string): void {
    for (const code of (parameters || "0").split(";").map(Number)) {
      if (code === 0) this.reset();
      else if (code === 1) this.bold = true;
      else if (code === 22) this.bold = false;
      else if (code === 39) this.fg = null;
      else if ((code >= 30 && code <= 37) || (code >= 90 && code <= 97)) this.fg = code;
    }
  }

  private styleClass(): string {
    return [this.bold ? "ansi-bold" : "", this.fg === null ? "" : `fg-${this.fg}`].filter(Boolean).join(" ");
  }

  append(text: string): void {
    // Runs of text with the same style, merged before they reach the page.
    const runs: { cls: string; text: string }[] = [];
    text.split(/\x1b\[([0-9;]*)m/).forEach((part, i) => {
      if (i % 2 === 1) return this.applySgr(part);
      if (!part) return;
      const cls = this.styleClass();
      const last = runs[runs.length - 1];
      if (last && last.cls === cls) last.text += part;
      else runs.push({ cls, text: part });
    });
    for (const run of runs) {
      const cls = this.panel.childElementCount >= MAX_STYLED_SPANS ? "" : run.cls;
      const tail = this.panel.lastElementChild;
      if (tail instanceof HTMLSpanElement && tail.className === cls) {
        tail.append(run.text);
        continue;
      }
      const span = document.createElement("span");
      span.className = cls;
      span.textContent = run.text;
      this.panel.append(span);
    }
    this.panel.scrollTop = this.panel.scrollHeight;
  }
}

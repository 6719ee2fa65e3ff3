"""Word-level explanations drawn as HTML: every piece of user text is escaped before it is marked up."""
from __future__ import annotations

import html


# ---------------------------------------------------------------------------------------------------
# Showing an explanation
# ---------------------------------------------------------------------------------------------------
def highlight_html(text: str, explanation: dict, label_names: list[str] | None = None) -> str:
    """The analysed text as HTML with each word's background showing its weight. Two labels: green pushes
    towards the second label (e.g. POSITIVE), red towards the first. More labels: green supports the
    predicted label, red speaks against it. Every piece of text is HTML-escaped, so tags or scripts in a
    review show as text."""
    spans = sorted(explanation.get("spans") or [], key=lambda s: s["start"])
    pred = explanation.get("label_id") or 0
    names = label_names or list((explanation.get("scores") or {}).keys()) or ["label 0", "label 1"]
    multi = len(names) > 2
    toward_pos = [(s["score"] if multi or pred == 1 else -s["score"]) for s in spans]
    scale = max((abs(v) for v in toward_pos), default=0.0) or 1.0
    out, pos = [], 0
    analysed = int(explanation.get("analysed_chars") or 0)
    for span, v in zip(spans, toward_pos):
        if span["start"] < pos:
            continue
        out.append(html.escape(text[pos:span["start"]]))
        alpha = min(1.0, abs(v) / scale) * 0.75
        rgb = "34,160,70" if v >= 0 else "215,50,50"
        if multi:
            predicted = names[pred] if 0 <= pred < len(names) else str(pred)
            title = html.escape(f"{abs(v):.4f} {'for' if v >= 0 else 'against'} {predicted}", quote=True)
        else:
            towards = names[1] if v >= 0 and len(names) > 1 else names[0]
            title = html.escape(f"{abs(v):.4f} towards {towards}", quote=True)
        out.append(f'<span style="background-color: rgba({rgb},{alpha:.2f}); border-radius: 3px; padding: 0 1px" '
                   f'title="{title}">{html.escape(text[span["start"]:span["end"]])}</span>')
        pos = span["end"]
    out.append(html.escape(text[pos:analysed] if analysed > pos else ""))
    if explanation.get("truncated"):
        out.append(' <em>… (not analysed beyond this point)</em>')
    return ('<div style="white-space: pre-wrap; line-height: 1.9; font-size: 1rem">' + "".join(out) + "</div>")

"""A run as one self-contained HTML page: learning curves with hover values, the train/validation gap and
overfitting onset marked, the diagnosis, the hyperparameters, timings and (when given) the interpretation.

Charts are inline SVG drawn by `svg_chart` (no JS library to inline: the page stays ~tens of KB and the
curves show even with scripts off); a few lines of inline script only restyle the hover text. A
Content-Security-Policy forbids every network request, so the file can be mailed and opened offline.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from html import escape
from typing import TYPE_CHECKING, Any

from epochal.analysis.curve_svg import learning_curve_svgs
from epochal.analysis.interpretation_html import interpretation_html, table
from epochal.analysis.run_params import flat_params
from epochal.saving import atomic_write

if TYPE_CHECKING:
    from epochal.analysis.curves import Curves
    from epochal.analysis.diagnosis import Diagnosis
    from epochal.analysis.interpretation import Interpretation

_CSS = """
:root{color-scheme:light}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1100px;
padding:12px 14px 40px;color:#1d1d1f;background:#fff}
h1{font-size:1.45em;margin:.4em 0 .2em}h2{font-size:1.2em;margin:1.4em 0 .4em;border-bottom:1px solid #ddd}
h3{font-size:1.02em;margin:1em 0 .3em}.note{color:#555;font-size:.9em;margin:.2em 0}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,440px),1fr));gap:12px}
svg.chart{width:100%;height:auto;display:block;max-width:760px}
svg rect.hover.on{fill:rgba(0,0,0,.06)}
pre.diagnosis{white-space:pre-wrap;background:#f6f8fa;border:1px solid #e1e4e8;border-radius:6px;padding:10px;
font-size:.88em;overflow-wrap:anywhere}
.scroll{overflow-x:auto;max-width:100%}table{border-collapse:collapse;font-size:.9em;margin:.3em 0}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f6f8fa}td:first-child{text-align:left}
table.params td,table.params th{text-align:left;overflow-wrap:anywhere}
td.cm{text-align:center;min-width:2em}
#tip{position:fixed;display:none;pointer-events:none;background:#222;color:#fff;font-size:12px;padding:4px 7px;
border-radius:4px;max-width:80vw;z-index:2}
"""

# Moves each SVG <title> into a styled tooltip that follows the pointer (touch too) and highlights the column.
_SCRIPT = """
(function(){var tip=document.getElementById('tip');
function show(e){var el=e.currentTarget;tip.textContent=el.getAttribute('data-tip');tip.style.display='block';
var x=e.clientX+12;if(x+tip.offsetWidth>window.innerWidth){x=Math.max(4,e.clientX-tip.offsetWidth-12);}
tip.style.left=x+'px';tip.style.top=(e.clientY+14)+'px';el.classList.add('on');}
function hide(e){tip.style.display='none';e.currentTarget.classList.remove('on');}
document.querySelectorAll('[data-tip]').forEach(function(el){var t=el.querySelector('title');if(t){t.remove();}
el.addEventListener('pointerenter',show);el.addEventListener('pointermove',show);
el.addEventListener('pointerleave',hide);
});})();
"""

_POLICY = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


def render_report(history: Curves, *, diagnosis: Diagnosis | None = None,
                  interpretation: Interpretation | None = None, title: str = "Training report",
                  settings: Mapping[str, Any] | None = None) -> str:
    """The report page as a string (see the module's docstring).

    Args:
        history: The run's curves (`History`).
        diagnosis: Its diagnosis (text and marks on the curves). Defaults to `None`: none shown.
        interpretation: What `Model.interpret` found. Defaults to `None`: no such section.
        title: The page's heading. Defaults to `"Training report"`.
        settings: Extra hyperparameters shown after `history.params` and `history.compile_config` (e.g. a
            command line's config). Defaults to `None`.
    """
    body = [f"<h1>{escape(title)}</h1>", f"<p>{escape(_headline(history, diagnosis))}</p>"]
    if diagnosis is not None:
        body.append(f'<h2>Diagnosis</h2><pre class="diagnosis">{escape(str(diagnosis))}</pre>')
    charts = learning_curve_svgs(history, diagnosis)
    if charts:
        body.append('<h2>Learning curves</h2><p class="note">Hover (or tap) a chart for the values of an epoch. '
                    "Shaded between the curves: the train/validation gap.</p>"
                    f'<div class="charts">{"".join(charts)}</div>')
    params = {**flat_params(history.params), **flat_params(getattr(history, "compile_config", {})),
              **flat_params(settings or {})}
    if params:
        body.append("<h2>Hyperparameters</h2>" + table(["name", "value"], sorted(params.items()), "params"))
    body.append(_timings(history))
    body.append(events_html(getattr(history, "events", [])))
    if interpretation is not None:
        body.append(interpretation_html(interpretation))
    return html_page(title, body)


def html_page(title: str, body: list[str]) -> str:
    """A self-contained page of `body` (HTML fragments, the first the heading): the report's style, hover
    script and Content-Security-Policy."""
    body = body + ['<p class="note">Made by epochal. This file needs no network: everything it shows is in it.</p>']
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">'
            f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>{''.join(body)}"
            f'<div id="tip" role="tooltip"></div><script>{_SCRIPT}</script></body></html>\n')


def write_report(path: str | os.PathLike[str], history: Curves, **options: Any) -> None:
    """Write `render_report(history, **options)` to `path`, atomically."""
    page = render_report(history, **options)
    with atomic_write(path, text=True) as handle:
        handle.write(page)


def events_html(events: list[dict[str, Any]]) -> str:
    """What happened to the run itself — where it was forked from, each rollback — as a table ("" for none)."""
    if not events:
        return ""
    rows = [[str(event["epoch"] + 1), str(event["batch"]), str(event["kind"]), event_text(event)] for event in events]
    return ("<h2>Events</h2><p class=\"note\">Epoch counted from 1; batch: batches of it done before the event.</p>"
            + table(["epoch", "batch", "event", "what"], rows, "params"))


def event_text(event: dict[str, Any]) -> str:
    """One event of `History.events` in words."""
    if event["kind"] == "fork":
        changes = ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in event.get("changes", {}).items())
        return f"forked from {event.get('source')}" + (f" with {changes}" if changes else " with nothing changed")
    if event["kind"] == "rollback":
        what = f"loss {event.get('loss'):.4g} ({event.get('reason')})"
        if event.get("exhausted"):
            return f"{what}: out of retries ({event.get('retries')}), stopped at the last good state"
        return (f"{what}: rolled back to batch {event['back_to'][1]} of that epoch, rollback {event.get('rollback')} "
                f"of {event.get('retries')}, remedy: {', '.join(event.get('remedy', []))}")
    return ", ".join(f"{key}={value}" for key, value in event.items() if key not in ("kind", "epoch", "batch"))


def _headline(history: Curves, diagnosis: Diagnosis | None) -> str:
    if not history.epoch:
        return "No epoch completed yet."
    parts = [f"{len(history.epoch)} epochs"]
    if diagnosis is not None and diagnosis.best_epoch is not None:
        parts.append(f"best epoch {diagnosis.best_epoch + 1} ({diagnosis.monitor} = {diagnosis.best_value:.4g})")
    if history.epoch_seconds:
        parts.append(f"{sum(history.epoch_seconds):.1f} s of training")
    return ", ".join(parts) + "."


def _timings(history: Curves) -> str:
    seconds = history.epoch_seconds
    if not seconds:
        return ""
    slowest = max(range(len(seconds)), key=seconds.__getitem__)
    rows = [[str(epoch + 1), f"{s:.3f}"] for epoch, s in zip(history.epoch[-len(seconds):], seconds)]
    return (f"<h2>Timings</h2><p>Total {sum(seconds):.2f} s over {len(seconds)} timed epochs; mean "
            f"{sum(seconds) / len(seconds):.3f} s per epoch; slowest: epoch "
            f"{history.epoch[-len(seconds):][slowest] + 1} ({seconds[slowest]:.3f} s; the first often includes "
            f"warm-up).</p><details><summary>Each epoch (training and validation)</summary>"
            + table(["epoch", "seconds"], rows) + "</details>")

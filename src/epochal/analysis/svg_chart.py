"""Small inline-SVG charts for the HTML report and the notebook curves: no library, no network request,
the value of every point in its hover text (an SVG `<title>`, which browsers and notebooks show as is)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

#: Colours of the series, in order (matplotlib's first ones, so the PNG and the HTML agree).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 50, 12, 48, 40
_LEGEND_ROW = 16  # height of one row of the legend


def number(value: float) -> str:
    """A value as the report prints it: four significant digits."""
    return f"{value:.4g}"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round values (1, 2 or 5 times a power of ten apart) covering [low, high]."""
    if not high > low:
        return [low]
    raw = (high - low) / max(count, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    return [round(first + i * step, 12) for i in range(int((high - first) / step + 1e-9) + 1)]


@dataclass
class _Layer:
    kind: str
    xs: list[float]
    ys: list[float] = field(default_factory=list)
    extra: list[float] = field(default_factory=list)
    label: str = ""
    colour: str = PALETTE[0]
    dashed: bool = False
    tips: list[str] = field(default_factory=list)


class Chart:
    """A 2-D chart in data coordinates, rendered as one `<svg>` that scales to the width of its container.

    Add lines, points, bands, bars and markers in data units, then `render()`; the axes cover all of
    them (or `x_range`/`y_range`). Values that are not finite are left out (a line breaks there).

    Args:
        title: Shown above the plot.
        x_label: The x axis's name. Defaults to `""`.
        y_label: The y axis's name. Defaults to `""`.
        x_range: Fixed `(low, high)` of the x axis. Defaults to `None`: from the data.
        y_range: Fixed `(low, high)` of the y axis. Defaults to `None`: from the data.
        integer_x: Ticks at whole numbers only (epochs). Defaults to `False`.
        width: Width of the drawing in SVG units (it scales on screen). Defaults to `460`.
        height: Height of the drawing in SVG units. Defaults to `280`.

    Example:
        >>> chart = Chart("loss", x_label="epoch")
        >>> chart.line([1, 2, 3], [0.9, 0.5, 0.4], label="train")
        >>> chart.render().count('class="point"')
        3
    """

    def __init__(self, title: str, *, x_label: str = "", y_label: str = "",
                 x_range: tuple[float, float] | None = None, y_range: tuple[float, float] | None = None,
                 integer_x: bool = False, width: int = 460, height: int = 280) -> None:
        self.title, self.x_label, self.y_label = title, x_label, y_label
        self.x_range, self.y_range, self.integer_x = x_range, y_range, integer_x
        self.width, self.height = width, height
        self._layers: list[_Layer] = []

    # -- what can be drawn ----------------------------------------------------------------------

    def line(self, xs: Sequence[float], ys: Sequence[float], *, label: str = "", colour: str | None = None,
             dashed: bool = False, points: bool = True, tips: Sequence[str] | None = None) -> None:
        """A polyline through the points, with a dot and hover text at each one when `points`."""
        colour = colour or PALETTE[sum(layer.kind == "line" for layer in self._layers) % len(PALETTE)]
        tips = list(tips) if tips is not None else [f"{label} {number(x)}: {number(y)}".strip() for x, y in zip(xs, ys)]
        self._layers.append(_Layer("line" if points else "path", list(xs), list(ys), label=label, colour=colour,
                                   dashed=dashed, tips=tips))

    def scatter(self, xs: Sequence[float], ys: Sequence[float], *, label: str = "", colour: str = PALETTE[0],
                tips: Sequence[str] | None = None) -> None:
        """Dots without a line, each with hover text."""
        tips = list(tips) if tips is not None else [f"{number(x)}, {number(y)}" for x, y in zip(xs, ys)]
        self._layers.append(_Layer("scatter", list(xs), list(ys), label=label, colour=colour, tips=tips))

    def band(self, xs: Sequence[float], lower: Sequence[float], upper: Sequence[float], *, label: str = "",
             colour: str = "#d62728") -> None:
        """A translucent area between two curves (the train/validation gap)."""
        self._layers.append(_Layer("band", list(xs), list(lower), list(upper), label=label, colour=colour))

    def bars(self, lefts: Sequence[float], heights: Sequence[float], width: float, *, label: str = "",
             colour: str = PALETTE[0], tips: Sequence[str] | None = None) -> None:
        """Bars from 0 to each height, `width` wide from each left edge, with hover text."""
        self._layers.append(_Layer("bars", list(lefts), list(heights), [width], label=label, colour=colour,
                                   tips=list(tips or [])))

    def vline(self, x: float, *, label: str = "", colour: str = "#2ca02c", dashed: bool = True) -> None:
        """A vertical marker across the plot (best epoch, overfitting onset)."""
        self._layers.append(_Layer("vline", [x], label=label, colour=colour, dashed=dashed))

    def span(self, start: float, end: float, *, label: str = "", colour: str = "#d62728") -> None:
        """A shaded vertical strip from `start` to `end` (the epochs after the overfitting onset)."""
        self._layers.append(_Layer("span", [start, end], label=label, colour=colour))

    def columns(self, xs: Sequence[float], tips: Sequence[str]) -> None:
        """Invisible full-height hover zones, one per x, whose hover text gives every value at that x."""
        self._layers.append(_Layer("columns", list(xs), tips=list(tips)))

    # -- drawing --------------------------------------------------------------------------------

    def render(self) -> str:
        """The chart as an `<svg>` element (a string of markup)."""
        x_low, x_high = self._bounds(self.x_range, "x")
        y_low, y_high = self._bounds(self.y_range, "y")
        legend, rows = self._legend()
        left, top = _MARGIN_LEFT, _MARGIN_TOP + _LEGEND_ROW * (rows - 1)
        plot_w = self.width - _MARGIN_LEFT - _MARGIN_RIGHT
        plot_h = self.height - top - _MARGIN_BOTTOM
        frame = (left, top, plot_w, plot_h)

        def px(x: float) -> float:
            return round(left + (x - x_low) / (x_high - x_low) * plot_w, 2)

        def py(y: float) -> float:
            return round(top + (y_high - y) / (y_high - y_low) * plot_h, 2)

        parts = [f'<svg class="chart" viewBox="0 0 {self.width} {self.height}" role="img" '
                 f'aria-label="{escape(self.title)}" font-family="sans-serif" xmlns="http://www.w3.org/2000/svg">',
                 f'<text class="title" x="{left}" y="16" font-size="15" font-weight="600">{escape(self.title)}</text>']
        parts += self._axes(px, py, (x_low, x_high), (y_low, y_high), frame)
        for layer in sorted(self._layers, key=lambda layer: _DRAW_ORDER.index(layer.kind)):
            parts.append(_draw(layer, px, py, frame))
        parts += legend
        parts.append("</svg>")
        return "".join(parts)

    def _bounds(self, fixed: tuple[float, float] | None, axis: str) -> tuple[float, float]:
        if fixed is not None:
            return fixed
        values = [v for layer in self._layers for v in _extent(layer, axis) if math.isfinite(v)]
        low, high = (min(values), max(values)) if values else (0.0, 1.0)
        if axis == "y":
            pad = (high - low) * 0.05 or abs(high) * 0.05 or 0.5
            low, high = low - pad, high + pad
        if high == low:
            low, high = low - 0.5, high + 0.5
        return low, high

    def _axes(self, px, py, x_bounds, y_bounds, frame) -> list[str]:  # type: ignore[no-untyped-def]
        left, top, plot_w, plot_h = frame
        bottom = top + plot_h
        parts = [f'<rect class="frame" x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
                 'stroke="#bbb"/>']
        x_ticks = nice_ticks(x_bounds[0], x_bounds[1],
                             count=min(8, max(int(x_bounds[1] - x_bounds[0]), 1)) if self.integer_x else 6)
        for x in x_ticks:
            if x_bounds[0] <= x <= x_bounds[1] and (not self.integer_x or float(x).is_integer()):
                parts.append(f'<line class="grid" stroke="#eee" x1="{px(x)}" y1="{top}" x2="{px(x)}" y2="{bottom}"/>'
                             + _text(number(x), px(x), bottom + 16, anchor="middle"))
        for y in nice_ticks(y_bounds[0], y_bounds[1]):
            if y_bounds[0] <= y <= y_bounds[1]:
                parts.append(f'<line class="grid" stroke="#eee" x1="{left}" y1="{py(y)}" x2="{left + plot_w}" '
                             f'y2="{py(y)}"/>' + _text(number(y), left - 5, py(y) + 4, anchor="end"))
        parts.append(_text(self.x_label, left + plot_w / 2, self.height - 4, anchor="middle", css="label"))
        if self.y_label:
            parts.append(_text(self.y_label, 0, 0, anchor="middle", css="label",
                               transform=f"translate(12 {top + plot_h / 2}) rotate(-90)"))
        return parts

    def _legend(self) -> tuple[list[str], int]:
        """The legend's markup, curves first, wrapped onto as many rows as the width needs; and the rows."""
        parts: list[str] = []
        x, row = float(_MARGIN_LEFT), 0
        shown = [layer for layer in self._layers if layer.label and layer.kind != "columns"]
        for layer in sorted(shown, key=lambda layer: layer.kind not in ("line", "path", "scatter")):
            width = 26 + 6.8 * len(layer.label)
            if x + width > self.width - _MARGIN_RIGHT and x > _MARGIN_LEFT:
                x, row = float(_MARGIN_LEFT), row + 1
            y = 31 + row * _LEGEND_ROW
            dash = ' stroke-dasharray="5 3"' if layer.dashed else ""
            swatch = (f'<rect x="{x}" y="{y - 4}" width="14" height="8" fill="{layer.colour}" fill-opacity="0.25"/>'
                      if layer.kind in ("band", "span", "bars") else
                      f'<line x1="{x}" y1="{y}" x2="{x + 14}" y2="{y}" stroke="{layer.colour}" stroke-width="2"{dash}/>')
            parts.append(f'<g class="legend">{swatch}{_text(layer.label, x + 18, y + 4)}</g>')
            x += width
        return parts, row + 1


def _text(text: str, x: float, y: float, *, anchor: str = "start", css: str = "tick", transform: str = "") -> str:
    """A text element styled inline (so the chart looks the same in a notebook, which has no stylesheet for it)."""
    size, colour = ("13", "#333") if css == "label" else ("12", "#444")
    where = f'transform="{transform}"' if transform else f'x="{round(x, 2)}" y="{round(y, 2)}"'
    return (f'<text class="{css}" font-size="{size}" fill="{colour}" {where} text-anchor="{anchor}">'
            f"{escape(text)}</text>")


_DRAW_ORDER = ("span", "band", "bars", "vline", "path", "line", "scatter", "columns")


def _extent(layer: _Layer, axis: str) -> list[float]:
    if axis == "x":
        if layer.kind == "bars":
            return layer.xs + [x + layer.extra[0] for x in layer.xs]
        return [] if layer.kind == "columns" else layer.xs
    if layer.kind == "band":
        return layer.ys + layer.extra
    if layer.kind == "bars":
        return layer.ys + [0.0]
    return layer.ys


def _draw(layer: _Layer, px, py, frame: tuple[float, float, float, float]) -> str:  # type: ignore[no-untyped-def]
    """One layer's markup; `frame` is the plot area `(left, top, width, height)` in SVG units."""
    left, top, plot_w, plot_h = frame
    colour, label = layer.colour, escape(layer.label)
    dash = ' stroke-dasharray="5 3"' if layer.dashed else ""
    if layer.kind in ("line", "path", "scatter"):
        finite = [(x, y, tip) for x, y, tip in zip(layer.xs, layer.ys, layer.tips or [""] * len(layer.xs))
                  if math.isfinite(x) and math.isfinite(y)]
        body = ""
        if layer.kind != "scatter":
            body = "".join(f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="'
                           + " ".join(f"{px(x)},{py(y)}" for x, y in segment) + '"/>'
                           for segment in _segments(layer.xs, layer.ys))
        if layer.kind != "path":
            body += "".join(f'<circle class="point" cx="{px(x)}" cy="{py(y)}" r="3.2" fill="{colour}">'
                            f'<title>{escape(tip)}</title></circle>' for x, y, tip in finite)
        return f'<g class="series" data-label="{label}">{body}</g>'
    if layer.kind == "band":
        rows = [(x, a, b) for x, a, b in zip(layer.xs, layer.ys, layer.extra) if math.isfinite(a + b)]
        if len(rows) < 2:
            return ""
        outline = [f"{px(x)},{py(a)}" for x, a, _ in rows] + [f"{px(x)},{py(b)}" for x, _, b in reversed(rows)]
        return (f'<polygon class="band" data-label="{label}" fill="{colour}" fill-opacity="0.12" '
                f'points="{" ".join(outline)}"/>')
    if layer.kind == "bars":
        width = layer.extra[0]
        tips = layer.tips or [""] * len(layer.xs)
        return "".join(
            f'<rect class="bar" x="{px(x)}" y="{min(py(h), py(0))}" width="{max(px(x + width) - px(x) - 1, 1)}" '
            f'height="{abs(py(0) - py(h))}" fill="{colour}" fill-opacity="0.55"><title>{escape(tip)}</title></rect>'
            for x, h, tip in zip(layer.xs, layer.ys, tips) if math.isfinite(h))
    if layer.kind == "vline":
        x = px(layer.xs[0])
        return (f'<line class="marker" data-label="{label}" x1="{x}" y1="{top}" x2="{x}" y2="{top + plot_h}" '
                f'stroke="{colour}" stroke-width="1.5"{dash}/>')
    if layer.kind == "span":
        x0, x1 = px(layer.xs[0]), px(layer.xs[1])
        return (f'<rect class="span" data-label="{label}" x="{x0}" y="{top}" width="{max(x1 - x0, 0)}" '
                f'height="{plot_h}" fill="{colour}" fill-opacity="0.07"/>')
    # columns: one invisible hover zone per x, reaching halfway to its neighbours (and to the frame's edges)
    xs = [px(x) for x in layer.xs]
    edges = [left] + [(a + b) / 2 for a, b in zip(xs, xs[1:])] + [left + plot_w]
    return "".join(f'<rect class="hover" x="{round(a, 2)}" y="{top}" width="{round(b - a, 2)}" height="{plot_h}" '
                   f'fill="transparent" data-tip="{escape(tip)}"><title>{escape(tip)}</title></rect>'
                   for a, b, tip in zip(edges, edges[1:], layer.tips))


def _segments(xs: Sequence[float], ys: Sequence[float]) -> list[list[tuple[float, float]]]:
    """Runs of consecutive finite points (a NaN or inf breaks the line)."""
    segments: list[list[tuple[float, float]]] = [[]]
    for x, y in zip(xs, ys):
        if math.isfinite(x) and math.isfinite(y):
            segments[-1].append((x, y))
        elif segments[-1]:
            segments.append([])
    return [segment for segment in segments if len(segment) > 1]
